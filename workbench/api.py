"""The public Python API: `load()` a model, then `generate()` or step through it.

A `Model` owns one session: the weights (memory-mapped where their format allows, else
prepared at load per the options), the tokenizer, and the state (KV cache and
activation buffers) allocated once at load for `n_ctx` positions. Thread count is a
session setting applied to numba before each run (on the thread that runs it), so it can
change between calls without reloading. `load_report` says what the load did
(quantized, fused, sizes).

One model may be shared by several Python threads: calls wait their turn (a lock held
for a whole `generate`, for each step of a stepper, and for `forward` / `reset` /
`score`), and a stepper whose KV cache was taken by a later call refuses to step with
`StaleStepperError` (see `engine.session`). Every argument is checked before any work:
a `ParameterError` names the keyword argument at fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from workbench import models
from workbench.engine.evaluate import Scores, teacher_forced
from workbench.engine.generator import Generation, Stepper
from workbench.engine.generator import run as generate_from
from workbench.engine import request
from workbench.engine.stream import Stream
from workbench.engine.options import UNSET, RunOptions, resolve_options
from workbench.engine.params import check_int, check_prompt, check_token_ids, generation_args
from workbench.engine.session import Session
from workbench.errors import ParameterError
from workbench.formats.catalog import DEFAULT_MODEL, resolve
from workbench.formats.gguf import GGUFFile
from workbench.formats.hf import HFDirectory
from workbench.formats.tokenizer import Tokenizer
from workbench.kernels import cache as compiled_cache
from workbench.kernels.dispatch import check_choices
from workbench.kernels.jit import max_threads, set_threads
from workbench.trace import current as current_tracer


_check_int = check_int  # the name Model.__init__ uses


def _check_threads(n: int | None) -> int:
    """A thread count for numba (None: all of its threads)."""
    if n is not None and not isinstance(n, bool) and isinstance(n, (int, np.integer)) and n > max_threads():
        raise ParameterError(f"threads must be between 1 and {max_threads()}, the threads numba was started "
                             f"with (set NUMBA_NUM_THREADS before starting Python for more), got {n}",
                             param="threads")
    return check_int("threads", n if n is not None else max_threads(), 1, max_threads())


class Model:
    """A loaded model with its tokenizer and one preallocated inference session.

    Safe to share between threads: concurrent calls wait for each other (they do not
    fail), and only the latest `start()` may step (an older stepper raises
    `StaleStepperError` rather than share the KV cache)."""

    def __new__(cls, *args, **kwargs):
        # The session guard exists before __init__ runs, whose warm-up already resets the cache.
        self = super().__new__(cls)
        self._session = Session(lambda: self.threads)
        return self

    def __init__(self, path: Path, source, make_tokenizer: Callable, options: RunOptions, n_ctx: int | None,
                 kernels: dict | None = None):
        """source: a parsed GGUFFile or an HFDirectory; use `workbench.load` to make one.
        The tokenizer is made after the weights, so that a bad tensor is reported first."""
        self.path = path
        self._provenance = None
        self.source = source
        self.options = options
        self.threads = options.threads
        self.net = models.build(source, None if n_ctx is None else _check_int("n_ctx", n_ctx, 1), options.weights,
                                kernels)
        self.config = self.net.config
        self.n_ctx = self.net.n_ctx
        self.tokenizer = make_tokenizer()
        self.state = self.net.new_state(kv_type=options.kv_type)
        self.load_report = self.net.load_report
        self.load_report.kv_cache_bytes = self.state.cache.nbytes
        self.load_report.kv_type = self.state.cache.kv_type
        self.kernels = kernels or {}
        self._warm_up()

    def _warm_up(self) -> None:
        """Run a 2-token prefill and a decode step once, at the session's thread count and
        KV cache type, then forget them: numba loads the model's compiled step and every
        kernel it calls (or compiles them: the first run on this CPU, announced with a
        progress bar and timed in the load report), and every weight page is touched, so
        the first timed generation measures inference, not start-up. Traced runs call the
        same compiled step, so they compile nothing more."""
        if self.n_ctx < 3:
            return
        set_threads(self.threads)
        arch = type(self.net).__module__.rsplit(".", 1)[-1]
        compiling = not compiled_cache.has_compiled(arch, "step")
        t0 = time.perf_counter()
        desc = f"Compiling {arch} for this CPU ({compiled_cache.cpu_name()}, first run)"
        with tqdm(total=2, desc=desc, disable=not compiling, leave=False, unit="step") as bar:
            self.net.forward(np.zeros(2, dtype=np.int64), self.state)
            bar.update()
            self.net.forward(np.zeros(1, dtype=np.int64), self.state)
            bar.update()
        self.load_report.warm_up_seconds = time.perf_counter() - t0
        self.load_report.compiled = str(compiled_cache.directory()) if compiling else ""
        self.reset()

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        self._threads = _check_threads(n)

    @property
    def kernels(self) -> dict[str, str]:
        """Weight format -> the matvec variant its products run (this session's choice where
        it made one, else the one chosen for this CPU, or a notebook's registered default).
        Set a dict {format: variant} to choose per session, e.g. {"q4_0": "one_row"}; {}
        goes back to the defaults. `workbench inspect --kernels` lists the variants."""
        return self.net.products.kernel_names()

    @kernels.setter
    def kernels(self, choices: dict) -> None:
        self.net.products.choose(check_choices(choices))
        self.load_report.kernels = self.net.products.kernel_names()
        self._provenance = None

    @property
    def weight_bytes(self) -> int:
        """Bytes of the weights as the kernels read them (after any load-time quantization)."""
        return self.load_report.weight_bytes

    def encode_prompt(self, prompt: str | Sequence[dict], chat: bool = False, template: str | None = None) -> list[int]:
        """Token ids of `prompt`: a string, or a list of {"role", "content"} messages
        rendered by the chat template. A string goes through the template as one user
        message when `chat` or `template` is given. The template is the file's own
        (GGUF `tokenizer.chat_template`, tokenizer_config.json's), else the built-in one
        of the architecture (as llama.cpp falls back: Gemma's GGUF has none), or
        `template`: a built-in name (`chatml`, `gemma`, `llama3`) or Jinja source."""
        if isinstance(prompt, (list, tuple)):
            return self.tokenizer.encode_chat(list(prompt), add_generation_prompt=True, template=template)
        check_prompt(prompt)
        if chat or template is not None:
            return self.tokenizer.encode_chat([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                              template=template)
        return self.tokenizer.encode(prompt, add_special=True, parse_special=True)

    def generate(
        self,
        prompt: str | Sequence[dict],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        on_token: Callable[[str, int], None] | None = None,
        stop: str | Sequence[str] = (),
        chat: bool = False,
        truncate: bool = False,
        *,
        do_sample: bool | None = None,
        template: str | None = None,
        max_tokens: int | None = None,
    ) -> Generation:
        """Generate text after `prompt` (a string, or a list of {"role", "content"}
        messages put through the chat template; see `encode_prompt`). See `Generation`.

        Arguments as transformers' `generate`: `max_new_tokens` (default 128; the older
        name `max_tokens` is an alias); greedy unless `do_sample` or `temperature > 0`
        (None: 1.0 when `do_sample`, else greedy; `do_sample=False` is greedy whatever
        the temperature); `top_k`, `top_p`, `repetition_penalty` (1.0: off), `seed`;
        `stop`: strings that end the generation (left out of the text). `on_token(piece,
        token_id)` is called per token; `model.stream(...)` is the iterator form.
        A prompt longer than the context is an error unless `truncate`, which keeps its
        last tokens (and the BOS token when the tokenizer adds one). Waits while another
        thread uses the model."""
        request.generation_args(max_new_tokens, max_tokens, do_sample, temperature, top_k, top_p,
                                repetition_penalty, seed, stop)  # fail before waiting
        request.check_prompt_or_messages(prompt)
        with self._session.lock:  # the whole generation: no other thread's call in between
            stepper = self.start(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, stop,
                                 chat, truncate, do_sample=do_sample, template=template, max_tokens=max_tokens)
            return generate_from(stepper, on_token, self._stamped(current_tracer()))

    def stream(self, prompt: str | Sequence[dict], max_new_tokens: int | None = None, **kwargs) -> Stream:
        """The generation `generate(prompt, ...)` would make, as an iterator of text
        pieces (`Stream`: `.events` has each token's id and seconds, `.generation` the
        final `Generation`). Everything is checked here, before the first `next()`; it
        is a stepper (`start`), so a later generation on this model supersedes it."""
        stepper = self.start(prompt, max_new_tokens, **kwargs)
        self._stamped(current_tracer())
        return Stream(stepper, current_tracer)

    def start(
        self,
        prompt: str | Sequence[dict],
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] = (),
        chat: bool = False,
        truncate: bool = False,
        *,
        do_sample: bool | None = None,
        template: str | None = None,
        max_tokens: int | None = None,
    ) -> Stepper:
        """A generation to advance token by token with `.step()` (widgets: draw between
        steps, stop at any point; the model stays usable). Arguments as `generate`.
        It supersedes any earlier stepper of this model: that one raises
        `StaleStepperError` if stepped again. Any thread may step it."""
        params, n_new, stop = request.generation_args(max_new_tokens, max_tokens, do_sample, temperature, top_k,
                                                      top_p, repetition_penalty, seed, stop)
        ids = self.encode_prompt(prompt, chat, template)
        if len(ids) >= self.n_ctx:
            if not truncate:
                raise ParameterError(
                    f"the prompt is {len(ids)} tokens but the context holds {self.n_ctx} (model limit "
                    f"{self.config.context_length}; load with a larger n_ctx, shorten the prompt, or pass truncate=True)",
                    param="prompt")
            keep = self.n_ctx - 1
            bos = self.tokenizer.bos_id
            ids = [ids[0]] + ids[len(ids) - keep + 1 :] if ids[0] == bos and bos is not None else ids[-keep:]
        with self._session.lock:
            ticket = self._session.claim()
        return Stepper(self.net, self.state, self.tokenizer, ids, n_new, params, stop, self._session, ticket)

    def score(self, text: str | Sequence[int], max_tokens: int | None = None) -> Scores:
        """Teacher-forced scores of `text` (or token ids): the argmax and log p(next) at
        every position, for top-1 agreement between models and perplexity. Empties the
        KV cache before and after."""
        if isinstance(text, str):
            ids = self.tokenizer.encode(check_prompt(text))
        else:
            ids = check_token_ids(text, self.config.vocab_size, "text", min_len=2)
        if max_tokens is not None:
            ids = ids[: check_int("max_tokens", max_tokens, 2)]
        with self._session.take():
            return teacher_forced(self.net, self.state, ids)

    # Step-level access, for widgets and notebooks.
    def reset(self) -> None:
        """Empty the KV cache."""
        with self._session.take():
            self.state.cache.reset()

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        """Feed tokens after those already in the cache; logits (vocab,) of the last one."""
        ids = check_token_ids(ids, self.config.vocab_size)
        tracer = self._stamped(current_tracer())
        logits = None
        with self._session.take():
            for b in range(0, ids.size, self.state.n_batch):
                logits = self.net.forward(ids[b : b + self.state.n_batch], self.state, tracer)
        return logits

    def provenance(self) -> dict:
        """What this model runs on: file and sha256, formats, threads, kernels, CPU,
        versions (`workbench.provenance`); every trace it records into carries it."""
        if self._provenance is None:
            from workbench.provenance import model_provenance

            self._provenance = model_provenance(self)
        return {**self._provenance, "threads": self.threads, "kernels": self.kernels}

    def _stamped(self, tracer):
        """`tracer`, with this model's provenance put into its `meta` (keys the caller
        set are kept) when it records."""
        meta = getattr(tracer, "meta", None)
        if getattr(tracer, "enabled", False) and isinstance(meta, dict):
            for key, value in self.provenance().items():
                meta.setdefault(key, value)
        return tracer

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({self.path.name}: {c.arch}, {c.n_layers} layers, d_model {c.d_model}, "
                f"vocab {c.vocab_size}, n_ctx {self.n_ctx}, threads {self.threads})")


def load(
    source: str | Path | None = None,
    *,
    threads: int | None = UNSET,
    n_ctx: int | None = None,
    quant_threshold: int | None = UNSET,
    quant_type: str = UNSET,
    quantize_lm_head: bool | None = UNSET,
    requantize: bool = UNSET,
    fuse: bool = UNSET,
    repack: bool = UNSET,
    kv_type: str = UNSET,
    profile: str | None = None,
    kernels: dict | None = None,
) -> Model:
    """Load a model: a catalog name (default `smollm2-135m`), a derived variant
    (`smollm2-135m:q4_0`, `gemma3-270m:hf-f32`, made on first use), a GGUF file, an HF
    directory or an HF repo id.

    Weight options start from `profile` ("baseline", "optimized" (default) or
    "aggressive"; see `workbench.engine.options`) and any argument given overrides it
    (an argument shown as `<profile default>` takes the profile's value when left out):
    float linear layers whose larger dimension is >= `quant_threshold` are quantized to
    `quant_type` ("q8_0" or "q4_0"; None: no quantization); `quantize_lm_head` forces
    the lm_head either way; `requantize` also converts weights the file stores
    quantized; `fuse` joins Q/K/V and gate+up; `repack` lets the loader rearrange a
    format's blocks for a faster kernel where this CPU has one (Q4_0 / Q5_0 / Q8_0
    `rows16` with AVX-512 VNNI; False keeps the file's layout, which kernels registered
    from Python need). `threads`: None for all of numba's.
    `kv_type`: the KV cache's precision, "f16" (every profile's: llama.cpp's cache and
    arithmetic, greedy tokens equal to llama.cpp's) or "f32" (attention in float32 as
    transformers: logits within 1e-4 of it, twice the cache memory). `kernels`: a
    {weight format: matvec variant} choice for this session (`Model.kernels`); formats
    left out run the variant chosen for this CPU."""
    choices = check_choices(kernels)
    opts = resolve_options(profile, quant_threshold=quant_threshold, quant_type=quant_type,
                           quantize_lm_head=quantize_lm_head, requantize=requantize, fuse=fuse, repack=repack,
                           threads=threads, kv_type=kv_type)
    _check_threads(opts.threads)  # every value is checked before any file is opened
    if n_ctx is not None:
        check_int("n_ctx", n_ctx, 1)
    text = str(source) if source is not None else DEFAULT_MODEL
    path = _derived_path(text) if _is_variant(text) else resolve(text)
    if path.is_dir():
        from workbench.formats.hf_tokenizer import HFTokenizer

        src = HFDirectory.open(path)
        return Model(path, src, lambda: HFTokenizer.from_dir(path), opts, n_ctx, choices)
    gf = GGUFFile.open(path)
    return Model(path, gf, lambda: Tokenizer.from_gguf(gf), opts, n_ctx, choices)


def _is_variant(text: str) -> bool:
    name, sep, _ = text.partition(":")
    return bool(sep) and not Path(text).exists() and "/" not in name and "\\" not in name


def _derived_path(text: str) -> Path:
    from workbench.convert import derived

    name, _, variant = text.partition(":")
    return derived(name, variant)
