"""The benchmark harness (`workbench.bench`, `workbench bench SOURCE...`).

Runs on the default model with tiny sizes (-p 4 -n 4 -r 2 -t 1) and checks what the
records carry and how their numbers derive from the samples, the interleaving with a
peer (a fake one, always; llama.cpp when it is installed), the three output formats and
the error cases. No assertion is about speed beyond "positive".
"""

import csv
import datetime
import io
import json
import statistics
from dataclasses import replace

import pytest

import workbench
import workbench.bench as wb
from workbench.bench import FIELDS, BenchRecord, bench, parse_counts, records_frame
from workbench.cli import main
from workbench.errors import ParameterError, WorkbenchError
from workbench.kernels.jit import max_threads

TINY = dict(n_prompt=[4], n_gen=[4], threads=[1], reps=2)
TINY_ARGS = ["-p", "4", "-n", "4", "-r", "2", "-t", "1"]


def _has_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def records():
    return bench(["smollm2-135m"], **TINY)


def test_one_record_per_test_with_provenance(records):
    assert [(r.test, r.n_prompt, r.n_gen, r.n_depth, r.threads) for r in records] == \
        [("pp4", 4, 0, 0, 1), ("tg4", 0, 4, wb.TG_PROMPT, 1)]
    for r in records:
        assert isinstance(r, BenchRecord) and tuple(r.as_dict()) == FIELDS
        assert r.model == "smollm2-135m" and r.model_path.endswith(".gguf") and r.arch == "llama"
        assert r.quant == "Q4_1" and r.size_bytes > 50 * 2**20 and 100e6 < r.n_params < 200e6
        assert r.profile == "optimized" and r.weight_bytes > 0
        assert r.commit and r.cpu and r.workbench == workbench.__version__
        assert datetime.datetime.fromisoformat(r.timestamp).tzinfo is not None
        assert r.peer is None and r.peer_tok_s is None and r.peer_samples is None and r.ratio is None


def test_mean_and_stdev_come_from_the_samples(records):
    for r in records:
        assert len(r.samples) == 2 and min(r.samples) > 0
        assert r.tok_s == pytest.approx(statistics.mean(r.samples))
        assert r.stdev == pytest.approx(statistics.stdev(r.samples))


def test_zero_skips_a_test_and_lists_make_every_combination():
    got = bench(["smollm2-135m"], n_prompt=[2, 3], n_gen=[0], threads=[1], reps=1)
    assert [r.test for r in got] == ["pp2", "pp3"]
    assert all(len(r.samples) == 1 and r.stdev == 0.0 for r in got)


class _FakePeer:
    """A peer that takes 0.5 s per call and logs it."""

    def __init__(self, log):
        self.log = log

    def prefill(self, ids):
        self.log.append(("peer", "pp", len(ids)))
        return 0.5

    def decode(self, prompt, n):
        self.log.append(("peer", "tg", n))
        return 0.5

    def close(self):
        self.log.append(("peer", "close", 0))


def test_peer_runs_interleaved_and_ratio_is_ours_over_theirs(monkeypatch):
    import workbench.peers as peers

    log = []
    monkeypatch.setattr(peers, "peer_version", lambda name: "fake 1.0")
    monkeypatch.setattr(peers, "open_peer", lambda name, path, threads, n_ctx: _FakePeer(log))
    prefill, decode = wb._prefill, wb._decode
    monkeypatch.setattr(wb, "_prefill", lambda m, ids: log.append(("ours", "pp", len(ids))) or prefill(m, ids))
    monkeypatch.setattr(wb, "_decode", lambda m, p, n: log.append(("ours", "tg", n)) or decode(m, p, n))
    got = bench(["smollm2-135m"], peer="llamacpp", **TINY)
    # a warm-up then two repetitions, ours first each time
    assert log == [(who, "pp", 4) for _ in range(3) for who in ("ours", "peer")] + \
                  [(who, "tg", 4) for _ in range(3) for who in ("ours", "peer")] + [("peer", "close", 0)]
    for r in got:
        assert r.peer == "fake 1.0" and r.peer_samples == [8.0, 8.0] and r.peer_tok_s == 8.0 and r.peer_stdev == 0
        assert r.ratio == pytest.approx(r.tok_s / r.peer_tok_s)


@pytest.mark.skipif(not _has_llama_cpp(), reason="llama-cpp-python is not installed (make peer)")
def test_llamacpp_peer_on_the_same_file():
    got = bench(["smollm2-135m"], peer="llamacpp", **TINY)
    assert [r.test for r in got] == ["pp4", "tg4"]
    for r in got:
        assert r.peer.startswith("llama.cpp via llama-cpp-python ")
        assert len(r.peer_samples) == 2 and min(r.peer_samples) > 0
        assert r.peer_tok_s == pytest.approx(statistics.mean(r.peer_samples))
        assert r.peer_stdev == pytest.approx(statistics.stdev(r.peer_samples))
        assert r.ratio == pytest.approx(r.tok_s / r.peer_tok_s)


def test_records_frame(records):
    df = records_frame(records)
    assert list(df.columns) == list(FIELDS) and list(df["test"]) == ["pp4", "tg4"]


def test_parse_counts():
    assert parse_counts("32") == [32] and parse_counts("1, 2,1") == [1, 2] and parse_counts("0") == [0]
    for bad, low in (("0,x", 1), ("", 0), ("1.5", 0), ("0", 1), ("-1", 0)):
        with pytest.raises(ParameterError):
            parse_counts(bad, "-t", low)


# -- the command ----------------------------------------------------------------------

def _with_peer(records):
    return [replace(r, peer="fake 1.0", peer_tok_s=r.tok_s / 2, peer_stdev=0.5, peer_samples=[r.tok_s / 2] * 2,
                    ratio=2.0) for r in records]


def test_cli_json(capsys):
    assert main(["bench", "smollm2-135m", *TINY_ARGS, "--json"]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)
    assert [r["test"] for r in got] == ["pp4", "tg4"] and all(set(FIELDS) <= set(r) for r in got)
    assert "[bench] smollm2-135m pp4 t=1" in err


@pytest.mark.parametrize("peer", [False, True])
def test_cli_markdown_is_a_table(records, monkeypatch, capsys, peer):
    given = _with_peer(records) if peer else records
    monkeypatch.setattr(wb, "iter_bench", lambda *a, **k: iter(given))
    assert main(["bench", "smollm2-135m", *TINY_ARGS, "--md"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    head, rule, body = rows[0], rows[1], rows[2:]
    assert head[:7] == ["model", "size", "params", "backend", "threads", "test", "t/s"]
    assert len(rule) == len(head) and all(set(c) <= set("-:") for c in rule)
    assert [row[5] for row in body] == ["pp4", f"tg4 @ d{wb.TG_PROMPT}"] and all(len(row) == len(head) for row in body)
    assert ("llama.cpp t/s" in head and body[0][-1] == "2.00") == peer
    assert records[0].commit in lines[-2] and records[0].cpu in lines[-1]


def test_cli_markdown_is_the_default(records, monkeypatch, capsys):
    monkeypatch.setattr(wb, "iter_bench", lambda *a, **k: iter(records))
    assert main(["bench", "smollm2-135m"]) == 0
    assert capsys.readouterr().out.startswith("| model ")


def test_cli_csv(records, monkeypatch, capsys):
    given = _with_peer(records)[:1] + records[1:]
    monkeypatch.setattr(wb, "iter_bench", lambda *a, **k: iter(given))
    assert main(["bench", "smollm2-135m", *TINY_ARGS, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3 and [r["engine"] for r in rows] == ["workbench", "llama.cpp", "workbench"]
    assert json.loads(rows[0]["samples"]) == pytest.approx(given[0].samples)
    assert json.loads(rows[1]["samples_ts"]) == pytest.approx(given[0].peer_samples)
    assert float(rows[0]["ratio"]) == 2.0 and rows[2]["ratio"] == "" and int(rows[2]["n_gen"]) == 4


# -- errors: one line on stderr, exit 2 ---------------------------------------------

def _fails(capsys, argv, *needles):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("workbench: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


def test_cli_errors(capsys, tmp_path):
    _fails(capsys, ["no-such-model", "-t", "1"], "no-such-model")
    _fails(capsys, ["smollm2-135m", "-t", "0,x"], "-t/--threads", "0,x")
    _fails(capsys, ["smollm2-135m", "-t", "0"], "-t/--threads")
    _fails(capsys, ["smollm2-135m", "-t", str(max_threads() + 1)], "numba")
    _fails(capsys, ["smollm2-135m", "-p", "4,y"], "-p/--n-prompt")
    _fails(capsys, ["smollm2-135m", "-p", "0", "-n", "0", "-t", "1"], "nothing to run")
    _fails(capsys, ["smollm2-135m", "-r", "0"], "-r/--repetitions")
    _fails(capsys, ["smollm2-135m", "--membw"], "--membw")
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    _fails(capsys, [str(hf), "-t", "1", "--peer", "llamacpp"], "GGUF", "HF directory")


def test_cli_peer_not_installed(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` raises ImportError
    _fails(capsys, ["smollm2-135m", "-t", "1", "--peer", "llamacpp"], "pip install llama-cpp-python", "make peer")


def test_library_errors_are_workbench_errors():
    with pytest.raises(WorkbenchError):
        bench([], **TINY)
    with pytest.raises(ParameterError, match="reps"):
        bench(["smollm2-135m"], n_prompt=[4], n_gen=[4], threads=[1], reps=0)
    with pytest.raises(ParameterError, match="peer"):
        bench(["smollm2-135m"], peer="vllm", **TINY)


def test_peer_refuses_a_build_with_amx_code(monkeypatch):
    # a native llama.cpp build on an AMX CPU dies in batched decode (SIGSEGV, taking the
    # test process with it): the peer reads the compiled features and refuses first
    import sys
    import types

    from workbench.peers import PeerUnavailableError, llamacpp

    info = b"CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | "
    fake = types.SimpleNamespace(__version__="0.3.36", llama_print_system_info=lambda: info)
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    assert "AMX_INT8" in llamacpp.build_problem()
    with pytest.raises(PeerUnavailableError, match="make peer"):
        llamacpp.LlamaCppPeer("any.gguf", threads=1, n_ctx=64)
    assert llamacpp._main(["--check"]) == 1
    fake.llama_print_system_info = lambda: info.replace(b"AMX_INT8 = 1 | ", b"")
    assert llamacpp.build_problem() is None
    assert llamacpp._main(["--check"]) == 0
    fake.__version__ = "0.3.20"
    assert llamacpp._main(["--check"]) == 1
