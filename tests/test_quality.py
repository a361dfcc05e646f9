"""Quantization quality, measured (scripts/quality_table.py writes tests/golden/quality.json).

Floors, stated before measuring: Q8_0 everywhere (lm_head included) keeps top-1
agreement with the float model >= 0.97 and perplexity within 3 %; Q4_0 everywhere keeps
agreement >= 0.70 and perplexity within 30 %. A live re-run of the smallest case checks
that the table is what the code computes, not a hand-edited file.
"""

import json
from pathlib import Path

import pytest

import workbench

TABLE = Path(__file__).parent / "golden" / "quality.json"
FLOORS = {"q8_0": (0.97, 1.03), "q4_0": (0.70, 1.30)}  # (min top-1 agreement, max perplexity ratio)


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
        assert r["weights_mib"] < base["weights_mib"] / 2.5  # the point of quantizing


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
