"""Every block format against llama.cpp's own codec (tests/golden/quant/*.json).

Each golden (scripts/make_quant_goldens.py) holds six rows of 512 floats, the bytes
`ggml_quantize_chunk` made of them (no importance matrix, as llama-quantize) and the
floats ggml's `to_float` made of those bytes, all as exact hex. For each format:

- the golden's layout agrees with workbench's GGML type table;
- `dequantize_ref` and the `get_rows` kernel give ggml's floats bit for bit (a zero row
  of Q4_0, Q5_0 and Q6_K decodes to -0.0, and the tiny row has float16-subnormal scales);
- where workbench has a reference quantizer, it writes the bytes of ggml's reference
  quantizer (`from_float_ref`): the chunk bytes, or `quantized_ref` where the chunk
  quantizer is another one (IQ4_NL searches more scales than its reference does; its
  reference leaves a block of zeros undefined, so that row has no `quantized_ref`).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import UnsupportedError
from workbench.formats.ggml_types import GGML_TYPES
from workbench.kernels.linear import get_rows
from workbench.quant import dequantize_ref, quantize_ref

GOLDENS = sorted((Path(__file__).parent / "golden" / "quant").glob("*.json"))


def _rows(golden: dict, key: str, dtype: str) -> np.ndarray:
    """(n_rows, ...) array of the rows' hex field `key`."""
    return np.stack([np.frombuffer(bytes.fromhex(row[key]), dtype) for row in golden["rows"]])


def _assert_same_bits(ours: np.ndarray, theirs: np.ndarray, golden: dict, what: str) -> None:
    a, b = ours.view(np.uint32), theirs.view(np.uint32)
    bad = np.argwhere(a != b)
    if bad.size:
        r, i = bad[0]
        raise AssertionError(
            f"{golden['name']} {what}: {len(bad)} of {a.size} floats differ from ggml's; first row {r} "
            f"({golden['rows'][r]['what']}) index {i}: {ours[r, i]!r} ({a[r, i]:08x}) != "
            f"{theirs[r, i]!r} ({b[r, i]:08x})")


@pytest.fixture(scope="module", params=GOLDENS, ids=[p.stem for p in GOLDENS])
def golden(request):
    return json.loads(request.param.read_text())


def test_every_format_has_a_golden():
    names = {p.stem for p in GOLDENS}
    assert {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "q4_k", "q5_k", "q6_k"} <= names


def test_golden_layout_is_ggml_type_table(golden):
    t = GGML_TYPES[golden["ggml_type"]]
    assert (t.name, t.block_size, t.type_size) == (golden["name"], golden["block_size"], golden["type_size"])
    assert golden["row_bytes"] == t.row_bytes(golden["n_per_row"])
    assert _rows(golden, "input", "<f4").shape == (golden["n_rows"], golden["n_per_row"])
    assert _rows(golden, "quantized", np.uint8).shape == (golden["n_rows"], golden["row_bytes"])
    assert _rows(golden, "dequantized", "<f4").shape == (golden["n_rows"], golden["n_per_row"])


def test_dequantize_ref_is_ggml_to_float(golden):
    raw = _rows(golden, "quantized", np.uint8)
    ours = dequantize_ref(golden["name"].lower(), raw)
    _assert_same_bits(ours, _rows(golden, "dequantized", "<f4"), golden, "dequantize_ref")


def test_get_rows_is_ggml_to_float(golden):
    w = _rows(golden, "quantized", np.uint8)
    n = golden["n_rows"]
    ids = np.array([n - 1, 0, 2, 2] + list(range(n)), np.int64)  # out of order, one repeated
    out = np.full((ids.size, golden["n_per_row"]), np.nan, np.float32)
    get_rows(out, w, ids, golden["name"].lower(), f"golden {golden['name']}")
    _assert_same_bits(out, _rows(golden, "dequantized", "<f4")[ids], golden, "get_rows")


def test_quantize_ref_is_ggml_reference_quantizer(golden):
    fmt = golden["name"].lower()
    x = _rows(golden, "input", "<f4")
    try:
        ours = quantize_ref(fmt, x)
    except UnsupportedError as e:
        pytest.skip(f"workbench has no reference quantizer for {fmt}: {e}")
    key = "quantized" if golden["quantized_is_reference"] else "quantized_ref"
    for i, row in enumerate(golden["rows"]):
        if row[key] is None:  # ggml's reference writes no defined bytes for this row
            continue
        bad = np.flatnonzero(ours[i] != np.frombuffer(bytes.fromhex(row[key]), np.uint8))
        assert not bad.size, (f"{golden['name']} quantize_ref: {len(bad)} bytes of row {i} ({row['what']}) "
                              f"differ from ggml's reference quantizer's; the first is byte {bad[0]} "
                              f"(block {bad[0] // golden['type_size']})")
