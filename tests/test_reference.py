"""The compiled models against the naive float64 reference of tests/_reference.py.

Each case loads a model with `threads=1, n_ctx=64, kv_type="f32", quant_threshold=None`
(float weights stay float, the KV cache float32), feeds a prompt in one batch and then a
few tokens one at a time through the cache, and compares the logits after each forward
with the reference's row for that position (one reference forward over the whole
sequence, no cache). The step tokens are teacher-forced from a golden file, so the
sequence does not depend on the code under test.

The reference itself is first held to transformers' logits (tests/golden, float32 torch)
where a golden exists: tiny GPT-2 and the two HF F32 directories, so that a shared
misreading of a weight cannot pass as agreement.

Tolerances (max |logit difference| over the whole vocabulary; measured on AMD EPYC,
numbers in each constant's comment):
- float weights: only float32 arithmetic (summation order, float32 rope tables built by
  ggml's repeated products) separates the models from the float64 reference. Logits of
  the 135M-270M models are O(10-30), where a float32 ulp is ~2e-6; measured 3e-6-2e-5.
  The bounds are ~10x that, so that a legitimate reordering of sums (fused or split
  products, other thread counts) passes and any wrong operation (a rope pair, a norm, a
  mask off by one: O(0.01-10)) does not;
- Q4_1 GGUF: the same dequantized weights, but llama.cpp-style quantized activations
  (Q8_1 before each Q4_1 product, Q8_0 before the Q8_0 lm_head) round every activation
  to 8 bits per block of 32: the logits move by O(0.1-1), so the test asks for the same
  argmax where the reference's top-2 margin is not a near tie, and a loose max-abs bound.
"""

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import workbench
from tests._models import gemma3_path, smollm2_path
from tests._reference import reference_logits

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
TINY_GPT2 = ROOT / "data" / "tiny-gpt2"
N_STEPS = 4  # one-token forwards after the prompt
LOAD = dict(threads=1, n_ctx=64, kv_type="f32", quant_threshold=None)

# reference vs transformers (float32 torch; goldens rounded to 1e-6 / 1e-5): measured
# 5.7e-6 (tiny GPT-2), 1.9e-5 (SmolLM2), 9.4e-6 (Gemma 3)
GOLDEN_ATOL = 1e-4
ATOL = {  # compiled model vs reference, float weights, f32 cache: ~10x what was measured
    "tiny-gpt2": 5e-5,  # measured 2.6e-6 (logits O(5))
    "smollm2-135m:hf-f32": 2e-4,  # measured 1.7e-5 (logits O(20), 30 layers)
    "gemma3-270m:hf-f32": 2e-4,  # measured 9.5e-6, and 2.0e-5 with the window cut to SMALL_WINDOW
}
# Q4_1 with quantized activations: over 39 positions of 3 prompts max |diff| was 0.46-1.33
# (0.98 on the case tested), mean |diff| 0.07-0.57, with logits of std ~3.5; the argmax
# flipped only where the reference's top-2 margin was 0.25 or less
Q4_1_ATOL = 2.0
Q4_1_NEAR_TIE = 0.5
SMALL_WINDOW = 4  # Gemma's sliding window shrunk from 512 so that a 10-token sequence crosses it


def _json(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


@lru_cache(maxsize=None)
def _reference(path: Path, ids: tuple[int, ...]) -> np.ndarray:
    return reference_logits(path, ids)


def _run(model, prompt: list[int], steps: list[int]) -> list[np.ndarray]:
    """Logits after the prompt (one batch) and after each step token (one at a time)."""
    model.reset()
    out = [model.forward(prompt).copy()]  # forward returns a view of the session's buffer
    out += [model.forward([t]).copy() for t in steps]
    return out


def _max_diffs(model, prompt: list[int], steps: list[int], ref: np.ndarray) -> list[float]:
    got = _run(model, prompt, steps)
    rows = ref[len(prompt) - 1 :]
    assert len(got) == len(rows)
    return [float(np.abs(g - r).max()) for g, r in zip(got, rows)]


def _hf_case(golden: dict) -> tuple[list[int], list[int]]:
    """The first golden prompt and its first N_STEPS greedy tokens of transformers."""
    case = golden["cases"][0]
    return case["prompt_tokens"], case["tokens"][:N_STEPS]


# --- tiny GPT-2 (always available) ----------------------------------------------------


def test_reference_matches_transformers_tiny_gpt2():
    golden = _json("tiny_gpt2.json")
    worst = 0.0
    for case in golden["cases"]:
        ref = _reference(TINY_GPT2, tuple(case["prompt_tokens"]))
        for pos, row in case["logits_last"].items():
            worst = max(worst, float(np.abs(ref[int(pos)] - np.asarray(row)).max()))
    print(f"tiny-gpt2 reference vs transformers: {worst:.2e}")
    assert worst < GOLDEN_ATOL


def test_tiny_gpt2_matches_reference():
    case = _json("tiny_gpt2.json")["cases"][0]
    prompt, steps = case["prompt_tokens"], case["greedy"][:N_STEPS]
    ref = _reference(TINY_GPT2, tuple(prompt + steps))
    diffs = _max_diffs(workbench.load(TINY_GPT2, **LOAD), prompt, steps, ref)
    print(f"tiny-gpt2 vs reference: {max(diffs):.2e}")
    assert max(diffs) < ATOL["tiny-gpt2"], diffs


# --- derived HF F32 directories of the real models -------------------------------------

HF_MODELS = {"smollm2-135m:hf-f32": smollm2_path, "gemma3-270m:hf-f32": gemma3_path}


def _hf_path(name: str) -> Path:
    """The derived directory, made on first use; skips when the source's package is missing."""
    HF_MODELS[name]()
    from workbench.convert import derived

    return derived(*name.split(":"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HF_MODELS))
def test_reference_matches_transformers_hf(name):
    path = _hf_path(name)
    golden = _json(f"hf_{name.replace(':', '-')}.json")
    # derived() has checked the files against this record of their sha256
    record = json.loads(path.with_name(path.name + ".json").read_text())["files"]
    if record[f"{path.name}/model.safetensors"]["sha256"] != golden["safetensors_sha256"]:
        pytest.skip(f"{path} is not the directory the golden was made from: rerun scripts/make_hf_goldens.py")
    prompt, steps = _hf_case(golden)
    case = golden["cases"][0]
    ref = _reference(path, tuple(prompt + steps))
    # top-10 logits at every prompt position, then the top-5 that chose each step token
    worst = max(float(np.abs(ref[i, p["ids"]] - np.asarray(p["logits"])).max())
                for i, p in enumerate(case["positions"]))
    for j, top in enumerate(case["top5"][:N_STEPS]):
        worst = max(worst, float(np.abs(ref[len(prompt) - 1 + j, top["ids"]] - np.asarray(top["logits"])).max()))
    print(f"{name} reference vs transformers: {worst:.2e}")
    assert worst < GOLDEN_ATOL


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HF_MODELS))
def test_hf_f32_matches_reference(name):
    HF_MODELS[name]()
    model = workbench.load(name, **LOAD)
    prompt, steps = _hf_case(_json(f"hf_{name.replace(':', '-')}.json"))
    diffs = _max_diffs(model, prompt, steps, _reference(model.path, tuple(prompt + steps)))
    print(f"{name} vs reference: {max(diffs):.2e} {diffs}")
    assert max(diffs) < ATOL[name], diffs


@pytest.mark.slow
def test_gemma3_sliding_window_matches_reference(tmp_path):
    """The 270M directory with its window cut to SMALL_WINDOW keys (weights linked, not
    copied): the prompt and steps cross it, so an off-by-one in the mask shows."""
    src = _hf_path("gemma3-270m:hf-f32")
    config = json.loads((src / "config.json").read_text())
    config["sliding_window"] = SMALL_WINDOW
    (tmp_path / "config.json").write_text(json.dumps(config))
    for f in src.iterdir():
        if f.name != "config.json":
            os.symlink(f, tmp_path / f.name)
    prompt, steps = _hf_case(_json("hf_gemma3-270m-hf-f32.json"))
    assert len(prompt) + len(steps) > SMALL_WINDOW + 2
    windowed = workbench.load(tmp_path, **LOAD)
    assert windowed.config.sliding_window == SMALL_WINDOW
    ref = _reference(tmp_path, tuple(prompt + steps))
    full = _reference(src, tuple(prompt + steps))
    # the window must matter at every compared position (measured 10.9-15.9), or this checks nothing
    effect = np.abs(ref - full)[len(prompt) - 1 :].max(axis=1)
    assert effect.min() > 10 * ATOL["gemma3-270m:hf-f32"], effect
    diffs = _max_diffs(windowed, prompt, steps, ref)
    print(f"gemma3 window {SMALL_WINDOW} vs reference: {max(diffs):.2e} {diffs}; window effect {effect}")
    assert max(diffs) < ATOL["gemma3-270m:hf-f32"], diffs


# --- the shipped Q4_1 GGUF --------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_q4_1_matches_dequantized_reference():
    path = smollm2_path()
    golden = _json("greedy_smollm2-135m.json")  # llama.cpp's greedy tokens on this file
    case = golden["cases"][0]
    prompt, steps = case["prompt_tokens"], case["tokens"][:N_STEPS]
    ref = _reference(path, tuple(prompt + steps))
    got = _run(workbench.load(path, **LOAD), prompt, steps)
    rows = ref[len(prompt) - 1 :]
    diffs = [float(np.abs(g - r).max()) for g, r in zip(got, rows)]
    print(f"smollm2-135m Q4_1 vs dequantized reference: {max(diffs):.2e} {diffs}")
    assert max(diffs) < Q4_1_ATOL, diffs
    checked = 0
    for j, (g, r) in enumerate(zip(got, rows)):
        top2 = np.sort(r)[-2:]
        if top2[1] - top2[0] >= Q4_1_NEAR_TIE:
            assert int(np.argmax(g)) == int(np.argmax(r)), f"position {len(prompt) - 1 + j}: argmax differs"
            checked += 1
    assert checked >= 3, "too many near ties for the argmax check to mean anything: pick another case"
