"""Gemma 3 270M (Q4_K_M) against llama.cpp: tokenization, greedy tokens and logits.

The golden file comes from `scripts/make_goldens.py --model gemma3-270m --long
--prompt-by-token` (llama-cpp-python). Each case is replayed teacher-forced, its prompt
fed the way the golden's was (`prompt_by_token`): at every step our argmax must equal
llama.cpp's token, and our logits of llama.cpp's top-5 tokens must lie within LOGIT_ATOL
of its own. A different argmax is accepted only where llama.cpp's own top-2 margin is
below NEAR_TIE. The long case (more than 512 prompt tokens) is where the sliding window
of the local layers matters; a window one key wider or narrower moves its logits by ~0.3.

The prompts are fed one token at a time because llama.cpp multiplies a batch of rows by
its Q4_K weights with a repacked (q4_K_8x8) kernel that sums in another order than its
matrix-vector one; our batched Q4_K follows the latter, and Gemma amplifies a last-bit
difference into logits that differ by ~1 (its activations are re-quantized to 8 bits
before every product, so one flipped rounding grows layer by layer).
"""

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest

import workbench
from tests import _golden
from tests._models import gemma3_path
from workbench.kernels.activations import GELU_TANH_F16_TABLE

GOLDEN = Path(__file__).parent / "golden" / "greedy_gemma3-270m.json"
GENERATE_MARGIN = 0.25  # top1 - top2 that a batched prefill's drift cannot overturn


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def model(golden):
    return workbench.load(gemma3_path(), n_ctx=golden["long_n_ctx"])


def feed_prompt(model, golden, ids):
    return _golden.feed_prompt(model, ids, golden["prompt_by_token"])


def replay(model, golden, case) -> tuple[float, list]:
    return _golden.replay(model, case, golden["prompt_by_token"])


@pytest.mark.slow
def test_golden_is_for_this_file(golden):
    assert golden["model_file"] == gemma3_path().name
    assert len(golden["cases"]) >= 8
    assert len(golden["long_cases"][0]["prompt_tokens"]) > 512 + 64  # well past the sliding window


@pytest.mark.slow
def test_prompt_tokenization_matches_llama_cpp(model, golden):
    for case in golden["cases"] + golden["long_cases"]:
        assert model.encode_prompt(case["prompt"]) == case["prompt_tokens"], case["prompt"][-40:]


@pytest.mark.slow
def test_greedy_tokens_and_logits_match_llama_cpp(model, golden):
    worst, ties = 0.0, []
    for case in golden["cases"]:
        w, t = replay(model, golden, case)
        worst, ties = max(worst, w), ties + t
    print(f"worst top-5 logit difference {worst:.4f}; near-ties decided differently: {ties}")


@pytest.mark.slow
def test_long_prompt_past_the_sliding_window_matches_llama_cpp(model, golden):
    worst, ties = replay(model, golden, golden["long_cases"][0])
    print(f"long prompt: worst top-5 logit difference {worst:.4f}; near-ties decided differently: {ties}")


@pytest.mark.slow
def test_long_prompt_detects_a_sliding_window_off_by_one(model, golden):
    # the long golden must be able to fail: one key more per sliding layer moves the logits
    case = golden["long_cases"][0]
    ref = case["top5"][0]
    windows = model.net.weights().windows  # what the compiled step reads, per layer
    try:
        windows[windows > 0] += 1
        logits = feed_prompt(model, golden, case["prompt_tokens"])
    finally:
        windows[windows > 0] -= 1
    assert np.abs(logits[ref["ids"]] - np.asarray(ref["logits"])).max() > 0.01


@pytest.mark.slow
def test_generate_reproduces_the_golden_continuations(model, golden):
    compared = _golden.generate_up_to_margin(model, golden["cases"], GENERATE_MARGIN)
    assert compared >= 50  # 60 tokens with this golden


def test_gelu_table_is_ggml_cpu_table():
    # ggml's CPU GELU reads a half table built at ggml_cpu_init; ours must be the same bits
    llama_cpp = pytest.importorskip("llama_cpp")
    lib = Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so.0"
    if not lib.exists():
        pytest.skip(f"{lib} not found")
    cpu = ctypes.CDLL(str(lib))
    cpu.ggml_cpu_init()
    theirs = np.ctypeslib.as_array((ctypes.c_uint16 * 65536).in_dll(cpu, "ggml_table_gelu_f16")).copy()
    ours = GELU_TANH_F16_TABLE.astype(np.float16).view(np.uint16)
    nan = np.isnan(GELU_TANH_F16_TABLE)
    assert np.array_equal(np.isnan(theirs.view(np.float16)), nan)
    assert np.array_equal(ours[~nan], theirs[~nan])
