"""Derived variants of the catalog models, made on first use and verified on every reuse.

Contract: `derived(name, variant)` returns the path of `name` (a catalog model in
`SOURCES`) converted to `variant` (a key of `VARIANTS`: q8_0, q4_0, f16, f32 as GGUF
files, hf-f32 as an HF directory), kept in `catalog.cache_dir() / "derived"` as
`NAME-VARIANT.gguf` or `NAME-hf-f32/`. Next to each lies a sidecar `<output>.json`:
the source file (path, size, mtime), `CONVERTER_VERSION`, and the size and sha256 of
every file written. A cached output is reused only when its sidecar matches the source
as it is now, the converter version and the files' bytes (hashing a few hundred MB takes
about a second); anything else (a flipped byte, a truncated file, a newer converter, a
reinstalled source package) remakes it. A lock file serializes processes making the
same variant. `variants()` lists every "name:variant" for UIs. The partial files and
directories of builds that were killed (`.NAME.partial-PID`) are removed by the next
build of the same variant (`convert` sweeps them); a cache that cannot be written is a
`CacheError` naming it.

It does not clean up outputs of older converter versions: they are remade in place.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

from workbench.convert.core import CONVERTER_VERSION, MARKER, convert_report
from workbench.errors import CacheError
from workbench.formats.catalog import ModelNotFoundError, cache_dir, cache_subdir, resolve
from workbench.formats.files import locked, partial_path, remove, sha256, sweep_partials

SOURCES = ("smollm2-135m", "gemma3-270m")
# variant -> conversion target
VARIANTS = {"q8_0": "gguf-q8_0", "q4_0": "gguf-q4_0", "f16": "gguf-f16", "f32": "gguf-f32", "hf-f32": "hf-f32"}


def variants() -> list[str]:
    """Every derived model name, "smollm2-135m:q8_0" ... "gemma3-270m:hf-f32"."""
    return [f"{name}:{variant}" for name in SOURCES for variant in VARIANTS]


def derived_path(name: str, variant: str) -> Path:
    """Where `derived(name, variant)` keeps its output (which may not exist yet)."""
    name, variant = _check(name, variant)
    suffix = "" if VARIANTS[variant].startswith("hf-") else ".gguf"
    return cache_dir() / "derived" / f"{name}-{variant}{suffix}"


def derived(name: str, variant: str, progress: bool = True) -> Path:
    """Path of catalog model `name` converted to `variant`, made now unless a verified copy
    is cached. ModelNotFoundError for an unknown name or variant, listing the valid ones."""
    if str(name).strip().lower() == "twin":  # "twin:NAME" as `workbench.load` splits it
        from workbench.convert.twins import from_source

        return from_source(f"twin:{variant}")
    name, variant = _check(name, variant)
    out = derived_path(name, variant)
    source = resolve(name)
    sidecar = out.with_name(out.name + ".json")
    cache_subdir("derived")
    try:
        with locked(out.with_name(f".{out.name}.lock")):
            if _verified(out, sidecar, source):
                return out
            _build(name, variant, source, out, sidecar, progress)
    except OSError as e:
        raise CacheError(f"making {name}:{variant} in {out.parent} failed: {e.strerror or e}") from None
    return out


def _build(name: str, variant: str, source: Path, out: Path, sidecar: Path, progress: bool) -> None:
    sidecar.unlink(missing_ok=True)
    if out.is_dir() and not (out / MARKER).is_file():
        remove(out)  # ours, from before directories were marked; convert replaces only marked ones
    report = convert_report(source, out, VARIANTS[variant], progress=progress, overwrite=True)
    record = {
        "variant": f"{name}:{variant}",
        "to": report.to,
        "converter_version": CONVERTER_VERSION,
        "source": _source_record(source),
        "files": _file_records(out),
        "formats": report.formats,
        "fallback": report.fallback,
        "seconds": round(report.seconds, 2),
    }
    sweep_partials(sidecar)
    tmp = partial_path(sidecar)
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def _check(name: str, variant: str) -> tuple[str, str]:
    key = (str(name).strip().lower(), str(variant).strip().lower())
    if key[0] in SOURCES and key[1] in VARIANTS:
        return key
    close = difflib.get_close_matches(":".join(key), variants(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ModelNotFoundError(f"derived model {name}:{variant} is unknown: derived models are a catalog name "
                             f"({', '.join(SOURCES)}) and a variant ({', '.join(VARIANTS)}){hint}")


def _source_record(source: Path) -> dict:
    st = source.stat()
    return {"path": str(source), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _file_records(out: Path) -> dict[str, dict]:
    """{path relative to the derived directory: {size, sha256}} of every file of `out`."""
    files = sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [out]
    return {p.relative_to(out.parent).as_posix(): {"size": p.stat().st_size, "sha256": sha256(p)} for p in files}


def _verified(out: Path, sidecar: Path, source: Path) -> bool:
    """True when `out` is what the sidecar says this converter made from `source` as it is now."""
    if not out.exists():
        return False
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        files = record["files"]
        if (record["converter_version"] != CONVERTER_VERSION or record["source"] != _source_record(source)
                or not isinstance(files, dict) or not files):
            return False
        for rel, want in files.items():
            path = out.parent / rel
            if ".." in Path(rel).parts or not path.is_file() or path.stat().st_size != want["size"]:
                return False
            if sha256(path) != want["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True
