"""Coverage-guided fuzzing of the GGUF reader with atheris (libFuzzer for Python). Optional.

    .venv/bin/pip install atheris
    mkdir -p artifacts/gguf_corpus
    .venv/bin/python scripts/fuzz_atheris.py artifacts/gguf_corpus -max_total_time=600

Every input is written to an anonymous file in /dev/shm (the reader takes a path and
memory-maps it) and opened with `GGUFFile.open`; when it opens, `describe()`, `raw()` and `f32()` of
every tensor are called too. A `WorkbenchError` is the expected outcome for a bad file;
any other exception is a finding: libFuzzer stops and saves the input as `crash-<sha1>`
(replay it with `python scripts/fuzz_atheris.py crash-<sha1>`). The reader modules are
instrumented for coverage, numpy is not.

An empty corpus directory is seeded with a few small valid files (gguf-py's GGUFWriter:
metadata of several types, F32 / F16 / Q8_0 / Q4_K tensors, two alignments). Defaults
added unless given: `-max_len=4096 -timeout=10 -rss_limit_mb=1024`, the last two being
the "no hang, bounded memory" contract.

The hypothesis tests (tests/test_fuzz_gguf.py) are the CI side of this; this script is
for long local runs and knows nothing they do not check.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports():
    from workbench.errors import WorkbenchError
    from workbench.formats import ggml_types, gguf  # noqa: F401  (instrument both)

# libFuzzer leaves with exit(), past any Python cleanup, so the input file is an
# anonymous one (unlinked at birth) reached through /proc: nothing is left behind.
_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None
_FILE = tempfile.TemporaryFile(dir=_DIR)
_PATH = Path(f"/proc/self/fd/{_FILE.fileno()}")


def test_one_input(data: bytes) -> None:
    os.ftruncate(_FILE.fileno(), 0)
    os.pwrite(_FILE.fileno(), data, 0)
    try:
        g = gguf.GGUFFile.open(_PATH)
    except WorkbenchError as e:
        if str(_PATH) not in str(e):
            raise AssertionError(f"error does not name the file: {e}") from None
        return
    json.dumps(gguf.describe(g), ensure_ascii=False).encode("utf-8")
    for name, t in g.tensors.items():
        for read in (g.raw, g.f32):
            try:
                a = read(name)
            except WorkbenchError:
                continue
            assert a.nbytes == t.n_bytes, (name, a.nbytes, t.n_bytes)
            if a.size:
                a.reshape(-1)[-1:].tobytes()


def _seeds() -> list[bytes]:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf import quants

    out = []
    rng = np.random.default_rng(0)
    for alignment in (32, 64):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "seed.gguf"
            w = GGUFWriter(str(path), "llama")
            if alignment != 32:
                w.add_custom_alignment(alignment)
            w.add_uint32("llama.block_count", 2)
            w.add_float32("llama.rope.freq_base", 10000.0)
            w.add_bool("flag", True)
            w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"])
            w.add_array("tokenizer.ggml.scores", [0.0, -1.0, 2.0, 3.0])
            w.add_tensor("f32", rng.standard_normal((2, 8)).astype(np.float32))
            w.add_tensor("f16", rng.standard_normal(32).astype(np.float16))
            x = rng.standard_normal((1, 64)).astype(np.float32)
            w.add_tensor("q8_0", quants.quantize(x, GGMLQuantizationType.Q8_0),
                         raw_dtype=GGMLQuantizationType.Q8_0)
            w.add_tensor("q4_k", rng.integers(0, 256, (1, 144), np.uint8),
                         raw_dtype=GGMLQuantizationType.Q4_K)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            out.append(path.read_bytes())
    return out


def main() -> None:
    argv = list(sys.argv)
    flags = {a.split("=")[0] for a in argv[1:] if a.startswith("-")}
    for flag, value in (("-max_len", "4096"), ("-timeout", "10"), ("-rss_limit_mb", "1024")):
        if flag not in flags:
            argv.append(f"{flag}={value}")
    for arg in argv[1:]:
        corpus = Path(arg)
        if not arg.startswith("-") and corpus.is_dir() and not any(corpus.iterdir()):
            for i, seed in enumerate(_seeds()):
                (corpus / f"seed-{i}.gguf").write_bytes(seed)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
