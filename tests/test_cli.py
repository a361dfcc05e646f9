"""CLI paths added with the runtime controls, conversion and the HTML report."""

import json

from workbench.cli import main

from tests._models import smollm2_path


def test_trace_writes_the_html_report(tmp_path, capsys):
    smollm2_path()
    html = tmp_path / "report.html"
    code = main(["trace", "smollm2-135m", "-p", "Hello there", "-n", "4", "--threads", "1",
                 "--out", str(tmp_path / "t.json"), "--html", str(html), "--no-roofline"])
    assert code == 0 and html.is_file()
    text = html.read_text()
    assert "Flame chart" in text and "plotly" in text.lower()


def test_generate_json_carries_the_load_report(capsys):
    smollm2_path()
    code = main(["generate", "smollm2-135m", "-p", "Hi", "-n", "3", "--json", "--profile", "baseline",
                 "--quant-threshold", "0", "--requantize", "--quant-type", "q8_0", "--ctx", "64"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["profile"] == "baseline" and record["threads"] == 1
    assert any(line.startswith("Quantized 210 linear layers Q4_1 -> Q8_0") for line in record["load"])
    assert any(line.startswith("Fused 0 QKV") for line in record["load"])


def test_convert_json_and_bad_target(tmp_path, capsys):
    smollm2_path()
    out = tmp_path / "s.gguf"
    assert main(["convert", "smollm2-135m", str(out), "--to", "gguf-q8_0", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and report["to"] == "gguf-q8_0" and report["formats"]["q8_0"] > 200
    assert main(["convert", "smollm2-135m", str(out), "--to", "gguf-q8_0"]) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "smollm2-135m", str(tmp_path / "x"), "--to", "gguf-q3"]) == 2
