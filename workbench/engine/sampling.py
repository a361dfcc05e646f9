"""Choosing the next token from logits.

Order, as in Hugging Face transformers: repetition penalty -> temperature -> top-k ->
top-p -> draw. Temperature 0 is greedy: the first index of the largest logit, which is
what llama.cpp's greedy sampler returns. The repetition penalty follows the CTRL paper
(positive logits divided, negative multiplied) over the last `penalty_last_n` tokens of
the context (64, llama.cpp's default window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workbench.errors import ParameterError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    penalty_last_n: int = 64
    seed: int | None = None

    def __post_init__(self):
        t = self.temperature
        if not isinstance(t, (int, float)) or math.isnan(t) or t < 0 or math.isinf(t):
            raise ParameterError(f"temperature must be a finite number >= 0, got {t!r}", param="temperature")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise ParameterError(f"top_k must be an integer >= 1 (or None for no limit), got {k!r}", param="top_k")
        p = self.top_p
        if p is not None and (not isinstance(p, (int, float)) or math.isnan(p) or not 0 < p <= 1):
            raise ParameterError(f"top_p must be in (0, 1], got {p!r}", param="top_p")
        r = self.repetition_penalty
        if not isinstance(r, (int, float)) or math.isnan(r) or math.isinf(r) or r <= 0:
            raise ParameterError(f"repetition_penalty must be a finite number > 0, got {r!r}",
                                 param="repetition_penalty")
        if not isinstance(self.penalty_last_n, int) or self.penalty_last_n < 0:
            raise ParameterError(f"penalty_last_n must be an integer >= 0, got {self.penalty_last_n!r}",
                                 param="penalty_last_n")
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
            raise ParameterError(f"seed must be a non-negative integer, got {s!r}", param="seed")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    """Holds the random generator of one generation so that a seed reproduces it."""

    def __init__(self, params: SamplingParams):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, context: list[int]) -> int:
        p = self.params
        if p.repetition_penalty != 1.0 and p.penalty_last_n and context:
            logits = penalize(logits, context[-p.penalty_last_n :], p.repetition_penalty)
        if p.greedy:
            return int(np.argmax(logits))
        return draw(logits, p.temperature, p.top_k, p.top_p, self.rng)


def penalize(logits: np.ndarray, recent: list[int], penalty: float) -> np.ndarray:
    """A copy of `logits` with each token in `recent` made less likely once."""
    out = logits.copy()
    ids = np.unique(np.asarray(recent, dtype=np.int64))
    vals = out[ids]
    out[ids] = np.where(vals > 0, vals / penalty, vals * penalty)
    return out


def draw(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None, rng) -> int:
    """Sample one token id from softmax(logits / temperature) restricted by top-k / top-p."""
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.size:
        idx = np.argpartition(-z, top_k - 1)[:top_k]
    else:
        idx = np.arange(z.size)
    order = idx[np.argsort(-z[idx], kind="stable")]
    probs = np.exp(z[order] - z[order[0]])
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        # keep the smallest prefix whose mass reaches top_p (at least one token)
        keep = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(len(order), p=probs)])
