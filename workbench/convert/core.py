"""`convert(src, dst, to)`: one GGUF model rewritten as another GGUF or an HF directory.

Contract: `src` is a GGUF file or a catalog name (`catalog.resolve`); `to` is one of
`TARGETS`. The output appears at `dst` all at once or not at all: it is written under a
temporary name in `dst`'s directory (`.NAME.partial-PID`, a file or a directory) and
renamed into place, and an error or an interrupt (Ctrl-C included) on the way removes
the partial output. Leftovers of killed conversions to the same `dst` (partial files of
processes that no longer run) are removed before writing. An existing `dst` is replaced
only with `overwrite=True`, and never a directory by a file; an hf-f32 output replaces
only a directory that workbench wrote (it holds `MARKER`), so a mistyped path cannot
delete a directory of the user's files.
`convert_report` does the same and returns a `ConvertReport` record (formats written,
tensors that fell back to another format, bytes, seconds); `convert` returns the path.

The encodings are in `gguf_out.py` and `hf_out.py`. It does not read HF directories or
sharded GGUF files, and it never prints: the tqdm bar (`progress=True`) is the only
output, hidden when not on a terminal or notebook.
"""

from __future__ import annotations

import difflib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workbench.convert.gguf_out import write_gguf
from workbench.convert.hf_out import write_hf
from workbench.errors import ParameterError, UnsupportedError, WorkbenchError
from workbench.formats.catalog import resolve
from workbench.formats.files import partial_path, remove, sweep_partials
from workbench.formats.gguf import GGUFFile

# Bumped whenever the bytes a conversion writes change, so that cached variants are remade.
CONVERTER_VERSION = 1

TARGETS = ("gguf-q8_0", "gguf-q4_0", "gguf-f16", "gguf-f32", "hf-f32")
# Written into every hf-f32 directory: only a directory holding it may be replaced.
MARKER = ".workbench-converted"


class ConvertError(WorkbenchError):
    """Writing a converted model failed (disk full, permissions, ...)."""


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote."""

    path: Path
    source: Path
    to: str
    formats: dict[str, int]  # output format -> number of tensors written in it
    fallback: dict[str, str] = field(default_factory=dict)  # tensor -> format used instead of the target
    bytes_written: int = 0
    seconds: float = 0.0


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str, progress: bool = True,
            overwrite: bool = False) -> Path:
    """Convert the GGUF model `src` to `to` (one of TARGETS) at `dst`; the output path.

    GGUF targets re-encode every 2-D tensor, token embeddings included, to the target
    format and keep 1-D tensors in F32; rows whose length is not a multiple of the
    block size (32) fall back to F16 (`convert_report(...).fallback` lists them).
    "hf-f32" writes an HF directory (config.json, model.safetensors in F32, tokenizer
    files) that `workbench.load` and transformers read."""
    return convert_report(src, dst, to, progress=progress, overwrite=overwrite).path


def convert_report(src: str | os.PathLike, dst: str | os.PathLike, to: str, *, progress: bool = True,
                   overwrite: bool = False) -> ConvertReport:
    """`convert`, returning the `ConvertReport` of what was written."""
    to = _check_target(to)
    source = resolve(src)
    if source.is_dir():
        raise UnsupportedError(f"{source} is an HF directory; workbench converts GGUF files only")
    dst = Path(dst).expanduser()
    _check_destination(source, dst, to, overwrite)
    gf = GGUFFile.open(source)
    start = time.perf_counter()
    partial = partial_path(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        sweep_partials(dst)  # what killed conversions to dst left behind (ours from an earlier try too)
        if to == "hf-f32":
            partial.mkdir()
            formats, fallback = write_hf(gf, partial, progress), {}
            (partial / MARKER).write_text(f"written by workbench convert (converter {CONVERTER_VERSION})\n")
        else:
            formats, fallback = write_gguf(gf, partial, to.removeprefix("gguf-"), progress)
        _install(partial, dst)
    except OSError as e:
        raise ConvertError(f"converting {source} to {to} at {dst} failed: {e}") from None
    finally:
        remove(partial)  # still there only when something failed
        gf.close()
    return ConvertReport(dst, source, to, dict(Counter(formats)), fallback, _size(dst),
                         time.perf_counter() - start)


def _check_destination(source: Path, dst: Path, to: str, overwrite: bool) -> None:
    """Refuse what must not be replaced, before anything is read or written."""
    if not (dst.exists() or dst.is_symlink()):
        return
    if dst.exists() and dst.resolve() == source.resolve():
        raise ParameterError(f"{dst} is the source of the conversion; write to another path", param="dst")
    if dst.is_dir() and not to.startswith("hf-"):
        raise ParameterError(f"{dst} is a directory; a {to} conversion writes a file: give a file path "
                             "(the directory is left as it is)", param="dst")
    if dst.is_dir() and not (dst / MARKER).is_file():
        raise ParameterError(f"{dst} is a directory that workbench did not write (no {MARKER} in it); "
                             "give a new path: a directory workbench did not write is never replaced", param="dst")
    if not overwrite:
        raise ParameterError(f"{dst} already exists; pass overwrite=True to replace it", param="overwrite")


def _check_target(to: str) -> str:
    if not isinstance(to, str) or to.strip().lower() not in TARGETS:
        close = difflib.get_close_matches(str(to).strip().lower(), TARGETS, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ParameterError(f"unknown conversion target {to!r}; expected one of {', '.join(TARGETS)}{hint}")
    return to.strip().lower()


def _install(partial: Path, dst: Path) -> None:
    """Rename the finished `partial` to `dst`, replacing whatever `dst` is."""
    if not (partial.is_dir() or dst.is_dir()):
        os.replace(partial, dst)  # atomic for files
        return
    old = None
    if dst.exists() or dst.is_symlink():  # a directory cannot be replaced in one rename
        old = partial_path(dst, "old")
        remove(old)
        os.replace(dst, old)
    try:
        os.replace(partial, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        remove(old)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
