"""Shape twins (`workbench.convert.twins`): the builder at small shapes, the cache, the
`twin:NAME` source, the vocabulary fitting. The real multi-GB twins are never built
here: their specs are checked by counting parameters only."""

import hashlib
import json

import numpy as np
import pytest

import workbench
from workbench.cli import main
from workbench.convert import twins
from workbench.convert.twins import TWINS, build_twin, fit_vocab, tensor_shapes
from workbench.formats.gguf import GGUFFile
from workbench.formats.tokenizer import Tokenizer

from tests._models import has_llama_bench

SMALL = {
    "tinyllama-1.1b": dict(n_layers=2, d_model=128, d_ff=256, n_heads=4, n_kv_heads=2, head_dim=32, vocab=1000),
    "gemma3-1b": dict(n_layers=7, d_model=128, d_ff=256, n_heads=2, n_kv_heads=1, head_dim=64, vocab=4096,
                      window=8),
    "gpt2-124m": dict(n_layers=2, d_model=64, d_ff=256, n_heads=4, n_kv_heads=4, head_dim=16, vocab=2000,
                      context=256),
}
TEXT = "The history of computing is a story of people who wanted to calculate faster."


def small(name: str, **more):
    return TWINS[name].scaled(name=f"{name}-small", **SMALL[name], **more)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each small twin, built once."""
    out = {}
    for name in SMALL:
        d = tmp_path_factory.mktemp(name)
        out[name] = build_twin(small(name), d)
    return out


def test_real_specs_have_the_real_sizes():
    def params(name):
        return sum(int(np.prod(s)) for s in tensor_shapes(TWINS[name]).values())

    assert 1.09e9 < params("tinyllama-1.1b") < 1.11e9  # TinyLlama 1.1B: 1,100,048,384
    assert 0.99e9 < params("gemma3-1b") < 1.01e9  # Gemma 3 1B: 999,885,952
    assert 124e6 < params("gpt2-124m") < 125e6  # GPT-2: 124,439,808
    gemma = TWINS["gemma3-1b"]
    assert (gemma.vocab, gemma.head_dim, gemma.window, gemma.global_every) == (262144, 256, 512, 6)


@pytest.mark.parametrize("name", list(SMALL))
def test_gguf_has_the_shapes_formats_and_vocabulary(built, name):
    spec = small(name)
    gf = GGUFFile.open(built[name]["gguf"])
    assert gf.architecture == spec.arch
    assert {n: t.numpy_shape for n, t in gf.tensors.items()} == tensor_shapes(spec)
    matrices = {t.type_name for t in gf.tensors.values() if len(t.shape) == 2}
    assert matrices == ({"Q4_0"} if name == "tinyllama-1.1b" else {"F32"})
    assert len(gf.metadata["tokenizer.ggml.tokens"]) == spec.vocab
    if spec.arch != "gpt2":  # workbench runs GPT-2 from its HF directory
        ids = Tokenizer.from_gguf(gf).encode(TEXT, add_special=True)
        assert len(ids) > 5 and max(ids) < spec.vocab


@pytest.mark.parametrize("name", list(SMALL))
def test_greedy_output_is_finite_and_not_one_token(built, name):
    files = built[name]
    model = workbench.load(files.get("hf", files["gguf"]), n_ctx=256)
    logits = model.forward(model.tokenizer.encode(TEXT, add_special=True))
    assert np.isfinite(logits).all() and logits.std() > 0
    tokens = model.generate(TEXT, max_tokens=12).tokens
    assert len(tokens) == 12 and len(set(tokens)) > 1


@pytest.mark.parametrize("name", ["gemma3-1b", "gpt2-124m"])
def test_hf_directory_holds_the_weights_of_the_gguf(built, name):
    files = built[name]
    if name == "gpt2-124m":
        from workbench.formats.hf import HFDirectory

        hf, gf = HFDirectory.open(files["hf"]), GGUFFile.open(files["gguf"])
        for tname, info in gf.tensors.items():
            want = np.asarray(gf.raw(tname)).view(np.float32).reshape(info.numpy_shape)
            got = hf.tensor(tname)
            assert np.array_equal(got.f32().reshape(want.shape), want), tname
        return
    ids = workbench.load(files["gguf"], n_ctx=256).tokenizer.encode(TEXT, add_special=True)
    a = workbench.load(files["gguf"], n_ctx=256, profile="baseline").forward(ids)
    b = workbench.load(files["hf"], n_ctx=256, profile="baseline").forward(ids)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    spec = small("gpt2-124m", formats=("gguf-f32",))
    digests = []
    for i, seed in enumerate((0, 0, 1)):
        d = tmp_path / str(i)
        d.mkdir()
        digests.append(hashlib.sha256(build_twin(spec.scaled(seed=seed), d)["gguf"].read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_cache_makes_once_and_load_takes_twin_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    spec = small("gpt2-124m")
    monkeypatch.setitem(TWINS, spec.name, spec)
    files = twins.twin_files(spec.name, progress=False)
    sidecar = json.loads((tmp_path / "twins" / f"{spec.name}.json").read_text())
    assert sidecar["twin_version"] == twins.TWIN_VERSION and sidecar["spec"]["d_model"] == 64
    assert len(sidecar["files"]) >= 4 and not list((tmp_path / "twins").glob(".*partial*"))
    stamp = files["gguf"].stat().st_mtime_ns
    assert twins.twin_files(spec.name) == files and files["gguf"].stat().st_mtime_ns == stamp  # reused
    assert workbench.load(f"twin:{spec.name}", n_ctx=16).path == files["hf"]
    assert twins.gguf_twin(files["hf"]) == files["gguf"]
    files["gguf"].write_bytes(b"truncated")  # a damaged twin is made again
    assert twins.twin_files(spec.name)["gguf"].stat().st_size == sidecar["files"][f"{spec.name}/{files['gguf'].name}"]["size"]


def test_cli_twin(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    spec = small("tinyllama-1.1b")
    monkeypatch.setitem(TWINS, spec.name, spec)
    assert main(["twin", spec.name, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["gguf"].endswith(f"{spec.name}-q4_0.gguf")
    assert main(["twin", "tinyllama"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error: ") and "tinyllama-1.1b" in err


def test_fit_vocab_cuts_pads_and_keeps_end_of_text_last():
    kv = twins._kv
    meta = {"tokenizer.ggml.tokens": kv(["a", "b", "ab", "abb", "<|endoftext|>"], "ARRAY", "STRING"),
            "tokenizer.ggml.merges": kv(["a b", "ab b"], "ARRAY", "STRING"),
            "tokenizer.ggml.eos_token_id": kv(4, "UINT32")}
    padded = fit_vocab(meta, 8)
    tokens = padded["tokenizer.ggml.tokens"][0]
    assert tokens[:4] == ["a", "b", "ab", "abb"] and tokens[-1] == "<|endoftext|>" and len(tokens) == 8
    assert padded["tokenizer.ggml.eos_token_id"][0] == 7
    assert padded["tokenizer.ggml.token_type"][0][4:7] == [twins.UNUSED] * 3
    meta["tokenizer.ggml.eos_token_id"] = kv(1, "UINT32")
    cut = fit_vocab(meta, 3)
    assert cut["tokenizer.ggml.tokens"][0] == ["a", "b", "ab"] and cut["tokenizer.ggml.merges"][0] == ["a b"]
    with pytest.raises(workbench.WorkbenchError, match="eos_token_id"):
        fit_vocab(dict(meta, **{"tokenizer.ggml.eos_token_id": kv(4, "UINT32")}), 3)


@pytest.mark.skipif(not has_llama_bench(), reason="llama.cpp's llama-bench is not built here (make peer)")
@pytest.mark.parametrize("name", list(SMALL))
def test_llama_cpp_runs_the_gguf(built, name):
    from workbench.peers.llamacpp import run_llama_bench

    record = run_llama_bench(built[name]["gguf"], threads=1, n_prompt=4, n_gen=0)
    assert record["n_prompt"] == 4 and record["samples_ns"][0] > 0
