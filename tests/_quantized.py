"""The shipped models quantized by llama.cpp's own llama-quantize, for formats workbench
cannot write itself (Q5_1, IQ4_NL, Q5_K).

`quantized_path(model, qtype)` returns `<cache>/llama-quantize/<model>-<qtype>.gguf`
(lowercase, e.g. `smollm2-135m-q5_k_m.gguf`; `<cache>` is `catalog.cache_dir()`), made on
first use: workbench converts the shipped file to F32 (`derived(model, "f32")`, the
`gguf-f32` converter), then `llama-quantize F32 OUT QTYPE 2` of the `make peer` build
(`<venv>/llama.cpp/bin`) writes OUT, under a partial name renamed into place when done.
A sidecar `<file>.json` records the F32 source (path, size, mtime), the converter
version, the llama.cpp commit, and the output's size and sha256; a cached file is reused
only while all of these still hold, else it is made again. Two processes making the same
file at once both write it whole and rename: the last rename wins with the same bytes.

Without the peer build (or with one made on another CPU, or without llama-quantize) the
function skips the test with the reason; with `WORKBENCH_REQUIRE_PEER=1` it fails
instead. `make_quantized` is the same without pytest (scripts/make_goldens.py uses it)
and raises `PeerUnavailableError`.

llama-quantize is deterministic here: two runs (2 and 1 threads) wrote byte-identical
files. Its choices depend on the shapes (K-quants need rows of a multiple of 256, else a
tensor falls back: Q5_K -> Q5_1, Q6_K -> Q8_0) and on its mixture rules (Q5_K_M: Q6_K
for attn_v and ffn_down in `use_more_bits` layers; IQ4_NL: Q5_K for attn_v when
n_gqa >= 4, and for ffn_down in the first n_layer/8 layers). CENSUS is what it wrote
(llama.cpp 0c1e57098), tensors per type:

  SmolLM2-135M (d_model 576, d_ff 1536; 30 layers: only ffn_down's 1536 columns are a
  multiple of 256):
    q5_1    F32 61, Q8_0 1 (token_embd), Q5_1 210
    iq4_nl  F32 61, Q8_0 1 (token_embd), IQ4_NL 207, Q5_K 3 (ffn_down of layers 0-2)
    q5_k_m  F32 61, Q8_0 15 (token_embd, attn_v of 14 layers: Q6_K fallback), Q5_1 166,
            Q5_K 16 (ffn_down), Q6_K 14 (ffn_down)
  Gemma 3 270M (d_model 640, d_ff 2048, attention 4 x 256 = 1024; 18 layers: ffn_down
  and attn_output can be K-quants):
    q5_1    F32 109, Q8_0 1 (token_embd), Q5_1 126
    iq4_nl  F32 109, Q8_0 1 (token_embd), IQ4_NL 106, Q5_1 18 (attn_v: Q5_K fallback),
            Q5_K 2 (ffn_down of layers 0-1)
    q5_k_m  F32 109, Q8_0 10 (token_embd, attn_v of 9 layers), Q5_1 81, Q5_K 27
            (attn_output, ffn_down), Q6_K 9 (ffn_down)
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests._models import gemma3_path, smollm2_path
from workbench.convert import CONVERTER_VERSION, derived
from workbench.formats.catalog import cache_subdir
from workbench.formats.files import partial_path, remove, sha256, sweep_partials
from workbench.formats.gguf import GGUFFile
from workbench.peers import PeerUnavailableError, llamacpp

MODELS = {"smollm2-135m": smollm2_path, "gemma3-270m": gemma3_path}
QTYPES = ("Q5_1", "IQ4_NL", "Q5_K_M")
THREADS = 2

CENSUS = {
    ("smollm2-135m", "Q5_1"): {"F32": 61, "Q8_0": 1, "Q5_1": 210},
    ("smollm2-135m", "IQ4_NL"): {"F32": 61, "Q8_0": 1, "IQ4_NL": 207, "Q5_K": 3},
    ("smollm2-135m", "Q5_K_M"): {"F32": 61, "Q8_0": 15, "Q5_1": 166, "Q5_K": 16, "Q6_K": 14},
    ("gemma3-270m", "Q5_1"): {"F32": 109, "Q8_0": 1, "Q5_1": 126},
    ("gemma3-270m", "IQ4_NL"): {"F32": 109, "Q8_0": 1, "IQ4_NL": 106, "Q5_1": 18, "Q5_K": 2},
    ("gemma3-270m", "Q5_K_M"): {"F32": 109, "Q8_0": 10, "Q5_1": 81, "Q5_K": 27, "Q6_K": 9},
}


def llama_quantize() -> Path:
    """The llama-quantize binary of `make peer`; PeerUnavailableError saying why it cannot run here."""
    from workbench.machine import cpu_name

    problem = llamacpp.build_problem(llamacpp.build_info(), cpu_name(), llamacpp.cpu_flags())
    binary = llamacpp.install_dir() / "bin" / "llama-quantize"
    if problem is None and not os.access(binary, os.X_OK):
        problem = f"{binary} is missing: `make peer` builds it"
    if problem:
        raise PeerUnavailableError(problem)
    return binary


def make_quantized(model: str, qtype: str) -> Path:
    """`model` quantized to `qtype` by llama-quantize, made now unless a verified copy is cached."""
    if model not in MODELS or qtype not in QTYPES:
        raise ValueError(f"no quantized file {model}:{qtype}; models {', '.join(MODELS)}, types {', '.join(QTYPES)}")
    binary = llama_quantize()
    build = llamacpp.build_info()
    source = derived(model, "f32", progress=False)
    out = cache_subdir("llama-quantize") / f"{model}-{qtype.lower()}.gguf"
    sidecar = out.with_name(out.name + ".json")
    st = source.stat()
    record = {
        "model": model,
        "llama_quantize": qtype,
        "source": {"derived": f"{model}:f32", "converter_version": CONVERTER_VERSION, "path": str(source),
                   "size": st.st_size, "mtime_ns": st.st_mtime_ns},
        "llama_cpp_commit": build["llama_cpp_commit"],
        "llama_cpp_python": build["llama_cpp_python"],
    }
    if _verified(out, sidecar, record):
        return out
    sweep_partials(out)
    sweep_partials(sidecar)
    sidecar.unlink(missing_ok=True)
    tmp = partial_path(out)
    try:
        done = subprocess.run([str(binary), str(source), str(tmp), qtype, str(THREADS)], check=False,
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"llama-quantize {source} {qtype} failed (exit {done.returncode}): {tail}")
        os.replace(tmp, out)
    finally:
        remove(tmp)
    record.update(size=out.stat().st_size, sha256=sha256(out))
    tmp = partial_path(sidecar)
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)
    return out


def _verified(out: Path, sidecar: Path, record: dict) -> bool:
    """True when `out` is the file the sidecar says llama-quantize made from the source of `record`."""
    try:
        seen = json.loads(sidecar.read_text(encoding="utf-8"))
        made = {k: seen.pop(k) for k in ("size", "sha256")}
        return seen == record and out.stat().st_size == made["size"] and sha256(out) == made["sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def quantized_path(model: str, qtype: str) -> Path:
    """Path of `model` quantized to `qtype` (see the module docstring); skips the test
    without the peer build or the model package, fails instead with WORKBENCH_REQUIRE_PEER=1."""
    MODELS[model]()  # skips without the model's package
    try:
        return make_quantized(model, qtype)
    except PeerUnavailableError as e:
        if os.environ.get("WORKBENCH_REQUIRE_PEER") == "1":
            pytest.fail(f"llama-quantize required (WORKBENCH_REQUIRE_PEER=1) but {e}", pytrace=False)
        pytest.skip(f"llama-quantize unavailable: {e}")


def recipe(path: Path) -> dict:
    """The sidecar record of a file `make_quantized` made (how, from what, its sha256)."""
    return json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))


def census(path: Path) -> dict[str, int]:
    """Number of tensors per GGML type name in the GGUF file `path`."""
    with GGUFFile.open(path) as f:
        return dict(collections.Counter(t.type_name for t in f.tensors.values()))
