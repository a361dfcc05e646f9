"""Inputs a hostile user tried (issue 20, "Also found"): each ends in one clear error, at
once, instead of a hang, a traceback or a silently wrong run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

import workbench
from tests._models import smollm2_path
from workbench.cli import main
from workbench.errors import FormatError, ParameterError

REPO = Path(__file__).resolve().parents[1]
TINY_GPT2 = REPO / "data" / "tiny-gpt2"


def _cli(*argv, timeout=120):
    """The CLI in its own process (a hang fails the test at `timeout` instead of hanging it)."""
    return subprocess.run([sys.executable, "-m", "workbench", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _one_line(r) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


@pytest.fixture
def gpt2_dir(tmp_path):
    d = tmp_path / "gpt2"
    shutil.copytree(TINY_GPT2, d)
    return d


def _set_config(d: Path, **changes):
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(config | changes))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_fifo_in_an_hf_directory_does_not_hang(gpt2_dir, name):
    (gpt2_dir / name).unlink()
    os.mkfifo(gpt2_dir / name)
    for command in ("inspect", "generate"):
        argv = [command, str(gpt2_dir)] + (["--prompt", "hi"] if command == "generate" else [])
        err = _one_line(_cli(*argv))
        assert "gpt2" in err


@pytest.mark.parametrize("changes, words", [
    (dict(n_head=0), "n_head must be a positive integer"),
    (dict(n_head=5), "n_head 5 does not divide n_embd 64"),
    (dict(n_head=-4), "n_head must be a positive integer"),
    (dict(n_embd=0), "n_embd must be a positive integer"),
    (dict(layer_norm_epsilon=-1e-5), "norm_eps"),
    (dict(layer_norm_epsilon=float("nan")), "norm_eps"),
])
def test_hf_configs_that_cannot_form_a_model(gpt2_dir, capsys, changes, words):
    _set_config(gpt2_dir, **changes)
    with pytest.raises(FormatError, match=words):
        workbench.load(gpt2_dir, threads=1)
    assert main(["generate", str(gpt2_dir), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert words.split()[0] in err and "config.json" in err and "\n" not in err


def test_a_deeply_nested_config_is_one_line(gpt2_dir):
    (gpt2_dir / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    err = _one_line(_cli("inspect", str(gpt2_dir)))
    assert "config.json" in err and "nested" in err


def _llama_gguf(path, eps=1e-5, rope_base=10000.0):
    w = GGUFWriter(str(path), "llama")
    for key, value in [("block_count", 1), ("embedding_length", 32), ("feed_forward_length", 64),
                       ("attention.head_count", 2), ("attention.head_count_kv", 1), ("context_length", 64),
                       ("vocab_size", 8)]:
        w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", eps)
    w.add_float32("llama.rope.freq_base", rope_base)
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("kwargs, key", [
    (dict(eps=float("nan")), "llama.attention.layer_norm_rms_epsilon"),
    (dict(eps=-1e-5), "llama.attention.layer_norm_rms_epsilon"),
    (dict(eps=0.0), "llama.attention.layer_norm_rms_epsilon"),
    (dict(rope_base=0.0), "llama.rope.freq_base"),
    (dict(rope_base=float("inf")), "llama.rope.freq_base"),
    (dict(rope_base=float("nan")), "llama.rope.freq_base"),
])
def test_gguf_hyperparameters_no_model_can_run(tmp_path, capsys, kwargs, key):
    path = _llama_gguf(tmp_path / "bad.gguf", **kwargs)
    with pytest.raises(FormatError, match=key) as e:
        workbench.load(path, threads=1)
    assert "bad.gguf" in str(e.value)  # refused by the config, before any tensor is read (there are too few)
    assert main(["generate", str(path), "--prompt", "hi"]) == 2
    assert key in capsys.readouterr().err


def test_trace_out_that_is_a_directory_fails_before_the_load(tmp_path, capsys):
    # the model does not exist: an error about --out proves it came first
    code = main(["trace", "/no/such/model.gguf", "-p", "hi", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("workbench: error: --out") and "is a directory" in err


@pytest.mark.skipif(os.access("/proc/sys", os.W_OK), reason="needs a read-only directory (/proc/sys)")
def test_trace_out_in_a_read_only_place_fails_before_the_load(capsys):
    code = main(["trace", "/no/such/model.gguf", "-p", "hi", "--out", "/proc/sys/trace.json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("workbench: error: --out /proc/sys/trace.json: cannot write")


def test_trace_out_on_a_full_disk_leaves_no_truncated_file(tmp_path, capsys, monkeypatch):
    smollm2_path()
    from workbench.trace import Tracer

    def full(self, path=None):
        Path(path).write_bytes(b'{"traceEvents": [')  # a start, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Tracer, "to_chrome_json", full)
    out = tmp_path / "t.json"
    code = main(["trace", "smollm2-135m", "-p", "hi", "-n", "2", "--level", "step", "--threads", "1",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No space left" in err and "\n" not in err
    assert os.listdir(tmp_path) == []  # neither a truncated t.json nor its partial file


def test_stdout_on_a_full_device_is_one_line():
    smollm2_path()
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "workbench", "generate", "smollm2-135m", "-p", "hi", "-n", "2",
                            "--threads", "1"], cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=300)
    assert r.returncode == 2 and "No space left on device" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_invalid_utf8_prompt_in_python():
    with pytest.raises(ParameterError, match="prompt is not valid UTF-8"):
        from workbench.engine.params import check_prompt

        check_prompt("caf\udce9")


def test_bandwidth_measured_with_an_unwritable_cache_is_kept_in_memory_only(tmp_path, monkeypatch):
    from workbench.machine import machine_bandwidth

    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    monkeypatch.setenv("WORKBENCH_CACHE", str(blocker))
    bw = machine_bandwidth(refresh=True, threads=[1], buffer_mib=1, repeats=1)
    assert bw.gbps("read", 1) > 0 and blocker.read_text().startswith("a file")
