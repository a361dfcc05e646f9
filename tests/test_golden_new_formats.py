"""Q5_1, IQ4_NL and Q5_K files from llama-quantize against llama.cpp's greedy goldens.

The files are SmolLM2-135M and Gemma 3 270M quantized by llama.cpp's own llama-quantize
from workbench's F32 conversion (`tests/_quantized.py`, which lists what each file holds:
only ffn_down and Gemma's attn_output have rows of a multiple of 256, so the K-quant
files mix Q5_K and Q6_K with their Q5_1 and Q8_0 fallbacks). Each golden comes from
`scripts/make_goldens.py --quantized MODEL:QTYPE --prompt-by-token` run on that very
file (its sha256 is in the golden). The prompts were fed one token at a time, so that
llama.cpp ran only its matrix-vector (`vec_dot`) kernels, the same for every format on
every x86 CPU: its batched path depends on both (IQ4_NL weights are repacked to
iq4_nl_8x8 on AVX2, Q8_0 goes through llamafile's sgemm, AMX where the CPU has it), and
its batched and token-by-token last logits differ by 0.7-1.7 on these files (0.76 on
the shipped Q4_1 file too; measured on the first five prompts).

As in tests/test_golden_llama.py, each case is replayed teacher-forced
(`tests/_golden.replay`): at every step our argmax must be llama.cpp's token (or a
near-tie) and our logits of its top-5 tokens must equal its own to the golden's 5
decimals. `generate` prefills in one batch, so it is compared up to the first step that
llama.cpp itself decided by less than GENERATE_MARGIN (as for Gemma's golden).

These fail until workbench reads Q5_1, IQ4_NL and Q5_K; the census test does not.
"""

import json
from pathlib import Path

import pytest

import workbench
from tests import _golden
from tests._quantized import CENSUS, census, quantized_path
from workbench.convert import CONVERTER_VERSION
from workbench.convert.cache import sha256

GOLDEN_DIR = Path(__file__).parent / "golden"
FILES = [("smollm2-135m", "Q5_1"), ("smollm2-135m", "IQ4_NL"), ("smollm2-135m", "Q5_K_M"),
         ("gemma3-270m", "Q5_K_M")]
GENERATE_MARGIN = 0.25  # top1 - top2 that a batched prefill's drift cannot overturn
pytestmark = pytest.mark.slow


def _id(f: tuple[str, str]) -> str:
    return f"{f[0]}-{f[1].lower()}"


@pytest.mark.parametrize("model_qtype", list(CENSUS), ids=[_id(f) for f in CENSUS])
def test_llama_quantize_wrote_the_census(model_qtype):
    assert census(quantized_path(*model_qtype)) == CENSUS[model_qtype]


def test_the_files_hold_every_new_format():
    held = {t for f in FILES for t in CENSUS[f]}
    assert {"Q5_1", "IQ4_NL", "Q5_K"} <= held


@pytest.fixture(scope="module", params=FILES, ids=[_id(f) for f in FILES])
def which(request):
    return request.param


@pytest.fixture(scope="module")
def golden(which):
    return json.loads((GOLDEN_DIR / f"greedy_{_id(which)}.json").read_text())


@pytest.fixture(scope="module")
def path(which):
    return quantized_path(*which)


@pytest.fixture(scope="module")
def model(path):
    return workbench.load(path, n_ctx=512)


def test_golden_is_for_this_file(golden, which, path):
    assert golden["quantized"] == f"{which[0]}:{which[1]}"
    assert golden["model_file"] == path.name
    assert golden["converter_version"] == CONVERTER_VERSION
    assert len(golden["cases"]) >= 8
    assert sha256(path) == golden["model_sha256"], (
        f"{path} is not the file greedy_{_id(which)}.json was made from (llama.cpp "
        f"{golden['llama_quantize_commit']}); remake the golden with scripts/make_goldens.py")


def test_prompt_tokenization_matches_llama_cpp(model, golden):
    for case in golden["cases"]:
        assert model.encode_prompt(case["prompt"]) == case["prompt_tokens"], case["prompt"]


def test_greedy_tokens_and_logits_match_llama_cpp(model, golden):
    results = [_golden.replay(model, case, golden["prompt_by_token"]) for case in golden["cases"]]
    worst = max(w for w, _ in results)
    ties = [t for _, found in results for t in found]
    print(f"worst top-5 logit difference {worst:.6f}; near-ties decided differently: {ties}")


def test_generate_reproduces_the_golden_continuations(model, golden):
    compared = _golden.generate_up_to_margin(model, golden["cases"], GENERATE_MARGIN)
    assert compared >= 20  # 26 to 83 tokens with these goldens
