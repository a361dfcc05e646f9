"""Where numba keeps workbench's compiled code, and how to look at it or clear it.

numba's own default (a `__pycache__` beside each source file) has three traps here: it
fails on a read-only install, it does not notice when a callee in another file changed
(a cached step kept calling an old kernel), and entries of past versions pile up beside
the sources. So compiled code goes to a per-user directory whose name is a key:

    <workbench cache>/numba/<version>-numba<numba version>-<cpu>-<hash>

where the hash covers the source of every module that holds compiled functions
(`kernels/`, `nn/`, `models/`), workbench's and numba's versions and the CPU's name and
features: an edit, an upgrade or another CPU gets a fresh directory, never stale code.
`NUMBA_CACHE_DIR`, when the user sets it, takes the place of `<workbench cache>/numba`,
and the key's directory goes inside it: numba's own invalidation, by file, would let a
cached step keep calling a kernel whose file changed (seen: a format added to the table,
a step compiled before it ran the f32 kernel on its bytes and gave zero logits). `configure()` runs once, from
`kernels.jit`, before the first compiled function is defined (numba picks a function's
cache directory when it is decorated). An unwritable cache falls back to a directory
under the system's temporary directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import numba
from llvmlite import binding as llvm

_PKG = Path(__file__).resolve().parents[1]
_COMPILED_PACKAGES = ("kernels", "nn", "models")
_USER_SET = "NUMBA_CACHE_DIR" in os.environ  # the user's own choice, read once at import


def _root() -> Path:
    if _USER_SET:
        return Path(os.environ["NUMBA_CACHE_DIR"])
    from workbench.formats.catalog import cache_dir

    return cache_dir() / "numba"


def cpu_name() -> str:
    """LLVM's name of this CPU (what numba compiles for): `znver4`, `sapphirerapids`, ..."""
    return llvm.get_host_cpu_name()


def key() -> str:
    """The name of this process's compiled-code directory (see the module docstring)."""
    from workbench import __version__

    h = hashlib.sha256()
    for part in (__version__, numba.__version__, cpu_name(), llvm.get_host_cpu_features().flatten()):
        h.update(part.encode() + b"\0")
    for package in _COMPILED_PACKAGES:
        for path in sorted((_PKG / package).rglob("*.py")):
            h.update(str(path.relative_to(_PKG)).encode() + b"\0" + path.read_bytes())
    return f"{__version__}-numba{numba.__version__}-{cpu_name()}-{h.hexdigest()[:12]}"


_KEY = re.compile(r"^.+-numba[0-9.]+-.+-[0-9a-f]{12}$")  # a `key()`: only these are ever cleared


def _keys_beside(here: Path) -> list[Path]:
    """The other workbench key directories beside `here` (a user's NUMBA_CACHE_DIR may
    hold other projects' caches: those are never listed or removed)."""
    root = here.parent
    return sorted(p for p in root.iterdir() if p.is_dir() and p != here and _KEY.match(p.name)) if root.is_dir() else []


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            return True
    except OSError:
        return False


def configure() -> Path:
    """Point numba's cache at this key's directory and return where compiled code goes."""
    path = _root() / key()
    if not _writable(path):
        path = Path(tempfile.gettempdir()) / f"workbench-numba-{os.getuid()}" / key()
        path.mkdir(parents=True, exist_ok=True)
    # numba re-reads its config from the environment now and then: set both
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    numba.config.CACHE_DIR = str(path)
    return path


def directory() -> Path:
    """Where this process's compiled code lives."""
    return Path(numba.config.CACHE_DIR or os.environ.get("NUMBA_CACHE_DIR", ""))


def has_compiled(module: str, qualname: str) -> bool:
    """Whether the cache holds an index for `module.qualname` (e.g. "llama", "step"):
    False means that the first call will compile it."""
    return any(directory().rglob(f"{module}.{qualname}-*.nbi"))


def info() -> dict:
    """This process's directory, its files and bytes, and the other keys beside it."""
    here = directory()
    files = [p for p in here.rglob("*") if p.is_file()] if here.is_dir() else []
    others = [p.name for p in _keys_beside(here)]
    return {"directory": str(here), "key": here.name, "user_set": _USER_SET,
            "index_files": sum(p.suffix == ".nbi" for p in files), "data_files": sum(p.suffix == ".nbc" for p in files),
            "bytes": sum(p.stat().st_size for p in files), "other_keys": others}


def clear(everything: bool = False) -> list[str]:
    """Remove the directories of other keys (stale: other versions, sources or CPUs),
    and this one's too when `everything`; the paths removed."""
    here = directory()
    targets = _keys_beside(here)
    if everything:
        targets.append(here)
    removed = []
    for path in targets:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed
