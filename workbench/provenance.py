"""What a measurement ran on, for the `meta` of every trace a model records into.

`model_provenance(model)` gives the model (source path and the sha256 of its weights),
its formats (the file's weight type and what the load converted), the session (threads,
profile, KV cache type), the kernel choices of the load report, the CPU, workbench's
version and git commit, and numba's version. Two traces that differ in speed can then
be told apart by what they ran (`workbench.compare` lists the keys that differ).

Hashing a 250 MB file takes about a second, so the sha256 is computed once per file
and process (keyed by path, size and modification time) and the git commit once per
process: a model traced step after step pays for neither again.

The pieces bench records share with traces live here too: `describe(source)` (arch,
quant, size and parameters of a parsed file), `git_commit()` and `build_number()`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections import Counter
from functools import lru_cache
from importlib import metadata
from pathlib import Path

_WEIGHT_SUFFIXES = (".gguf", ".safetensors")


def model_provenance(model) -> dict:
    """Provenance of a loaded `workbench.Model` (threads as it is now)."""
    import workbench
    from workbench.machine import cpu_name

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
    return git_commit()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe(source) -> dict:
    """arch, quant, size_bytes and n_params of a parsed GGUFFile or HFDirectory."""
    from workbench.formats.gguf import GGUFFile

    if isinstance(source, GGUFFile):
        tensors = source.tensors.values()
        return {"arch": source.architecture, "quant": _gguf_quant(source),
                "size_bytes": sum(t.n_bytes or 0 for t in tensors), "n_params": sum(t.n_elements for t in tensors)}
    infos = [st.tensors[name] for st in source.shards.values() for name in st.tensors]
    dtype = source.config.get("torch_dtype") or source.config.get("dtype")
    if not dtype:  # the dtype holding the most bytes
        dtype = _bytes_by(infos, lambda i: i.dtype).most_common(1)[0][0]
    return {"arch": source.architecture, "quant": str(dtype).upper().replace("FLOAT", "F"),
            "size_bytes": sum(i.n_bytes for i in infos), "n_params": sum(i.n_elements for i in infos)}


def _gguf_quant(gf) -> str:
    """general.file_type as llama.cpp names it (Q4_K_M), else the format of most bytes."""
    file_type = gf.get("general.file_type", None)
    if file_type is not None:
        import gguf

        try:
            name = gguf.LlamaFileType(int(file_type)).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    by_type = _bytes_by([t for t in gf.tensors.values() if len(t.shape) > 1], lambda t: t.type_name)
    return by_type.most_common(1)[0][0].upper() if by_type else "unknown"


def _bytes_by(items, key) -> Counter:
    counts = Counter()
    for item in items:
        counts[key(item)] += getattr(item, "n_bytes", 0) or 0
    return counts


def build_number() -> int:
    """Commits in the checkout's history (0 outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-list", "--count", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return int(out.stdout.strip()) if out.returncode == 0 else 0
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


def git_commit() -> str:
    """The short commit of the package's checkout, with "+dirty" when the package's own
    files differ from it (numbers measured on uncommitted kernels say so)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=here)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                               timeout=10, cwd=here)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0 or not out.stdout.strip():
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
