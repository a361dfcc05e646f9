"""The habits of outside users (issue 19): `--version`, readable defaults in `help()`,
and sampling errors reported before any model loads."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import workbench
from workbench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"workbench {workbench.__version__}")


def test_version_through_python_m():
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "workbench", "--version"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("workbench ")


def test_load_signature_shows_readable_defaults():
    text = str(inspect.signature(workbench.load))
    assert "object at" not in text and "<object" not in text
    assert repr(inspect.signature(workbench.load).parameters["threads"].default) == "<profile default>"
    assert "fuse: 'bool' = <profile default>" in text


@pytest.mark.parametrize("flags, word", [
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-k", "0"], "--top-k"),
    (["--repetition-penalty", "0"], "--repetition-penalty"),
    (["--max-tokens", "0"], "--max-tokens"),
])
def test_bad_sampling_flags_fail_before_the_model_loads(monkeypatch, capsys, flags, word):
    import workbench.api

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(workbench.api, "load", no_load)
    assert main(["generate", "smollm2-135m", "-p", "Hi", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error:") and word in err and len(err.strip().splitlines()) == 1
