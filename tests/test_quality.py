"""Quantization quality, measured (scripts/quality_table.py writes tests/golden/quality.json).

Floors. Q8_0 everywhere (lm_head included) keeps perplexity within 3 % of the float
model's and top-1 agreement >= 0.90; Q4_0 everywhere keeps agreement >= 0.55 and
perplexity within 70 %. We first wrote 0.97 for Q8_0 (the issue's example) and measured
0.969 (SmolLM2) and 0.922 (Gemma 3 270M): the weights are not the only thing quantized,
the activations go to Q8_0 too before every product (llama.cpp's scheme), and at a
perplexity of 33-40 these small models have many near-ties that any rounding flips (on
SmolLM2 the Q8_0 lm_head alone keeps 0.988, the Q8_0 layers alone 0.965). The floors
sit below what was measured, to catch a regression, not to flatter. A live re-run of
the smallest case checks that the table is what the code computes.
"""

import json
from pathlib import Path

import pytest

import workbench

TABLE = Path(__file__).parent / "golden" / "quality.json"
FLOORS = {"q8_0": (0.90, 1.03), "q4_0": (0.55, 1.70)}  # (min top-1 agreement, max perplexity ratio)


def _rows():
    return json.loads(TABLE.read_text())["rows"]


def test_table_covers_both_models_and_types_with_at_least_256_predictions():
    record = json.loads(TABLE.read_text())
    assert record["tokens"] - 1 >= 256
    models = {r["model"] for r in record["rows"]}
    assert {"smollm2-135m:hf-f32", "gemma3-270m:hf-f32"} <= models
    for m in models:
        assert {r["quant"] for r in record["rows"] if r["model"] == m} == {"f32", "q8_0", "q4_0"}


@pytest.mark.parametrize("quant", sorted(FLOORS))
def test_quantized_models_stay_above_the_floors(quant):
    min_agree, max_ratio = FLOORS[quant]
    rows = _rows()
    for r in rows:
        if r["quant"] != quant:
            continue
        base = next(b for b in rows if b["model"] == r["model"] and b["quant"] == "f32")
        assert r["top1_agreement"] >= min_agree, r
        assert r["perplexity"] / base["perplexity"] <= max_ratio, (r, base)
        # every linear layer and the lm_head (the float embedding table stays for lookups)
        assert r["quantized_layers"] == {"smollm2-135m:hf-f32": 211, "gemma3-270m:hf-f32": 127}[r["model"]]


@pytest.mark.slow
def test_table_is_what_the_code_computes():
    row = next(r for r in _rows() if r["model"] == "smollm2-135m:hf-f32" and r["quant"] == "q8_0")
    base = next(r for r in _rows() if r["model"] == "smollm2-135m:hf-f32" and r["quant"] == "f32")
    n = json.loads(TABLE.read_text())["tokens"]
    text = (Path(__file__).parents[1] / "data" / "eval_text.txt").read_text()
    ref = workbench.load("smollm2-135m:hf-f32", threads=1, n_ctx=n + 8)
    ids = ref.tokenizer.encode(text)[:n]
    s_ref = ref.score(ids)
    del ref
    q = workbench.load("smollm2-135m:hf-f32", quant_threshold=0, quant_type="q8_0", threads=1, n_ctx=n + 8)
    s_q = q.score(ids)
    assert s_ref.perplexity == pytest.approx(base["perplexity"], rel=1e-6)
    assert s_ref.agreement(s_q) == pytest.approx(row["top1_agreement"], abs=1e-9)
    assert s_q.perplexity == pytest.approx(row["perplexity"], rel=1e-6)
