"""The generation loop: prefill the prompt, then decode one token per step.

Prefill runs the prompt in batches of up to `n_batch` tokens; each decode step feeds the
last sampled token. Timings separate the two, llama.cpp-style: prefill tok/s counts the
prompt tokens over the prefill time, decode tok/s counts decode forward passes over
their time; tokenization and detokenization are outside both. Stops at an
end-of-generation token, a stop string, `max_tokens`, or the end of the context.
"""

from __future__ import annotations

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


def generate(
    model,
    state,
    tokenizer,
    prompt_ids: list[int],
    max_tokens: int,
    params: SamplingParams,
    stop: tuple[str, ...] = (),
    on_token: Callable[[str, int], None] | None = None,
    tracer=NULL_TRACER,
) -> Generation:
    """Generate up to `max_tokens` tokens after `prompt_ids` (which must fit the cache)."""
    sampler = Sampler(params)
    stream = TextStream(tokenizer)
    cache = state.cache
    cache.reset()
    stop_ids = set(tokenizer.stop_ids)
    context = list(prompt_ids)
    out: list[int] = []
    step_seconds: list[float] = []
    finish = "length"

    with tracer.span("generate", kind="root"):
        t0 = time.perf_counter()
        with tracer.span("prefill", kind="step", tokens=len(prompt_ids)):
            for b in range(0, len(prompt_ids), state.n_batch):
                batch = np.asarray(prompt_ids[b : b + state.n_batch], dtype=np.int64)
                logits = model.forward(batch, state, tracer)
        prefill_seconds = time.perf_counter() - t0

        decode_seconds = 0.0
        step = 0
        while True:
            with tracer.span("sample", kind="block"):
                token = sampler(logits, context)
            if token in stop_ids:
                finish = "stop"
                break
            out.append(token)
            context.append(token)
            piece = stream.push(token)
            if on_token is not None:
                on_token(piece, token)
            if stop and any(s in stream.text for s in stop):
                finish = "stop"
                break
            if len(out) >= max_tokens:
                break
            if cache.n_used >= cache.n_ctx:
                finish = "context"
                break
            t1 = time.perf_counter()
            with tracer.span(f"decode_step[{step}]", kind="step", tokens=1):
                logits = model.forward(np.asarray([token], dtype=np.int64), state, tracer)
            dt = time.perf_counter() - t1
            step_seconds.append(dt)
            decode_seconds += dt
            step += 1

    text = stream.text
    for s in stop:
        if finish == "stop" and s in text:
            text = text[: text.index(s)]
    return Generation(text, list(prompt_ids), out, finish, prefill_seconds, decode_seconds, step, step_seconds)
