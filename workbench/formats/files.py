"""Files workbench writes, so that nothing half-written or foreign is ever taken as its own.

- `partial_path(dst)`: where a write to `dst` happens first, `.NAME.partial-PID` beside
  it, renamed over `dst` only when complete. `sweep_partials(dst)` removes the partial
  files and directories (and `.NAME.old-PID` directories of an interrupted replace) that
  processes no longer alive left beside `dst`; every writer calls it before writing, so
  a `kill -9` costs disk space only until the next write to the same place.
- `require_regular(path, what)`: refuses a FIFO, a device or a directory where a file is
  read, before opening it (opening a FIFO for reading blocks until a writer comes).
- `VerifiedFile`: a file whose sha256 must be a known value, checked cheaply: the hash is
  computed once and remembered in a sidecar with the file's size, inode, mtime and ctime,
  and computed again whenever one of those changed. Writing into the file changes its
  mtime and ctime (ctime cannot be set back by a user), so corruption is caught.

- `locked(path)`: an exclusive advisory lock on the lock file `path`, for the callers
  that must serialize writers (a derived variant, a shape twin); nothing above locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

from workbench.errors import FormatError

# after ".NAME.": this module's "partial-PID" / "old-PID", or "PID.partial" (Gemma's join before it)
_LEFTOVER = r"(?:(?:partial|old)-(?P<pid>\d+)|(?P<legacy>\d+)\.partial)"


def partial_path(dst: Path, kind: str = "partial") -> Path:
    """`.NAME.partial-PID` (or `.NAME.old-PID`) beside `dst`, for this process."""
    return dst.parent / f".{dst.name}.{kind}-{os.getpid()}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier, failed attempt: no writer is using it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's live process (or a pid we cannot test): leave it
    return True


def stale_partials(dst: Path) -> list[Path]:
    """Leftovers of writes to `dst` by processes that no longer run."""
    pattern = re.compile(re.escape(f".{dst.name}.") + _LEFTOVER)
    try:
        entries = list(dst.parent.iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and not _alive(int(m.group("pid") or m.group("legacy"))):
            out.append(p)
    return out


def sweep_partials(dst: Path) -> list[Path]:
    """Remove the leftovers of dead writers beside `dst`; the paths removed."""
    gone = stale_partials(dst)
    for p in gone:
        remove(p)
    return gone


def remove(path: Path) -> None:
    """Remove a file, a symlink or a whole directory, if there. Best effort: a cleanup
    that fails must not hide the error that made it necessary."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def require_regular(path: Path, what: str = "file") -> os.stat_result:
    """`path`'s stat if it is a regular file (symlinks followed); FormatError otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FormatError(f"{path}: file is missing") from None
    except OSError as e:
        raise FormatError(f"{path}: cannot open {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
            "a device or socket"
        raise FormatError(f"{path}: is {kind}, not a regular {what}")
    return st


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive advisory lock on `path` (no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class VerifiedFile:
    """`path` checked against `expected` sha256, remembered in `path`.sha256.json."""

    def __init__(self, path: Path, expected: str):
        self.path, self.expected = path, expected
        self.sidecar = path.with_name(path.name + ".sha256.json")

    def _stamp(self) -> dict:
        st = self.path.stat()
        return {"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                "sha256": self.expected}

    def ok(self) -> bool:
        """True when the file is there with the expected bytes (hashed only if it changed)."""
        try:
            if not stat.S_ISREG(self.path.stat().st_mode):
                return False
            stamp = self._stamp()
            try:
                if json.loads(self.sidecar.read_text(encoding="utf-8")) == stamp:
                    return True
            except (OSError, ValueError):
                pass
            if sha256(self.path) != self.expected:
                return False
            self.remember()
            return True
        except OSError:
            return False

    def remember(self) -> None:
        """Record the file as it is now as verified (call after checking its hash)."""
        tmp = partial_path(self.sidecar)
        try:
            tmp.write_text(json.dumps(self._stamp()) + "\n", encoding="utf-8")
            os.replace(tmp, self.sidecar)
        except OSError:  # a read-only cache: verified again next time, no harm
            remove(tmp)
