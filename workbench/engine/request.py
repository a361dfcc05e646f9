"""Generation arguments in transformers' vocabulary, turned into the engine's.

`model.generate` speaks as `transformers.GenerationMixin.generate` does
(`max_new_tokens`, `do_sample`, `temperature`, `top_k`, `top_p`, `repetition_penalty`,
`stop`) and keeps workbench's older `max_tokens` as an alias. The rules, kept here in one
place so that the Python API and the CLI check the same things before any work starts:

- `max_new_tokens` (or `max_tokens`; both given must agree) defaults to 128;
- `do_sample=None` samples when `temperature > 0` (workbench's rule); `do_sample=False`
  is greedy whatever the temperature (transformers' rule); `do_sample=True` samples at
  `temperature` (1.0 when not given, transformers' default) and refuses temperature 0;
- `stop` is a string or a list of non-empty strings (`params.check_stop`).

A prompt is a string or a list of `{"role", "content"}` messages; messages (or
`chat=True`, or a `template=`) go through the model's chat template (see
`Tokenizer.apply_chat_template`).
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.engine.params import check_prompt, check_stop
from workbench.engine.sampling import SamplingParams
from workbench.errors import ParameterError
from workbench.formats.chat import check_messages

DEFAULT_MAX_NEW_TOKENS = 128


def max_new_tokens(max_new: int | None, max_tokens: int | None) -> int:
    """The token budget from either name; `ParameterError` when both disagree or it is < 1."""
    if max_new is not None and max_tokens is not None and max_new != max_tokens:
        raise ParameterError(f"max_new_tokens={max_new!r} and its alias max_tokens={max_tokens!r} disagree; "
                             "give one")
    n = max_new if max_new is not None else max_tokens if max_tokens is not None else DEFAULT_MAX_NEW_TOKENS
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        name = "max_tokens" if max_new is None and max_tokens is not None else "max_new_tokens"  # the caller's word
        raise ParameterError(f"{name} must be an integer >= 1, got {n!r}")
    return n


def sampling_params(do_sample: bool | None, temperature: float | None, top_k: int | None, top_p: float | None,
                    repetition_penalty: float, seed: int | None) -> SamplingParams:
    """SamplingParams per the `do_sample` rules above (validated by SamplingParams)."""
    if do_sample is not None and not isinstance(do_sample, bool):
        raise ParameterError(f"do_sample must be True, False or None, got {do_sample!r}")
    if do_sample and temperature is not None and temperature == 0:
        raise ParameterError("do_sample=True needs temperature > 0 (temperature 0 is greedy decoding)")
    t = (1.0 if do_sample else 0.0) if temperature is None else temperature
    if do_sample is False:
        SamplingParams(t, top_k, top_p, repetition_penalty, seed=seed)  # still refuse bad values
        t = 0.0
    return SamplingParams(t, top_k, top_p, repetition_penalty, seed=seed)


def generation_args(max_new: int | None, max_tokens: int | None, do_sample: bool | None, temperature: float | None,
                    top_k: int | None, top_p: float | None, repetition_penalty: float, seed: int | None,
                    stop) -> tuple[SamplingParams, int, tuple[str, ...]]:
    """(sampling parameters, max new tokens, stop strings), each checked (stop strings by
    `params.check_stop`, the same check as every other entry point)."""
    return (sampling_params(do_sample, temperature, top_k, top_p, repetition_penalty, seed),
            max_new_tokens(max_new, max_tokens), check_stop(stop))


def check_prompt_or_messages(prompt) -> None:
    """A prompt string (`params.check_prompt`) or a message list (`chat.check_messages`)."""
    if isinstance(prompt, (list, tuple)):
        check_messages(prompt)
    else:
        check_prompt(prompt)


def held_back(text: str, stop: tuple[str, ...]) -> int:
    """How many characters at the end of `text` could begin a stop string: a stream
    holds them back until the next token shows whether the stop string follows."""
    keep = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:n]):
                keep = n
                break
    return keep
