"""Checks of a generation's arguments, made before anything is loaded or run.

`generation_args(...)` validates everything `Model.start` / `Model.generate` take that
does not depend on the model (sampling values, `max_tokens`, `stop`, the prompt's text)
and returns them normalized. The CLI calls it before loading the model, so that
`--temperature -1` fails at once instead of after a load of seconds; `Model.start`
calls it again, for Python callers. Every error is a `ParameterError` whose `param` is
the keyword argument at fault and whose message starts with its name.

It does not check what needs the model (a prompt longer than the context, token ids
beyond the vocabulary: `check_token_ids` takes the vocabulary size for that).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workbench.engine.sampling import SamplingParams
from workbench.errors import ParameterError


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high]; ParameterError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}", param=name)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ParameterError(f"{name} must be {bound}, got {value}", param=name)
    return int(value)


def check_prompt(prompt) -> str:
    """A non-empty prompt that is valid Unicode text (a command line can carry bytes that
    are not UTF-8: Python hands them over as lone surrogates, which no tokenizer takes)."""
    if not isinstance(prompt, str) or not prompt:
        raise ParameterError("prompt must be a non-empty string", param="prompt")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ParameterError(f"prompt is not valid UTF-8 text (character {e.start} is an undecodable byte)",
                             param="prompt") from None
    return prompt


def check_stop(stop) -> tuple[str, ...]:
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or any(not isinstance(s, str) or not s for s in stop):
        raise ParameterError(f"stop must be a list of non-empty strings, got {stop!r}", param="stop")
    return tuple(stop)


def check_token_ids(ids, vocab_size: int, name: str = "ids", min_len: int = 1) -> np.ndarray:
    """`ids` as an int64 vector of at least `min_len` ids, each in [0, vocab_size)."""
    try:
        arr = np.asarray(ids)
    except (TypeError, ValueError):
        arr = np.asarray([], dtype=object)
    if arr.ndim != 1 or arr.size < min_len or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ParameterError(f"{name} must be a 1-D sequence of at least {min_len} integer token ids", param=name)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = int(arr[(arr < 0) | (arr >= vocab_size)][0])
        raise ParameterError(f"{name} must lie in [0, {vocab_size}), got token id {bad}", param=name)
    return arr.astype(np.int64)


def generation_args(max_tokens: int = 128, temperature: float = 0.0, top_k: int | None = None,
                    top_p: float | None = None, repetition_penalty: float = 1.0, seed: int | None = None,
                    stop: Sequence[str] = ()) -> tuple[SamplingParams, int, tuple[str, ...]]:
    """(sampling parameters, max_tokens, stop strings), each checked."""
    params = SamplingParams(temperature, top_k, top_p, repetition_penalty, seed=seed)
    return params, check_int("max_tokens", max_tokens, 1), check_stop(stop)
