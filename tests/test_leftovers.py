"""What a killed or misdirected write leaves behind, and what the next write does with it
(issue 20, point 2): stale `.NAME.partial-PID` files and directories of dead processes
are removed by the next write to the same place; a directory is never replaced by a file
nor a user's directory by a conversion; the joined Gemma file is checked by sha256.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._models import gemma3_path, smollm2_path
from tests.test_convert import write_tiny_llama
from workbench.cli import main
from workbench.convert import cache as convert_cache
from workbench.convert import convert, derived
from workbench.convert.core import MARKER
from workbench.errors import CacheError, ParameterError
from workbench.formats import catalog, files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def _kill_when(code: str, ready, env=None) -> None:
    """Run `code` in a fresh Python, SIGKILL it once `ready()` holds (polled), wait for it."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not ready():
            assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read().decode()[-500:]}"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _partials(directory: Path, name: str) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith(f".{name}.partial-"))


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*")) if p.is_dir() else p.stat().st_size


@pytest.mark.slow
def test_a_conversion_killed_mid_write_is_cleaned_up_by_the_next(tmp_path, tiny):
    smollm2_path()  # skip without the model package
    out = tmp_path / "out.gguf"
    code = f"from workbench.convert import convert; convert('smollm2-135m', {str(out)!r}, 'gguf-f32', progress=False)"
    _kill_when(code, lambda: any(_size(p) > 8 << 20 for p in _partials(tmp_path, out.name)))
    left = _partials(tmp_path, out.name)
    assert len(left) == 1 and left[0].is_file() and not out.exists()  # before: the killed write's partial file
    convert(tiny, out, "gguf-q8_0", progress=False)
    assert _partials(tmp_path, out.name) == [] and out.is_file()  # after: gone, the new output in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf"]


@pytest.mark.slow
def test_a_derived_build_killed_mid_write_is_cleaned_up_by_the_next(tmp_path, tiny, monkeypatch):
    smollm2_path()
    derived_dir = tmp_path / "derived"
    name = "smollm2-135m-hf-f32"
    code = "from workbench.convert import derived; derived('smollm2-135m', 'hf-f32', progress=False)"
    _kill_when(code, lambda: derived_dir.is_dir() and bool(_partials(derived_dir, name)),
               env={"WORKBENCH_CACHE": str(tmp_path)})
    left = _partials(derived_dir, name)
    assert len(left) == 1 and left[0].is_dir()
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(convert_cache, "resolve", lambda _name: tiny)  # the rebuild from a tiny source
    out = derived("smollm2-135m", "hf-f32", progress=False)
    assert _partials(derived_dir, name) == [] and (out / "model.safetensors").is_file() and (out / MARKER).is_file()


def test_only_leftovers_of_dead_processes_are_swept(tmp_path):
    dst = tmp_path / "model.gguf"
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        keep = tmp_path / f".model.gguf.partial-{live.pid}"
        gone = [tmp_path / f".model.gguf.partial-{dead.pid}", tmp_path / f".model.gguf.old-{dead.pid}",
                tmp_path / f".model.gguf.{dead.pid}.partial"]
        other = tmp_path / f".other.gguf.partial-{dead.pid}"
        for p in [keep, other, *gone]:
            p.write_bytes(b"x")
        gone[1].unlink()
        gone[1].mkdir()  # an interrupted directory replace
        assert sorted(files.sweep_partials(dst)) == sorted(gone)
        assert keep.exists() and other.exists() and not any(p.exists() for p in gone)
    finally:
        live.kill()
        live.wait()


def test_a_directory_is_never_replaced_by_a_file(tiny, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ParameterError, match="is a directory; a gguf-q4_0 conversion writes a file"):
        convert(tiny, mine, "gguf-q4_0", progress=False, overwrite=True)
    assert main(["convert", str(tiny), str(mine), "--to", "gguf-q4_0", "--overwrite"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_hf_f32_replaces_only_a_directory_workbench_wrote(tiny, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ParameterError, match="workbench did not write"):
        convert(tiny, mine, "hf-f32", progress=False, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine"
    ours = convert(tiny, tmp_path / "ours", "hf-f32", progress=False)
    assert (ours / MARKER).is_file()
    (ours / "stray.txt").write_text("x")
    convert(tiny, ours, "hf-f32", progress=False, overwrite=True)  # replaced whole
    assert not (ours / "stray.txt").exists() and (ours / "config.json").is_file()


def test_overwrite_is_named_as_the_caller_spells_it(tiny, tmp_path, capsys):
    dst = tmp_path / "x.gguf"
    dst.write_bytes(b"old")
    with pytest.raises(ParameterError, match=r"pass overwrite=True") as e:
        convert(tiny, dst, "gguf-q8_0", progress=False)
    assert e.value.param == "overwrite"
    assert main(["convert", str(tiny), str(dst), "--to", "gguf-q8_0"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite to replace it" in err and "overwrite=True" not in err and dst.read_bytes() == b"old"


@pytest.mark.slow
def test_the_joined_gemma_file_is_checked_by_sha256(tmp_path, monkeypatch):
    gemma3_path()  # skip without the package
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    path = catalog.resolve("gemma3-270m")
    good = files.sha256(path)
    hashed = []
    real = files.sha256
    monkeypatch.setattr(files, "sha256", lambda p: hashed.append(p) or real(p))
    assert catalog.resolve("gemma3-270m") == path and hashed == []  # unchanged: the sidecar vouches, no hashing
    with open(path, "r+b") as f:  # the corruption: zeros inside, size unchanged
        f.seek(path.stat().st_size // 2)
        f.write(bytes(1 << 20))
    assert catalog.resolve("gemma3-270m") == path and hashed  # noticed, and joined again
    assert real(path) == good
    assert files.VerifiedFile(path, good).ok()


def test_a_cache_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch, capsys):
    smollm2_path()
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    monkeypatch.setenv("WORKBENCH_CACHE", str(blocker))
    with pytest.raises(CacheError, match="WORKBENCH_CACHE"):
        derived("smollm2-135m", "q8_0", progress=False)
    assert main(["generate", "smollm2-135m:q8_0", "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error:") and "WORKBENCH_CACHE" in err and "\n" not in err


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a read-only directory (/proc/sys)")
def test_a_read_only_cache_is_one_clear_error(monkeypatch):
    smollm2_path()
    monkeypatch.setenv("WORKBENCH_CACHE", "/proc/sys")
    with pytest.raises(CacheError, match="WORKBENCH_CACHE"):
        derived("smollm2-135m", "q8_0", progress=False)
