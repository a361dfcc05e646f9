"""SmolLM2-135M against llama.cpp: tokenization, greedy tokens and logits.

Three files: the packaged Q4_1 GGUF, and the Q4_0 and Q8_0 files that workbench itself
converts from it (`workbench.convert.derived`, made here into the default cache if
missing). Each golden file comes from `scripts/make_goldens.py` (llama-cpp-python) run on
that very file, its prompts evaluated in one batch as llama.cpp's `eval` does; for a
converted file the golden holds its sha256, so a converter that writes other bytes fails
here until the golden is remade. Each case is replayed teacher-forced by
`tests/_golden.replay`: at every step our argmax must equal llama.cpp's token and our
logits of its top-5 tokens must equal its own to the golden's 5 decimals.
"""

import json
from pathlib import Path

import pytest

import workbench
from tests._golden import replay
from tests._models import smollm2_path
from workbench.convert import CONVERTER_VERSION, derived
from workbench.convert.cache import sha256

GOLDEN_DIR = Path(__file__).parent / "golden"
SOURCES = ["smollm2-135m", "smollm2-135m:q4_0", "smollm2-135m:q8_0"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=SOURCES)
def source(request):
    return request.param


@pytest.fixture(scope="module")
def golden(source):
    return json.loads((GOLDEN_DIR / f"greedy_{source.replace(':', '-')}.json").read_text())


@pytest.fixture(scope="module")
def path(source):
    smollm2_path()  # skips without the package
    name, _, variant = source.partition(":")
    return derived(name, variant, progress=False) if variant else smollm2_path()


@pytest.fixture(scope="module")
def model(path):
    return workbench.load(path, n_ctx=512)


def test_golden_is_for_this_file(golden, source, path):
    assert golden["model_file"] == path.name
    assert len(golden["cases"]) >= 8
    if ":" in source:  # llama.cpp ran on these very bytes
        assert golden["derived"] == source and golden["converter_version"] == CONVERTER_VERSION
        assert sha256(path) == golden["model_sha256"], f"{path} is not the file {GOLDEN_DIR.name} was made from"


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
