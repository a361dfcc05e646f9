"""Models the user already has in the Hugging Face cache load by repo id, offline
(issue 19); the workbench cache follows XDG_CACHE_HOME.

A fake hub cache is built in a temp dir the way huggingface_hub lays it out: files in
`blobs/`, snapshot entries as symlinks to them, `refs/main` naming a snapshot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import workbench
from workbench.formats import catalog as cat
from workbench.formats.catalog import ModelNotFoundError, cache_dir, resolve

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "tiny-gpt2"


def _snapshot(hub: Path, repo: str, rev: str, files: dict[str, Path]) -> Path:
    """A snapshot `rev` of `repo` whose entries are symlinks into blobs/."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / rev
    snap.mkdir(parents=True)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    for name, src in files.items():
        blob = repo_dir / "blobs" / f"{rev}-{name}"
        os.symlink(src.resolve(), blob)
        os.symlink(os.path.relpath(blob, snap), snap / name)
    return snap


def _set_main(hub: Path, repo: str, rev: str) -> None:
    refs = hub / ("models--" + repo.replace("/", "--")) / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(rev)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    for var in ("HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_hub_cache_location_follows_the_environment(tmp_path, monkeypatch, hub):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cat.hf_hub_cache() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cat.hf_hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert cat.hf_hub_cache() == hub


def test_repo_id_resolves_to_the_snapshot_refs_main_names(monkeypatch, hub):
    files = {p.name: p for p in TINY.iterdir()}
    old = _snapshot(hub, "acme/tiny-gpt2", "a" * 40, files)
    new = _snapshot(hub, "acme/tiny-gpt2", "b" * 40, files)
    os.utime(old, (1, 1))  # the other snapshot is the newest on disk
    _set_main(hub, "acme/tiny-gpt2", "a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert resolve("acme/tiny-gpt2") == old
    _set_main(hub, "acme/tiny-gpt2", "c" * 40)  # refs/main names no local snapshot: the newest
    assert resolve("acme/tiny-gpt2") == new


def test_repo_id_under_hf_home(monkeypatch, tmp_path, hub):
    snap = _snapshot(tmp_path / "hf" / "hub", "acme/tiny-gpt2", "a" * 40, {p.name: p for p in TINY.iterdir()})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert resolve("acme/tiny-gpt2") == snap


def test_gguf_repo_resolves_to_its_one_gguf_file(monkeypatch, hub):
    gguf = resolve("smollm2-135m")
    snap = _snapshot(hub, "acme/smol-gguf", "a" * 40, {"smol.Q4_1.gguf": gguf, "README.md": TINY / "config.json"})
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert resolve("acme/smol-gguf") == snap / "smol.Q4_1.gguf"
    os.symlink(gguf, snap / "other.gguf")
    with pytest.raises(ModelNotFoundError, match="2 GGUF files.*pass the path of one"):
        resolve("acme/smol-gguf")


def test_missing_repo_offline_names_where_it_looked(monkeypatch, hub):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(ModelNotFoundError, match="models--acme--absent"):
        resolve("acme/absent")


def test_workbench_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("WORKBENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "workbench"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec: relative paths are ignored
    assert cache_dir() == Path.home() / ".cache" / "workbench"
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "wb"))
    assert cache_dir() == tmp_path / "wb"


def test_load_and_generate_by_repo_id(monkeypatch, hub):
    snap = _snapshot(hub, "acme/tiny-gpt2", "a" * 40, {p.name: p for p in TINY.iterdir()})
    _set_main(hub, "acme/tiny-gpt2", "a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    model = workbench.load("acme/tiny-gpt2", threads=1)
    assert model.path == snap
    direct = workbench.load(TINY, threads=1)
    assert model.generate("Hello", max_tokens=4).tokens == direct.generate("Hello", max_tokens=4).tokens
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "workbench", "generate", "acme/tiny-gpt2", "-p", "Hello", "-n", "4",
                        "--threads", "1", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == str(snap)
