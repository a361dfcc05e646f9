"""The public Python API: `load()` a model, then `generate()` or step through it.

A `Model` owns one session: the memory-mapped weights, the tokenizer, and the state
(KV cache and activation buffers) allocated once at load for `n_ctx` positions. Thread
count is a session setting applied to numba before each run, so it can change between
calls without reloading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from workbench import models
from workbench.engine.generator import Generation, generate
from workbench.engine.sampling import SamplingParams
from workbench.errors import ParameterError
from workbench.formats.catalog import DEFAULT_MODEL, resolve
from workbench.formats.gguf import GGUFFile
from workbench.formats.tokenizer import Tokenizer
from workbench.kernels.jit import max_threads, set_threads
from workbench.trace import current as current_tracer


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ParameterError(f"{name} must be {bound}, got {value}")
    return int(value)


class Model:
    """A loaded model with its tokenizer and one preallocated inference session."""

    def __init__(self, path: Path, gguf: GGUFFile, threads: int | None, n_ctx: int | None):
        self.path = path
        self.gguf = gguf
        self.net = models.build(gguf, None if n_ctx is None else _check_int("n_ctx", n_ctx, 1))
        self.config = self.net.config
        self.n_ctx = self.net.n_ctx
        self.tokenizer = Tokenizer.from_gguf(gguf)
        self.state = self.net.new_state()
        self.threads = threads
        self._warm_up()

    def _warm_up(self) -> None:
        """Run a 2-token prefill and a decode step once, then forget them: numba loads (or
        compiles) the batched and the one-token kernels and every weight page is touched,
        so the first timed generation measures inference, not start-up."""
        if self.n_ctx < 3:
            return
        set_threads(self.threads)
        self.net.forward(np.zeros(2, dtype=np.int64), self.state)
        self.net.forward(np.zeros(1, dtype=np.int64), self.state)
        self.reset()

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, n: int | None) -> None:
        self._threads = _check_int("threads", n if n is not None else max_threads(), 1, max_threads())

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.gguf.tensors.values())

    def encode_prompt(self, prompt: str, chat: bool = False) -> list[int]:
        """Token ids of `prompt`, wrapped in the file's chat template when `chat`."""
        if not isinstance(prompt, str) or not prompt:
            raise ParameterError("prompt must be a non-empty string")
        if chat:
            return self.tokenizer.encode_chat([{"role": "user", "content": prompt}], add_generation_prompt=True)
        return self.tokenizer.encode(prompt, add_special=True, parse_special=True)

    def generate(
        self,
        prompt: str,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        on_token: Callable[[str, int], None] | None = None,
        stop: Sequence[str] = (),
        chat: bool = False,
    ) -> Generation:
        """Generate text after `prompt`; greedy at temperature 0. See `Generation`."""
        params = SamplingParams(temperature, top_k, top_p, repetition_penalty, seed=seed)
        max_tokens = _check_int("max_tokens", max_tokens, 1)
        if isinstance(stop, str):
            stop = (stop,)
        if any(not isinstance(s, str) or not s for s in stop):
            raise ParameterError(f"stop must be a list of non-empty strings, got {stop!r}")
        ids = self.encode_prompt(prompt, chat)
        if len(ids) >= self.n_ctx:
            raise ParameterError(
                f"the prompt is {len(ids)} tokens but the context holds {self.n_ctx} "
                f"(model limit {self.config.context_length}; load with a larger n_ctx or shorten the prompt)"
            )
        set_threads(self.threads)
        return generate(self.net, self.state, self.tokenizer, ids, max_tokens, params, tuple(stop), on_token,
                        current_tracer())

    # Step-level access, for widgets and notebooks.
    def reset(self) -> None:
        """Empty the KV cache."""
        self.state.cache.reset()

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        """Feed tokens after those already in the cache; logits (vocab,) of the last one."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ParameterError("forward needs a non-empty 1-D sequence of token ids")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ParameterError(f"token ids must lie in [0, {self.config.vocab_size})")
        set_threads(self.threads)
        tracer = current_tracer()
        logits = None
        for b in range(0, ids.size, self.state.n_batch):
            logits = self.net.forward(ids[b : b + self.state.n_batch], self.state, tracer)
        return logits

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({self.path.name}: {c.arch}, {c.n_layers} layers, d_model {c.d_model}, "
                f"vocab {c.vocab_size}, n_ctx {self.n_ctx}, threads {self.threads})")


def load(source: str | Path | None = None, *, threads: int | None = None, n_ctx: int | None = None) -> Model:
    """Load a model by catalog name (default `smollm2-135m`) or GGUF path."""
    path = resolve(str(source) if source is not None else DEFAULT_MODEL)
    return Model(path, GGUFFile.open(path), threads, n_ctx)
