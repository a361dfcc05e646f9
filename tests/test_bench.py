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

from tests._models import has_llama_bench

TINY = dict(n_prompt=[4], n_gen=[4], threads=[1], reps=2)
TINY_ARGS = ["-p", "4", "-n", "4", "-r", "2", "-t", "1"]


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
        assert isinstance(r.cpu_flags, str)
        assert datetime.datetime.fromisoformat(r.timestamp).tzinfo is not None
        assert r.peer is None and r.peer_tok_s is None and r.peer_samples is None and r.ratio is None
        assert r.peer_build is None and r.peer_gbps is None


def test_decode_rows_carry_bytes_and_bandwidth(records):
    pp, tg = records
    assert pp.bytes_per_token is None and pp.gbps is None and pp.roof_frac is None
    # the weights as read, less the 49152-row embedding table but one row (the lm_head is it)
    assert 0.5 * tg.weight_bytes < tg.bytes_per_token < 1.1 * tg.weight_bytes
    assert tg.gbps == pytest.approx(tg.bytes_per_token * tg.tok_s / 1e9)
    assert tg.roof_gbps > 0 and tg.roof_frac == pytest.approx(tg.gbps / tg.roof_gbps)


def test_decode_bytes_count_the_kv_cache_and_the_peer_file():
    model = workbench.load("smollm2-135m", n_ctx=64)
    cfg = model.config
    # K and V, f16, every layer, per position
    per_position = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * 2
    assert wb.decode_bytes(model, 10) - wb.decode_bytes(model, 0) == 10 * per_position
    peer = wb.peer_decode_bytes(model.path, model, 0)
    # tied embeddings: the whole table is the lm_head, read every step, on both sides
    assert peer == sum(t.n_bytes for t in model.source.tensors.values())
    assert wb.kv_bytes(cfg, 4, "f32") == 2 * wb.kv_bytes(cfg, 4, "f16")


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
    monkeypatch.setattr(peers, "peer_build", lambda name: "cc 1, -march=native, AMX off")
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
        assert r.peer_build == "cc 1, -march=native, AMX off" and r.peer_model_path == r.model_path
        assert r.ratio == pytest.approx(r.tok_s / r.peer_tok_s)
    assert got[1].peer_gbps == pytest.approx(got[1].peer_bytes_per_token * 8.0 / 1e9)
    assert got[1].peer_roof_frac == pytest.approx(got[1].peer_gbps / got[1].roof_gbps)


@pytest.mark.skipif(not has_llama_bench(), reason="llama.cpp's llama-bench is not built here (make peer)")
def test_llamacpp_peer_on_the_same_file():
    got = bench(["smollm2-135m"], peer="llamacpp", **TINY)
    assert [r.test for r in got] == ["pp4", "tg4"]
    for r in got:
        assert r.peer.startswith("llama.cpp ") and "llama-bench" in r.peer and "AMX" in r.peer_build
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
    assert ("llama.cpp t/s" in head and body[0][head.index("ratio")] == "2.00") == peer
    assert body[1][head.index("GB/s")] == f"{records[1].gbps:.1f}" and body[0][head.index("GB/s")] == ""
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


def test_cli_peer_not_installed(capsys, monkeypatch, tmp_path):
    from workbench.peers import llamacpp

    monkeypatch.setattr(llamacpp, "install_dir", lambda: tmp_path / "llama.cpp")  # nothing built there
    _fails(capsys, ["smollm2-135m", "-t", "1", "--peer", "llamacpp"], "not built", "make peer")


def test_library_errors_are_workbench_errors():
    with pytest.raises(WorkbenchError):
        bench([], **TINY)
    with pytest.raises(ParameterError, match="reps"):
        bench(["smollm2-135m"], n_prompt=[4], n_gen=[4], threads=[1], reps=0)
    with pytest.raises(ParameterError, match="peer"):
        bench(["smollm2-135m"], peer="vllm", **TINY)


def test_peer_refuses_a_build_from_another_cpu_or_with_unfixed_amx():
    # A native build runs only on the CPU it was made for; on an AMX CPU, GCC 12's AMX
    # code dies in batched decode (SIGSEGV, taking the process with it) without the
    # tile-configuration fix that `make peer` applies and records.
    from workbench.peers.llamacpp import build_problem

    flags = ["avx2", "avx512f", "amx_tile", "amx_int8"]
    build = {"cpu": "Intel Xeon", "cpu_flags": sorted(flags + ["sse2"]), "amx": True, "amx_patch": True}
    assert build_problem(build, "Intel Xeon", flags) is None
    assert "make peer" in build_problem(None, "Intel Xeon", flags)
    assert "another CPU" in build_problem(build, "AMD EPYC", flags)
    assert "another CPU" in build_problem(build, "Intel Xeon", flags[:2])
    assert "fix" in build_problem(dict(build, amx_patch=False), "Intel Xeon", flags)
    info = "CPU : AVX2 = 1 | AMX_INT8 = 1 | "
    assert "fix" in build_problem(dict(build, amx=False, amx_patch=False), "Intel Xeon", flags, info)
    assert build_problem(dict(build, amx=False, amx_patch=False), "Intel Xeon", flags, "CPU : AVX2 = 1 |") is None


def _fake_llama_bench(tmp_path, samples_ns):
    """An install dir whose llama-bench logs its argv and prints one JSON record."""
    bindir = tmp_path / "llama.cpp" / "bin"
    bindir.mkdir(parents=True)
    log = tmp_path / "argv.log"
    record = {"build_commit": "abc", "n_prompt": 0, "n_gen": 0, "avg_ts": 1.0, "samples_ns": samples_ns,
              "samples_ts": [1.0] * len(samples_ns)}
    script = bindir / "llama-bench"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\ncat <<'EOF'\n{json.dumps([record])}\nEOF\n")
    script.chmod(0o755)
    return log


def test_llama_bench_peer_asks_for_one_test_per_call(monkeypatch, tmp_path):
    import os

    from workbench.peers import llamacpp

    log = _fake_llama_bench(tmp_path, [250_000_000])
    monkeypatch.setattr(llamacpp, "install_dir", lambda: tmp_path / "llama.cpp")
    monkeypatch.setattr(llamacpp, "_usable_build", lambda: {})
    peer = llamacpp.LlamaBenchPeer.__new__(llamacpp.LlamaBenchPeer)
    peer.path, peer.threads, peer.records = tmp_path / "m.gguf", 2, []
    assert peer.prefill([1] * 32) == 0.25 and peer.decode([1] * 8, 16) == 0.25
    pp, tg = [line.split() for line in log.read_text().splitlines()]

    def opt(argv, flag):
        return argv[argv.index(flag) + 1]

    assert [opt(pp, f) for f in ("-p", "-n", "-d", "-t", "-r", "-fa", "-o")] == ["32", "0", "0", "2", "1", "off", "json"]
    assert [opt(tg, f) for f in ("-p", "-n", "-d")] == ["0", "16", "8"]
    assert len(peer.records) == 2 and os.access(llamacpp.llama_bench_path(), os.X_OK)


def test_llama_bench_failures_are_peer_errors(monkeypatch, tmp_path):
    from workbench.peers import PeerUnavailableError, llamacpp

    _fake_llama_bench(tmp_path, [])  # a record without samples
    monkeypatch.setattr(llamacpp, "install_dir", lambda: tmp_path / "llama.cpp")
    with pytest.raises(PeerUnavailableError, match="no usable JSON"):
        llamacpp.run_llama_bench(tmp_path / "m.gguf", threads=1, n_prompt=4, n_gen=0)
    (tmp_path / "llama.cpp" / "bin" / "llama-bench").write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    with pytest.raises(PeerUnavailableError, match="exit 3.*boom"):
        llamacpp.run_llama_bench(tmp_path / "m.gguf", threads=1, n_prompt=4, n_gen=0)
