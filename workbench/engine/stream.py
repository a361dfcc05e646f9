"""`Model.stream(...)`: a generation as an iterator of text pieces, for loops in notebooks.

    for piece in model.stream(messages, max_new_tokens=64):
        print(piece, end="")

Each `next()` advances the generation by one token (the first one also runs the prompt)
and returns the text that became certain: bytes of an incomplete UTF-8 character wait
for the next token (the incremental decoding of `generator.TextStream`, on the
tokenizer's own per-token bytes: llama.cpp's for a GGUF, the tokenizer.json decoder
chain for an HF directory, the same bytes `generate` joins, so the pieces add up to
`generate`'s text exactly), and so does text that may be the start of a stop string.
Steps that complete no text yield nothing.
After the loop `.generation` is the `Generation` a `generate` call would have returned;
`.events` holds one `TokenEvent` per sampled token (its text, id and seconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from workbench.engine.generator import Generation, Stepper
from workbench.engine.request import held_back


@dataclass(frozen=True)
class TokenEvent:
    text: str  # the token's decoded piece ("" while a UTF-8 character is incomplete)
    token: int
    seconds: float  # wall time of its step (sampling and the forward that follows; the first also the prompt)


class Stream:
    """An iterator of text pieces over one `Stepper` (see the module docstring)."""

    def __init__(self, stepper: Stepper, tracer_of=None):
        self.stepper = stepper
        self._tracer_of = tracer_of
        self.events: list[TokenEvent] = []
        self.generation: Generation | None = None
        self._sent = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        while self.generation is None:
            t0 = time.perf_counter()
            out = self.stepper.step(*(() if self._tracer_of is None else (self._tracer_of(),)))
            if out is None:
                self.generation = self.stepper.result()
                return self._emit(self.generation.text, final=True)
            self.events.append(TokenEvent(out[0], out[1], time.perf_counter() - t0))
            if self.stepper.done:
                self.generation = self.stepper.result()
                piece = self._emit(self.generation.text, final=True)
            else:
                text = self.stepper.stream.text
                piece = self._emit(text[: len(text) - held_back(text, self.stepper.stop)])
            if piece:
                return piece
        raise StopIteration

    def _emit(self, text: str, final: bool = False) -> str:
        piece, self._sent = text[self._sent:], max(self._sent, len(text))
        if final and not piece:
            raise StopIteration
        return piece

    @property
    def tokens(self) -> list[int]:
        return [e.token for e in self.events]

    @property
    def text(self) -> str:
        """The text so far (the final text once finished)."""
        return self.generation.text if self.generation is not None else self.stepper.stream.text[: self._sent]
