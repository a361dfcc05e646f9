"""Write tests/golden/quant/<format>.json: ggml's own quantize and dequantize of fixed rows.

For each block format in TYPES (the ones workbench runs, and Q5_1, IQ4_NL, Q5_K), the
same ROWS x N_PER_ROW float32 input (seeded; see `input_rows`: a row of zeros, a normal
row with one large outlier, a row of tiny values whose scales fall into float16's
subnormal range, two plain normal rows, and a row whose magnitude changes per 32-block)
goes through llama.cpp's code, called with ctypes in `libggml-base.so` of the `make peer`
build (`<venv>/llama.cpp/lib`):

- `ggml_quantize_chunk(type, src, dst, 0, rows, n_per_row, imatrix=NULL)`: the bytes
  llama-quantize writes for a tensor without an importance matrix;
- the type's `from_float_ref` from `ggml_get_type_traits(type)`, row by row: ggml's
  reference quantizer (`quantize_row_<type>_ref`). For most types it is what
  `ggml_quantize_chunk` runs; for IQ4_NL it is not (the chunk quantizer searches 7 more
  scales, `ntry` 7 instead of -1), so its rows also keep these bytes as `quantized_ref`
  (null for a row holding a block of zeros: there IQ4_NL's reference leaves the quants
  uninitialized, a ggml bug, and writes different bytes from run to run);
- the type's `to_float` (`dequantize_row_<type>`) on the chunk bytes.

Each JSON holds the ggml type id, names, block and type size, the checks the script made,
provenance (llama.cpp commit and llama-cpp-python version from `<venv>/llama.cpp/build.json`,
this script, the workbench commit, the date) and per row: what it is, `input` (float32),
`quantized` (the chunk bytes), optionally `quantized_ref`, and `dequantized` (float32),
each a hex string of the little-endian bytes, so every float is exact:
`np.frombuffer(bytes.fromhex(row["input"]), "<f4")`.

The `ggml_type_traits` struct is read as ggml.h of that tree declares it (type_name,
blck_size, blck_size_interleave, type_size, is_quantized, to_float, from_float_ref); the
script checks the struct against `ggml_type_name`, `ggml_blck_size`, `ggml_type_size` and
workbench's own type table before using it. libggml-base is built without -march=native
(only ggml-cpu is), so these are portable scalar C paths, not the CPU backend's kernels.

    python scripts/make_quant_goldens.py              # every type in TYPES
    python scripts/make_quant_goldens.py q5_1 q5_k    # some of them

Exits with a message naming `make peer` when the build is missing. The tests need only the
JSON (tests/test_quant_goldens.py).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.make_goldens import workbench_commit  # noqa: E402
from workbench.formats.ggml_types import GGML_TYPES  # noqa: E402
from workbench.peers.llamacpp import build_info, install_dir  # noqa: E402

# GGUF type names, as ggml.h's enum ggml_type (ids looked up in workbench's table)
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q4_K", "Q5_K", "Q6_K"]
ROWS, N_PER_ROW = 6, 512
SEED = 20261204
OUT_DIR = ROOT / "tests" / "golden" / "quant"


def input_rows() -> tuple[np.ndarray, list[str]]:
    """(ROWS, N_PER_ROW) float32 and a description of each row, the same for every type."""
    rng = np.random.default_rng(SEED)
    rows, what = np.zeros((ROWS, N_PER_ROW), np.float32), []
    what.append("zeros")
    rows[1] = rng.standard_normal(N_PER_ROW)
    rows[1, 77] = 100.0  # one block (and one super-block) dominated by one weight
    what.append("normal(0, 1) with one outlier of 100 at index 77")
    rows[2] = rng.standard_normal(N_PER_ROW) * 1e-5
    what.append("normal(0, 1e-5): block scales in float16's subnormal range")
    rows[3] = rng.standard_normal(N_PER_ROW)
    what.append("normal(0, 1)")
    rows[4] = rng.standard_normal(N_PER_ROW) * 0.02
    what.append("normal(0, 0.02), the magnitude of trained weights")
    scale = np.repeat(10.0 ** rng.uniform(-3, 1, N_PER_ROW // 32), 32)
    rows[5] = rng.standard_normal(N_PER_ROW) * scale + rng.uniform(-1, 1, N_PER_ROW) * scale
    what.append("normal + uniform(-1, 1), both times 10**uniform(-3, 1) per 32-block")
    return rows, what


class TypeTraits(ctypes.Structure):
    """`struct ggml_type_traits` of ggml.h (the 0.3.36 tree), field for field."""

    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        # typedef void (*ggml_to_float_t)(const void * x, float * y, int64_t k);
        ("to_float", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)),
        # typedef void (*ggml_from_float_t)(const float * x, void * y, int64_t k);
        ("from_float_ref", ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)),
    ]


def load_ggml_base() -> ctypes.CDLL:
    """libggml-base.so of the `make peer` build, its quantization entry points typed."""
    lib_path = install_dir() / "lib" / "libggml-base.so"
    if build_info() is None or not lib_path.is_file():
        sys.exit(f"make_quant_goldens: llama.cpp is not built in this environment ({lib_path} or "
                 f"{install_dir() / 'build.json'} is missing); `make peer` builds it")
    lib = ctypes.CDLL(str(lib_path))
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_type_name.restype = ctypes.c_char_p
    lib.ggml_type_name.argtypes = [ctypes.c_int]
    lib.ggml_blck_size.restype = ctypes.c_int64
    lib.ggml_blck_size.argtypes = [ctypes.c_int]
    lib.ggml_type_size.restype = ctypes.c_size_t
    lib.ggml_type_size.argtypes = [ctypes.c_int]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_free.restype = None
    lib.ggml_quantize_free.argtypes = []
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    return lib


def traits_of(lib: ctypes.CDLL, type_id: int, name: str) -> TypeTraits:
    """ggml's traits of `type_id`, after checking the struct reads as the accessors say."""
    t = lib.ggml_get_type_traits(type_id).contents
    ours = GGML_TYPES[type_id]
    seen = (t.type_name.decode(), t.blck_size, t.type_size, t.is_quantized)
    want = (lib.ggml_type_name(type_id).decode(), lib.ggml_blck_size(type_id), lib.ggml_type_size(type_id), True)
    if seen != want or seen[0].upper() != name or (t.blck_size, t.type_size) != (ours.block_size, ours.type_size):
        sys.exit(f"make_quant_goldens: ggml_type_traits of {name} (id {type_id}) reads {seen}; ggml's accessors "
                 f"say {want}, workbench's table {ours}: the struct layout is not ggml.h's")
    if not t.to_float or not t.from_float_ref:
        sys.exit(f"make_quant_goldens: {name} has no to_float / from_float_ref in ggml_type_traits")
    return t


def quantize_chunk(lib: ctypes.CDLL, type_id: int, x: np.ndarray, row_bytes: int) -> np.ndarray:
    """ggml_quantize_chunk without an importance matrix: uint8 (rows, row_bytes)."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.zeros((x.shape[0], row_bytes), np.uint8)
    written = lib.ggml_quantize_chunk(type_id, x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], None)
    assert written == out.nbytes, (written, out.nbytes)
    return out


def quantize_ref(traits: TypeTraits, x: np.ndarray, row_bytes: int) -> np.ndarray:
    """The type's from_float_ref, one row per call: uint8 (rows, row_bytes)."""
    out = np.zeros((x.shape[0], row_bytes), np.uint8)
    for i, row in enumerate(np.ascontiguousarray(x, np.float32)):
        traits.from_float_ref(row.ctypes.data, out[i].ctypes.data, row.size)
    return out


def dequantize(traits: TypeTraits, raw: np.ndarray, n_per_row: int) -> np.ndarray:
    """The type's to_float, one row per call: float32 (rows, n_per_row)."""
    out = np.zeros((raw.shape[0], n_per_row), np.float32)
    for i, row in enumerate(np.ascontiguousarray(raw)):
        traits.to_float(row.ctypes.data, out[i].ctypes.data, n_per_row)
    return out


GROUP_MAX_EPS = 1e-15  # ggml-quants.c: a block below it is all zeros to the quantizers


def undefined_ref_rows(name: str, x: np.ndarray, block_size: int) -> set[int]:
    """Rows whose reference-quantized bytes ggml leaves undefined: for IQ4_NL, a block with
    max |x| < GROUP_MAX_EPS makes `quantize_row_iq4_nl_impl` (ntry -1) skip filling its
    quants, which are then packed from an uninitialized stack array."""
    if name != "IQ4_NL":
        return set()
    amax = np.abs(x).reshape(x.shape[0], -1, block_size).max(axis=2)
    return {int(i) for i in np.flatnonzero((amax < GROUP_MAX_EPS).any(axis=1))}


def golden_for(lib: ctypes.CDLL, name: str, x: np.ndarray, what: list[str], provenance: dict) -> dict:
    type_id = next(i for i, t in GGML_TYPES.items() if t.name == name)
    traits = traits_of(lib, type_id, name)
    if lib.ggml_quantize_requires_imatrix(type_id):
        sys.exit(f"make_quant_goldens: {name} needs an importance matrix; these goldens use none")
    lib.ggml_quantize_init(type_id)  # a no-op for these types; ggml_quantize_chunk calls it too
    row_bytes = x.shape[1] // traits.blck_size * traits.type_size
    chunk = quantize_chunk(lib, type_id, x, row_bytes)
    ref = quantize_ref(traits, x, row_bytes)
    floats = dequantize(traits, chunk, x.shape[1])
    again = dequantize(traits, quantize_chunk(lib, type_id, x, row_bytes), x.shape[1])
    assert np.array_equal(floats.view(np.uint32), again.view(np.uint32)), f"{name}: not deterministic"
    undefined = undefined_ref_rows(name, x, traits.blck_size)
    defined = [i for i in range(x.shape[0]) if i not in undefined]
    chunk_is_ref = bool(np.array_equal(chunk[defined], ref[defined]))
    rows = []
    for i in range(x.shape[0]):
        row = {"what": what[i], "input": x[i].astype("<f4").tobytes().hex(), "quantized": chunk[i].tobytes().hex()}
        if not chunk_is_ref:
            row["quantized_ref"] = None if i in undefined else ref[i].tobytes().hex()
        row["dequantized"] = floats[i].astype("<f4").tobytes().hex()
        rows.append(row)
    return {
        "name": name,
        "ggml_type": type_id,
        "ggml_type_name": traits.type_name.decode(),
        "block_size": traits.blck_size,
        "type_size": traits.type_size,
        "n_rows": x.shape[0],
        "n_per_row": x.shape[1],
        "row_bytes": row_bytes,
        "encoding": "each of input / quantized / quantized_ref / dequantized is one row's little-endian bytes "
                    "in hex; input and dequantized are float32",
        "quantized_by": f"ggml_quantize_chunk(GGML_TYPE_{name}, ..., imatrix=NULL), as llama-quantize without "
                        "an importance matrix",
        "quantized_is_reference": chunk_is_ref,
        "reference_quantizer": f"ggml_get_type_traits(GGML_TYPE_{name})->from_float_ref "
                               f"(quantize_row_{traits.type_name.decode()}_ref)"
                               + ("" if chunk_is_ref else "; its bytes are quantized_ref, which differ from "
                                  "quantized (null where a block of zeros leaves them uninitialized)"),
        "dequantized_by": f"ggml_get_type_traits(GGML_TYPE_{name})->to_float "
                          f"(dequantize_row_{traits.type_name.decode()}) of quantized",
        "provenance": provenance,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("types", nargs="*", default=TYPES, help=f"GGML type names (default: {' '.join(TYPES)})")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    names = [t.upper() for t in args.types]
    unknown = [t for t in names if t not in TYPES]
    if unknown:
        ap.error(f"unknown type(s) {', '.join(unknown)}; choose from {', '.join(TYPES)}")

    lib = load_ggml_base()
    build = build_info()
    provenance = {
        "llama_cpp_commit": build["llama_cpp_commit"],
        "llama_cpp_python": build["llama_cpp_python"],
        "library": "libggml-base.so of `make peer` (<venv>/llama.cpp/lib), through ctypes",
        "script": "scripts/make_quant_goldens.py",
        "workbench_commit": workbench_commit(),
        "seed": SEED,
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
    }
    x, what = input_rows()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            golden = golden_for(lib, name, x, what, provenance)
            out = args.out_dir / f"{name.lower()}.json"
            out.write_text(json.dumps(golden, indent=1) + "\n")
            note = "" if golden["quantized_is_reference"] else " (chunk quantizer differs from the reference)"
            print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {out.stat().st_size} bytes"
                  f"{note}")
    finally:
        lib.ggml_quantize_free()


if __name__ == "__main__":
    main()
