"""The generation loop: prefill the prompt, then decode one token per step.

Prefill runs the prompt in batches of up to `n_batch` tokens; each decode step feeds the
last sampled token. Timings separate the two, llama.cpp-style: prefill tok/s counts the
prompt tokens over the prefill time, decode tok/s counts decode forward passes over
their time; tokenization and detokenization are outside both. Stops at an
end-of-generation token, a stop string, `max_tokens`, or the end of the context.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from workbench.engine.sampling import Sampler, SamplingParams
from workbench.trace import NULL_TRACER


@dataclass
class Generation:
    """What one `generate` call produced, with its timings."""

    text: str
    prompt_tokens: list[int]
    tokens: list[int]
    finish_reason: str  # "stop" (EOS / stop string), "length" (max_tokens), "context" (cache full)
    prefill_seconds: float
    decode_seconds: float
    decode_steps: int
    step_seconds: list[float] = field(default_factory=list)

    @property
    def prefill_tok_s(self) -> float:
        return len(self.prompt_tokens) / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_steps / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "tokens": self.tokens,
            "finish_reason": self.finish_reason,
            "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds,
            "prefill_tok_s": self.prefill_tok_s,
            "decode_tok_s": self.decode_tok_s,
        }


class TextStream:
    """Turns token ids into text pieces as they come, holding back incomplete UTF-8."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.buffer = b""
        self.text = ""

    def push(self, token: int) -> str:
        self.buffer += self.tokenizer.token_to_piece(token)
        try:
            piece = self.buffer.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data":  # wait for the rest of the character
                return ""
            piece = self.buffer.decode("utf-8", errors="replace")
        self.buffer = b""
        self.text += piece
        return piece


class Stepper:
    """One generation advanced a token at a time, for callers that must do something
    between tokens (a widget drawing a chart, a Stop button): `step()` samples the next
    token from the last logits, runs it through the model so the following step has
    logits, and returns (piece, token id), or None once finished (`finish_reason` then
    says why). `run` is this loop run to the end.

    With a `session` (see `engine.session`; `Model.start` passes its own), each step
    holds the session's lock and refuses to run once a later generation has taken the
    KV cache (`StaleStepperError`); it may be stepped from any thread."""

    def __init__(self, model, state, tokenizer, prompt_ids: list[int], max_tokens: int, params: SamplingParams,
                 stop: tuple[str, ...] = (), session=None, ticket: int | None = None):
        self.model, self.state, self.tokenizer = model, state, tokenizer
        self.session, self.ticket = session, ticket
        self.prompt_ids, self.max_tokens, self.stop = list(prompt_ids), max_tokens, stop
        self.sampler = Sampler(params)
        self.stream = TextStream(tokenizer)
        self.stop_ids = set(tokenizer.stop_ids)
        self.context = list(prompt_ids)
        self.tokens: list[int] = []
        self.step_seconds: list[float] = []
        self.prefill_seconds = 0.0
        self.finish_reason: str | None = None
        self._logits = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def _held(self):
        return self.session.use(self.ticket) if self.session is not None else contextlib.nullcontext()

    def prefill(self, tracer=NULL_TRACER) -> None:
        """Run the prompt from an empty cache (the first `step` does it if not done)."""
        with self._held():
            self._prefill(tracer)

    def _prefill(self, tracer) -> None:
        state = self.state
        state.cache.reset()
        t0 = time.perf_counter()
        with tracer.span("prefill", kind="step", tokens=len(self.prompt_ids)):
            for b in range(0, len(self.prompt_ids), state.n_batch):
                batch = np.asarray(self.prompt_ids[b : b + state.n_batch], dtype=np.int64)
                self._logits = self.model.forward(batch, state, tracer)
        self.prefill_seconds = time.perf_counter() - t0

    def step(self, tracer=NULL_TRACER) -> tuple[str, int] | None:
        with self._held():  # done is read under the lock: another thread may be stepping too
            return None if self.done else self._step(tracer)

    def _step(self, tracer) -> tuple[str, int] | None:
        if self._logits is None:
            self._prefill(tracer)
        with tracer.span("sample", kind="block"):
            token = self.sampler(self._logits, self.context)
        if token in self.stop_ids:
            self.finish_reason = "stop"
            return None
        self.tokens.append(token)
        self.context.append(token)
        piece = self.stream.push(token)
        cache = self.state.cache
        if self.stop and any(s in self.stream.text for s in self.stop):
            self.finish_reason = "stop"
        elif len(self.tokens) >= self.max_tokens:
            self.finish_reason = "length"
        elif cache.n_used >= cache.n_ctx:
            self.finish_reason = "context"
        else:
            t1 = time.perf_counter()
            with tracer.span(f"decode_step[{len(self.step_seconds)}]", kind="step", tokens=1):
                self._logits = self.model.forward(np.asarray([token], dtype=np.int64), self.state, tracer)
            self.step_seconds.append(time.perf_counter() - t1)
        return piece, token

    def result(self) -> Generation:
        """The generation so far (finish_reason "stopped" if it was left unfinished)."""
        text = self.stream.text
        if self.finish_reason == "stop":
            for s in self.stop:
                if s in text:
                    text = text[: text.index(s)]
        return Generation(text, list(self.prompt_ids), list(self.tokens), self.finish_reason or "stopped",
                          self.prefill_seconds, sum(self.step_seconds), len(self.step_seconds),
                          list(self.step_seconds))


def run(stepper: Stepper, on_token: Callable[[str, int], None] | None = None, tracer=NULL_TRACER) -> Generation:
    """Advance `stepper` to the end, handing each piece to `on_token`."""
    with tracer.span("generate", kind="root"):
        stepper.prefill(tracer)
        while (out := stepper.step(tracer)) is not None:
            if on_token is not None:
                on_token(*out)
    return stepper.result()
