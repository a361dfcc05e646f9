"""Teacher-forced scoring: what the model predicts at each position of a fixed text.

Quantization quality is measured here, not assumed: feed a text token by token through
the same decode path generation uses, keep the argmax and the log-probability of the
true next token at every position, then compare two models position by position
(top-1 agreement) and each against the text (perplexity). Token by token, not one
batch, because decode is what a quantized model is used for and `forward` returns the
last position's logits only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workbench.errors import ParameterError


@dataclass(frozen=True)
class Scores:
    """Per predicted position (len(ids) - 1 of them): argmax id and log p(true next)."""

    top1: np.ndarray  # int64
    logprob: np.ndarray  # float64

    @property
    def perplexity(self) -> float:
        return math.exp(-float(self.logprob.mean()))

    def agreement(self, other: Scores) -> float:
        """Fraction of positions where both predict the same next token."""
        if self.top1.shape != other.top1.shape:
            raise ParameterError(f"scores cover {self.top1.size} and {other.top1.size} positions: not the same text")
        return float((self.top1 == other.top1).mean())


def teacher_forced(net, state, ids, on_step=None) -> Scores:
    """Scores of `ids` (at least 2 tokens) run one at a time from an empty cache."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or ids.size < 2:
        raise ParameterError("teacher-forced scoring needs at least 2 token ids")
    if ids.size > state.cache.n_ctx:
        raise ParameterError(f"{ids.size} tokens exceed the context of {state.cache.n_ctx}")
    state.cache.reset()
    n = ids.size - 1
    top1, logprob = np.empty(n, np.int64), np.empty(n, np.float64)
    for i in range(n):
        logits = net.forward(ids[i : i + 1], state).astype(np.float64)
        top1[i] = int(np.argmax(logits))
        m = logits.max()
        logprob[i] = logits[ids[i + 1]] - m - math.log(np.exp(logits - m).sum())
        if on_step is not None:
            on_step(i + 1, n)
    state.cache.reset()
    return Scores(top1, logprob)
