"""What a measurement ran on, for the `meta` of every trace a model records into.

`model_provenance(model)` gives the model (source path and the sha256 of its weights),
its formats (the file's weight type and what the load converted), the session (threads,
profile, KV cache type), the kernel choices of the load report, the CPU, workbench's
version and git commit, and numba's version. Two traces that differ in speed can then
be told apart by what they ran (`workbench.compare` lists the keys that differ).

Hashing a 250 MB file takes about a second, so the sha256 is computed once per file
and process (keyed by path, size and modification time) and the git commit once per
process: a model traced step after step pays for neither again.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path

_WEIGHT_SUFFIXES = (".gguf", ".safetensors")


def model_provenance(model) -> dict:
    """Provenance of a loaded `workbench.Model` (threads as it is now)."""
    from workbench.bench import describe
    from workbench.machine import cpu_name

    import workbench

    about = describe(model.source)
    return {
        "model": str(model.path), "file_sha256": weights_sha256(model.path), "arch": about["arch"],
        "formats": {"file": about["quant"], "converted_at_load": {f"{a.upper()}->{b.upper()}": n for (a, b), n
                                                                   in sorted(model.load_report.quantized.items())}},
        "threads": model.threads, "profile": model.options.profile, "kv_type": model.options.kv_type,
        "kernels": model.net.products.kernel_names(), "cpu": cpu_name(),
        "workbench_version": workbench.__version__, "workbench_commit": _commit(), "numba_version": _version("numba"),
    }


def weights_sha256(path: str | os.PathLike) -> str | dict[str, str]:
    """sha256 of a weight file, or for a directory {file name: sha256} of its weight files."""
    path = Path(path)
    if path.is_dir():
        return {p.name: _sha256(str(p.resolve()), *_stamp(p)) for p in sorted(path.iterdir())
                if p.suffix in _WEIGHT_SUFFIXES}
    return _sha256(str(path.resolve()), *_stamp(path))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def _commit() -> str:
    from workbench.bench import _commit as commit

    return commit()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
