"""HF F32 directories against transformers (goldens by scripts/make_hf_goldens.py).

The directories are the ones workbench derives from the two GGUF models
(`smollm2-135m:hf-f32`, `gemma3-270m:hf-f32`): made on first use by
`workbench.convert.derived`, and refused here if their safetensors are not the bytes the
golden was made from. Checked, per prompt: our tokenizer gives transformers' ids; our
logits at every prompt position (run token by token through the decode path) match
transformers' top-K within a stated tolerance; greedy decoding replayed teacher-forced
gives transformers' tokens, except where transformers' own top-2 margin is a near tie.

Tolerances: with `kv_type="f32"` only summation order separates us from torch, so logits
agree to LOGIT_ATOL_F32. With the default f16 cache (llama.cpp's), keys, values, queries
and attention probabilities are rounded to half precision: LOGIT_ATOL_F16, and a
different argmax is accepted below NEAR_TIE_F16.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import workbench

GOLDEN = Path(__file__).parent / "golden"
LOGIT_ATOL_F32 = 1e-3
LOGIT_ATOL_F16 = 0.15
NEAR_TIE_F32 = 1e-3
NEAR_TIE_F16 = 0.1
CASES = sorted(GOLDEN.glob("hf_*.json"))

pytestmark = pytest.mark.slow


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module", params=CASES, ids=lambda p: p.stem)
def golden(request):
    g = json.loads(request.param.read_text())
    from workbench.convert import derived

    path = derived(*g["model"].split(":"))
    assert _sha256(path / "model.safetensors") == g["safetensors_sha256"], \
        f"{path} is not the directory {request.param.name} was made from: rerun scripts/make_hf_goldens.py"
    return g


def _check_positions(model, case, atol, near_tie) -> float:
    """Feed the prompt up to each recorded position (token by token where every position is
    recorded, in batches between them on long prompts); compare there. Worst difference."""
    model.reset()
    worst, fed = 0.0, 0
    ids = case["prompt_tokens"]
    for i, ref in enumerate(case["positions"]):
        if ref is None:
            continue
        logits = model.forward(ids[fed : i + 1])
        fed = i + 1
        diff = float(np.abs(logits[ref["ids"]] - np.asarray(ref["logits"])).max())
        worst = max(worst, diff)
        assert diff < atol, f"{case['prompt'][:30]!r} position {i}: top-K logits off by {diff:.5f}"
        if int(np.argmax(logits)) != ref["ids"][0]:
            margin = ref["logits"][0] - ref["logits"][1]
            assert margin < near_tie, f"{case['prompt'][:30]!r} position {i}: argmax differs, margin {margin:.4f}"
    return worst


def _replay(model, case, atol, near_tie) -> float:
    """Feed the prompt in one batch, then teacher-force transformers' greedy tokens."""
    model.reset()
    logits = model.forward(case["prompt_tokens"])
    worst = 0.0
    for step, (token, ref) in enumerate(zip(case["tokens"], case["top5"])):
        diff = float(np.abs(logits[ref["ids"]] - np.asarray(ref["logits"])).max())
        worst = max(worst, diff)
        assert diff < atol, f"{case['prompt'][:30]!r} step {step}: top-5 logits off by {diff:.5f}"
        if int(np.argmax(logits)) != token:
            margin = ref["logits"][0] - ref["logits"][1]
            assert margin < near_tie, f"{case['prompt'][:30]!r} step {step}: argmax differs, margin {margin:.4f}"
        logits = model.forward([token])
    return worst


@pytest.mark.parametrize("kv_type", ["f32", "f16"])
def test_logits_and_greedy_tokens_match_transformers(golden, kv_type):
    atol, near_tie = (LOGIT_ATOL_F32, NEAR_TIE_F32) if kv_type == "f32" else (LOGIT_ATOL_F16, NEAR_TIE_F16)
    model = workbench.load(golden["model"], kv_type=kv_type, n_ctx=1024)
    worst = 0.0
    for case in golden["cases"]:
        assert model.encode_prompt(case["prompt"]) == case["prompt_tokens"], case["prompt"][:40]
        worst = max(worst, _check_positions(model, case, atol, near_tie), _replay(model, case, atol, near_tie))
    print(f"{golden['model']} kv {kv_type}: worst logit difference {worst:.2e}")
