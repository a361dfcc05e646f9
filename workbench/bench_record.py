"""`BenchRecord`: one benchmark test's result, with what makes its number reproducible.

Its own module because more than the runner (`bench.py`) reads records: the llama-bench
formats (`llama_bench.py`), `workbench.compare` and the CLI. A record carries what
llama-bench's `struct test` does: model, file, format, size, parameters, test, threads,
raw samples, commit, CPU (model name and the flags that pick kernels), workbench version,
time, and the peer's version and build (compiler, -march, AMX); decode rows also carry
the bytes a token reads and the GB/s that makes (`bench_bytes.py`). `records_frame` makes
a DataFrame of records. Nothing here measures or prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class BenchRecord:
    """One test's result: what ran, where, and every sample (tok/s)."""

    model: str  # the source as given: catalog name, file or directory name
    model_path: str
    arch: str
    quant: str  # GGUF file type ("Q4_1", "Q4_K_M"), else the dominant tensor format; HF: dtype
    size_bytes: int  # bytes of the file's tensors
    n_params: int
    profile: str  # workbench load profile (weight options)
    converted: str  # formats converted at load by the profile, "F32->Q8_0"; "" when none
    weight_bytes: int  # bytes of the weights as workbench's kernels read them
    test: str  # "pp32", "tg64"
    n_prompt: int  # prompt tokens timed (0 for tg)
    n_gen: int  # generated tokens timed (0 for pp)
    n_depth: int  # tokens already in the KV cache when the timed part starts
    threads: int
    tok_s: float
    stdev: float
    samples: list[float]
    commit: str
    cpu: str
    cpu_flags: str  # the kernel-picking flags it has: "avx2 avx512f avx512_vnni ..."
    workbench: str  # workbench version
    timestamp: str  # ISO 8601 UTC, when the test ended
    bytes_per_token: int | None = None  # decode rows: bytes one step reads
    gbps: float | None = None  # bytes_per_token * tok_s
    roof_gbps: float | None = None  # the machine's read bandwidth at `threads` (decode rows)
    roof_frac: float | None = None  # gbps / roof_gbps
    peer: str | None = None  # "llama.cpp 0c1e57098 llama-bench (llama-cpp-python 0.3.36 tree)"
    peer_build: str | None = None  # "g++ ... 12.2.0, -march=native, AMX off (CPU has none)"
    peer_model_path: str | None = None  # the GGUF file the peer ran
    peer_tok_s: float | None = None
    peer_stdev: float | None = None
    peer_samples: list[float] | None = field(default=None)
    ratio: float | None = None  # tok_s / peer_tok_s
    peer_bytes_per_token: int | None = None
    peer_gbps: float | None = None
    peer_roof_frac: float | None = None
    kv_type: str = "f16"  # the KV cache's type (llama-bench's type_k and type_v)
    n_batch: int = 0  # prompt tokens per forward (llama-bench's n_batch and n_ubatch)
    build_number: int = 0  # commits in the checkout's history (llama.cpp's build number is the same count)
    kernels: str = ""  # the matvec variant each weight format ran: "q4_1 row_groups, q8_0 row_groups_vnni"

    def as_dict(self) -> dict:
        return asdict(self)


FIELDS = tuple(BenchRecord.__dataclass_fields__)


def records_frame(records: Sequence[BenchRecord]):
    """A pandas DataFrame with one row per record."""
    import pandas as pd

    return pd.DataFrame([r.as_dict() for r in records], columns=list(FIELDS))
