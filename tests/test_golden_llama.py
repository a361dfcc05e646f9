"""SmolLM2-135M (Q4_1) against llama.cpp: tokenization, greedy tokens and logits.

The golden file comes from `scripts/make_goldens.py` (llama-cpp-python), its prompts
evaluated in one batch as llama.cpp's `eval` does. Each case is replayed teacher-forced
by `tests/_golden.replay`: at every step our argmax must equal llama.cpp's token and our
logits of its top-5 tokens must equal its own to the golden's 5 decimals.
"""

import json
from pathlib import Path

import pytest

import workbench
from tests._golden import replay
from tests._models import smollm2_path

GOLDEN = Path(__file__).parent / "golden" / "greedy_smollm2-135m.json"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def model():
    return workbench.load(smollm2_path(), n_ctx=512)


def test_golden_is_for_this_file(golden):
    assert golden["model_file"] == smollm2_path().name
    assert len(golden["cases"]) >= 8


def test_prompt_tokenization_matches_llama_cpp(model, golden):
    for case in golden["cases"]:
        assert model.encode_prompt(case["prompt"]) == case["prompt_tokens"], case["prompt"]


def test_greedy_tokens_and_logits_match_llama_cpp(model, golden):
    results = [replay(model, case) for case in golden["cases"]]
    worst = max(w for w, _ in results)
    ties = [t for _, found in results for t in found]
    print(f"worst top-5 logit difference {worst:.6f}; near-ties decided differently: {ties}")


def test_generate_reproduces_the_golden_continuations(model, golden):
    stop = set(model.tokenizer.stop_ids)
    for case in golden["cases"][:4]:
        expected = case["tokens"]
        cut = next((i for i, t in enumerate(expected) if t in stop), len(expected))
        gen = model.generate(case["prompt"], max_tokens=cut)
        assert gen.prompt_tokens == case["prompt_tokens"]
        assert gen.tokens == expected[:cut], case["prompt"]
