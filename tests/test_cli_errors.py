"""Bad input at the CLI: one clear line on stderr, exit code 2, never a traceback."""

import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter

from tests._models import smollm2_path
from workbench.cli import main


def _tiny_llama_gguf(path, arch="llama", embd_type=GGMLQuantizationType.F32):
    """A header-valid one-layer model whose token_embd has type `embd_type`."""
    w = GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_context_length(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(8)
    if embd_type == GGMLQuantizationType.F32:
        w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    else:  # MXFP4: 32-element blocks of 17 bytes, which workbench does not implement
        w.add_tensor("token_embd.weight", np.zeros((8, 17), np.uint8), raw_dtype=embd_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_file(capsys):
    code, err = _run(capsys, "generate", "/no/such/model.gguf", "--prompt", "hi")
    assert code == 2 and "/no/such/model.gguf" in err and "\n" not in err


def test_unknown_catalog_name_suggests(capsys):
    code, err = _run(capsys, "generate", "smollm2-13m", "--prompt", "hi")
    assert code == 2 and "smollm2-135m" in err


def test_not_a_gguf(tmp_path, capsys):
    bad = tmp_path / "notes.gguf"
    bad.write_text("this is not a model")
    code, err = _run(capsys, "generate", str(bad), "--prompt", "hi")
    assert code == 2 and "notes.gguf" in err and "\n" not in err


def test_truncated_gguf(tmp_path, capsys):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_path(), "rb") as f:
        cut.write_bytes(f.read(200_000))
    code, err = _run(capsys, "generate", str(cut), "--prompt", "hi")
    assert code == 2 and "cut.gguf" in err and "\n" not in err


def test_unsupported_tensor_type(tmp_path, capsys):
    path = _tiny_llama_gguf(tmp_path / "mxfp4.gguf", embd_type=GGMLQuantizationType.MXFP4)
    code, err = _run(capsys, "generate", str(path), "--prompt", "hi")
    assert code == 2 and "token_embd.weight" in err and "MXFP4" in err


def test_unsupported_architecture(tmp_path, capsys):
    path = _tiny_llama_gguf(tmp_path / "mamba.gguf", arch="mamba")
    code, err = _run(capsys, "generate", str(path), "--prompt", "hi")
    assert code == 2 and "mamba" in err and "architecture" in err


BAD_VALUES = [["--temperature", "-1"], ["--top-k", "0"], ["--top-k", "-5"], ["--top-p", "0"], ["--top-p", "1.5"],
              ["--repetition-penalty", "0"], ["--threads", "0"], ["--max-tokens", "0"], ["--max-tokens", "-1"],
              ["--seed", "-1"], ["--ctx", "0"]]


@pytest.mark.parametrize("flags", BAD_VALUES)
def test_bad_values_name_the_flag_before_any_file_is_opened(capsys, flags):
    # the model path does not exist: an error about the value proves it came before the load
    code, err = _run(capsys, "generate", "/no/such/model.gguf", "--prompt", "hi", *flags)
    assert code == 2 and err.startswith(f"workbench: error: {flags[0]} ") and "\n" not in err
    assert "model.gguf" not in err


@pytest.mark.parametrize("flags", [["--max-tokens", "0"], ["--ctx", "0"]])
def test_trace_checks_its_values_before_the_load(capsys, tmp_path, flags):
    code, err = _run(capsys, "trace", "/no/such/model.gguf", "--prompt", "hi", "--out", str(tmp_path / "t.json"),
                     *flags)
    assert code == 2 and err.startswith(f"workbench: error: {flags[0]} ")


def test_invalid_utf8_prompt_is_one_line(capsys):
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of a Latin-1 byte in argv
    code, err = _run(capsys, "generate", "/no/such/model.gguf", "--prompt", bad)
    assert code == 2 and err.startswith("workbench: error: --prompt is not valid UTF-8") and "\n" not in err


def test_prompt_longer_than_context(capsys):
    code, err = _run(capsys, "generate", "smollm2-135m", "--ctx", "16", "--prompt", "word " * 40)
    assert code == 2 and "context" in err and "16" in err


def test_inspect_bad_file(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\xff" * 16)
    code, err = _run(capsys, "inspect", str(bad))
    assert code == 2 and "x.safetensors" in err


def test_module_entry_point_exit_code():
    r = subprocess.run([sys.executable, "-m", "workbench", "generate", "/no/file.gguf", "--prompt", "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
