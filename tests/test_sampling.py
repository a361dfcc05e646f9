"""Sampling: parameter validation, greedy, seeds, top-k / top-p supports, penalty."""

import numpy as np
import pytest

from workbench.engine.sampling import Sampler, SamplingParams, draw, penalize
from workbench.errors import ParameterError, WorkbenchError


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=-1.0), "repetition_penalty"),
        (dict(seed=-3), "seed"),
    ],
)
def test_bad_values_are_named(kwargs, word):
    with pytest.raises(ParameterError, match=word) as info:
        SamplingParams(**kwargs)
    assert isinstance(info.value, WorkbenchError)


def test_greedy_is_first_argmax():
    logits = np.array([0.1, 3.0, 3.0, -1.0], np.float32)
    assert Sampler(SamplingParams())(logits, []) == 1


def test_seed_reproduces_and_top_k_limits_support():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32)
    top3 = set(np.argsort(-logits)[:3].tolist())
    a = Sampler(SamplingParams(temperature=1.0, top_k=3, seed=42))
    b = Sampler(SamplingParams(temperature=1.0, top_k=3, seed=42))
    draws_a = [a(logits, []) for _ in range(50)]
    assert draws_a == [b(logits, []) for _ in range(50)]
    assert set(draws_a) <= top3 and len(set(draws_a)) > 1


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(1)
    seen = {draw(logits, 1.0, None, 0.75, rng) for _ in range(300)}
    assert seen == {0, 1}
    seen = {draw(logits, 1.0, None, 0.81, rng) for _ in range(300)}
    assert seen == {0, 1, 2}


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = np.array([2.0, -2.0, 1.0], np.float32)
    out = penalize(logits, [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0]
    assert logits.tolist() == [2.0, -2.0, 1.0]  # the input is not modified
