"""Traces that say what they ran on, read back from either file format, and compared
(issue 19): provenance in `meta`, `workbench.trace.load` of a saved trace and of its
Chrome export, `workbench.compare` / `workbench compare` of two traces and of two bench
files, and `workbench trace --html` writing only what was asked."""

import hashlib
import json

import pytest

import workbench
from workbench import provenance
from workbench.cli import main
from workbench.errors import ParameterError

PROVENANCE_KEYS = {"model", "file_sha256", "arch", "formats", "threads", "profile", "kv_type", "kernels", "cpu",
                   "workbench_version", "workbench_commit", "numba_version"}


@pytest.fixture(scope="module")
def model():
    return workbench.load("smollm2-135m", threads=1)


@pytest.fixture(scope="module")
def traces(model):
    out = []
    for _ in range(2):
        with workbench.trace("op") as t:
            model.generate("The capital of France is", max_new_tokens=6)
        out.append(t)
    return out


def test_a_trace_carries_the_models_provenance(model, traces):
    meta = traces[0].meta
    assert PROVENANCE_KEYS <= set(meta)
    assert meta["file_sha256"] == hashlib.sha256(model.path.read_bytes()).hexdigest()
    assert meta["kernels"] == model.load_report.kernels and meta["threads"] == 1
    assert meta["formats"]["file"] == "Q4_1" and meta["arch"] == "llama"
    assert meta["workbench_version"] == workbench.__version__ and meta["numba_version"]


def test_the_sha256_is_computed_once_per_file(model, traces):
    before = provenance._sha256.cache_info()
    with workbench.trace("step") as t:
        model.generate("Hi", max_new_tokens=2)
        model.forward([1, 2])
    assert t.meta["file_sha256"] == traces[0].meta["file_sha256"]
    assert provenance._sha256.cache_info().misses == before.misses


def test_callers_meta_wins(model):
    with workbench.trace("step", {"threads": "mine", "note": "x"}) as t:
        model.generate("Hi", max_new_tokens=2)
    assert t.meta["threads"] == "mine" and t.meta["note"] == "x" and "file_sha256" in t.meta


@pytest.mark.parametrize("how", ["save", "chrome"])
def test_a_trace_round_trips_through_both_formats(traces, tmp_path, how):
    t = traces[0]
    path = tmp_path / f"{how}.json"
    t.save(path) if how == "save" else t.to_chrome_json(path)
    back = workbench.trace.load(path)
    assert back.level == t.level and back.meta == json.loads(json.dumps(t.meta))
    a, b = t.frame(), back.frame()
    assert list(a["path"]) == list(b["path"]) and list(a["parent"]) == list(b["parent"])
    assert list(a["kind"]) == list(b["kind"]) and list(a["layer"]) == list(b["layer"])
    assert list(a["bytes"]) == list(b["bytes"]) and list(a["shape"]) == list(b["shape"])
    assert b["seconds"].to_numpy() == pytest.approx(a["seconds"].to_numpy(), abs=1e-8 if how == "save" else 2e-9)


def test_load_refuses_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"traceEvents": [], "otherData": {"generator": "someone else"}}')
    with pytest.raises(ValueError, match="workbench did not write"):
        workbench.trace.load(path)


def _slowed(trace, tmp_path, op: str, extra: float):
    """A copy of `trace` (through its saved file) with every `op` span `extra` seconds longer
    (added, not multiplied: the step-to-step spread stays the run's own)."""
    path = tmp_path / "slow.json"
    trace.save(path)
    doc = json.loads(path.read_text())
    for s in doc["spans"]:
        if s["name"] == op and s["kind"] == "op":
            s["seconds"] += extra
    path.write_text(json.dumps(doc))
    return path


def test_compare_two_traces_flags_what_changed(traces, tmp_path):
    same = workbench.compare(traces[0], traces[1])
    assert same.kind == "trace" and len(same.table) > 3 and len(same.layers) == 30
    assert set(same.table.columns) >= {"key", "a", "b", "delta", "ratio", "noise", "beyond_noise"}
    assert (same.table["a_n"] == 5).all()  # 6 new tokens: 5 decode steps after the prefill
    frame = traces[0].frame()
    ops = frame[(frame["kind"] == "op") & frame["step"].str.startswith("decode")]
    biggest = ops.groupby("op")["seconds"].sum().idxmax()
    slow = workbench.compare(traces[0], _slowed(traces[0], tmp_path, biggest, 0.01))
    row = slow.table.set_index("key").loc[biggest]
    assert row["beyond_noise"] and row["delta"] == pytest.approx(30 * 10.0)  # 30 layers x 10 ms per step
    assert biggest in set(slow.flagged["key"]) and slow.table.iloc[0]["key"] == biggest
    assert not slow.table.set_index("key").drop(biggest)["beyond_noise"].any()  # the same run: nothing else moved
    fig = slow.figure()
    assert len(fig.data) == 2 and "beyond run-to-run noise" in fig.layout.title.text


def test_compare_lists_provenance_that_differs(traces, model, tmp_path):
    model.threads = 1
    with workbench.trace("op", {"threads": 2}) as other:
        model.generate("The capital of France is", max_new_tokens=3)
    result = workbench.compare(traces[0], other)
    assert result.meta["threads"] == (1, 2)
    assert "threads: 1 -> 2" in result.markdown()


def _bench_file(path, samples):
    rows = [{"model_type": "llama 135M Q4_1", "test": "tg", "n_prompt": 0, "n_gen": 64, "n_depth": 0,
             "n_threads": 2, "build_commit": "abc", "samples_ts": s} for s in samples]
    rows[0]["test"], rows[1]["test"] = "pp", "tg"
    path.write_text("\n".join(json.dumps(r) for r in rows))  # llama-bench's -o jsonl shape
    return path


def test_compare_two_bench_files(tmp_path, capsys):
    a = _bench_file(tmp_path / "a.jsonl", [[100.0, 101.0, 99.0], [50.0, 50.5, 49.5]])
    b = _bench_file(tmp_path / "b.jsonl", [[100.5, 99.5, 100.0], [60.0, 60.5, 59.5]])
    result = workbench.compare(a, b)
    flags = dict(zip(result.table["key"], result.table["beyond_noise"]))
    assert flags == {"workbench llama 135M Q4_1 pp t=2": False, "workbench llama 135M Q4_1 tg t=2": True}
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| workbench llama 135M Q4_1 tg t=2" in out and out.count(" * |") == 1
    assert main(["compare", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "bench"


def test_compare_refuses_a_trace_against_bench_results(traces, tmp_path):
    with pytest.raises(ParameterError, match="two traces or two bench results"):
        workbench.compare(traces[0], _bench_file(tmp_path / "a.jsonl", [[1.0], [2.0]]))


@pytest.mark.parametrize("plotlyjs", ["inline", "cdn"])
def test_trace_html_writes_only_what_was_asked(tmp_path, monkeypatch, capsys, plotlyjs):
    monkeypatch.chdir(tmp_path)
    assert main(["trace", "smollm2-135m", "-p", "Hello", "-n", "3", "--threads", "1", "--no-roofline",
                 "--html", "report.html", "--plotlyjs", plotlyjs]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    text = (tmp_path / "report.html").read_text()
    if plotlyjs == "inline":
        assert text.count("* plotly.js v") == 1 and len(text) > 1_000_000
    else:
        assert "* plotly.js v" not in text and "cdn.plot.ly" in text and len(text) < 1_000_000


def test_trace_cli_writes_both_formats_and_they_load(tmp_path, capsys):
    chrome, own = tmp_path / "c.json", tmp_path / "t.json"
    assert main(["trace", "smollm2-135m", "-p", "Hello", "-n", "3", "--threads", "1", "--no-roofline",
                 "--out", str(chrome), "--save", str(own), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["written"] == [str(chrome), str(own)] and PROVENANCE_KEYS <= set(record)
    a, b = workbench.trace.load(chrome), workbench.trace.load(own)
    assert a.meta == b.meta and len(a.spans) == len(b.spans)
