"""`workbench bench` speaks llama-bench (issue 19): its flags (-m, -p, -n, -pg, -d, -t,
-r, -o md|csv|json|jsonl) and its record keys with their types, so that scripts written
for `llama-bench -o json` read ours. The key list and types are llama-bench's
(`tools/llama-bench/llama-bench.cpp`: `test::get_fields`, `get_field_type`)."""

import json
import statistics

import pytest

import workbench.bench as wb
from workbench.bench import bench
from workbench.cli import main
from workbench.llama_bench import FIELDS, model_type, records, render

LLAMA_BENCH_KEYS = [
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
    "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
    "type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn",
    "devices", "tensor_split", "tensor_buft_overrides", "use_mmap", "embeddings", "no_op_offload", "no_host",
    "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts"]
INTS = {"build_number", "n_batch", "n_ubatch", "n_threads", "poll", "model_size", "model_n_params", "n_gpu_layers",
        "main_gpu", "n_prompt", "n_gen", "n_depth", "avg_ns", "stddev_ns", "no_op_offload", "n_cpu_moe"}
BOOLS = {"no_kv_offload", "cpu_strict", "flash_attn", "use_mmap", "embeddings", "no_host"}
FLOATS = {"avg_ts", "stddev_ts"}


@pytest.fixture(scope="module")
def runs():
    return bench(["smollm2-135m"], n_prompt=[4], n_gen=[3], n_pg=[(4, 2)], n_depth=[0, 5], threads=[1], reps=2)


def _typed_like_llama_bench(row: dict) -> None:
    assert list(row)[: len(LLAMA_BENCH_KEYS)] == LLAMA_BENCH_KEYS == list(FIELDS)
    for key in LLAMA_BENCH_KEYS:
        want = bool if key in BOOLS else int if key in INTS else float if key in FLOATS else str
        assert type(row[key]) is want, (key, row[key])
    assert all(type(v) is int and v > 0 for v in row["samples_ns"])
    assert all(type(v) is float and v > 0 for v in row["samples_ts"])


def test_depth_and_pg_tests_in_llama_benchs_order(runs):
    assert [(r.test, r.n_prompt, r.n_gen, r.n_depth) for r in runs] == [
        ("pp4", 4, 0, 0), ("tg3", 0, 3, 0), ("pp4+tg2", 4, 2, 0),
        ("pp4", 4, 0, 5), ("tg3", 0, 3, 5), ("pp4+tg2", 4, 2, 5)]


def test_records_carry_llama_benchs_keys_and_types(runs):
    rows = records(runs)
    assert len(rows) == len(runs)
    for row, r in zip(rows, runs):
        _typed_like_llama_bench(row)
        n = r.n_prompt + r.n_gen
        assert row["samples_ts"] == r.samples and row["avg_ts"] == pytest.approx(statistics.mean(r.samples))
        assert row["samples_ns"] == [round(n / ts * 1e9) for ts in r.samples]
        assert row["avg_ns"] == round(statistics.mean(row["samples_ns"]))
        assert row["model_filename"].endswith(".gguf") and row["model_size"] == r.size_bytes
        assert row["model_type"] == "llama 135M Q4_1" == model_type(r)
        assert row["n_threads"] == 1 and row["type_k"] == "f16" and row["test_time"].endswith("Z")
        assert row["engine"] == "workbench" and row["build_commit"] == r.commit and row["tok_s"] == r.tok_s


def test_a_peer_record_has_the_same_shape(runs):
    from dataclasses import replace

    r = replace(runs[0], peer="llama.cpp via llama-cpp-python 0.3.36", peer_tok_s=5.0, peer_stdev=1.0,
                peer_samples=[4.0, 6.0], ratio=runs[0].tok_s / 5.0)
    ours, theirs = records([r])
    assert list(ours) == list(theirs)
    _typed_like_llama_bench(theirs)
    assert theirs["engine"] == "llama.cpp" and theirs["build_commit"] == r.peer
    assert theirs["samples_ts"] == [4.0, 6.0] and theirs["avg_ts"] == 5.0


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_cli_llama_bench_flags_and_json(runs, monkeypatch, capsys, fmt):
    seen = {}

    def fake(sources, **kwargs):
        seen.update(kwargs, sources=sources)
        return iter(runs)

    monkeypatch.setattr(wb, "iter_bench", fake)
    assert main(["bench", "-m", "smollm2-135m", "-p", "4", "-n", "3", "-pg", "4,2", "-d", "0,5", "-t", "1",
                 "-r", "2", "-o", fmt]) == 0
    assert seen["sources"] == ["smollm2-135m"] and seen["n_pg"] == [(4, 2)] and seen["n_depth"] == [0, 5]
    assert seen["n_prompt"] == [4] and seen["n_gen"] == [3] and seen["threads"] == [1] and seen["reps"] == 2
    out = capsys.readouterr().out
    rows = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(runs)
    for row in rows:
        _typed_like_llama_bench(row)


def test_markdown_prints_like_llama_bench(runs):
    lines = render(runs, "md").splitlines()
    assert lines[0].startswith("| model                          |       size |     params | backend    | threads "
                               "|            test |                  t/s |   GB/s |")
    assert lines[1].startswith("| ------------------------------ | ---------: | ---------: | ---------- | ------: "
                               "| --------------: | -------------------: | -----: |")
    assert lines[2].startswith("| llama 135M Q4_1                |") and "MiB |" in lines[2]
    assert [line.split("|")[6].strip() for line in lines[2:8]] == [
        "pp4", "tg3", "pp4+tg2", "pp4 @ d5", "tg3 @ d5", "pp4+tg2 @ d5"]
    assert f"| {f'{runs[0].tok_s:.2f} ± {runs[0].stdev:.2f}':>20} |" in lines[2]
    assert lines[9] == f"build: {runs[0].commit} ({runs[0].build_number})" and runs[0].build_number > 0


def test_peer_refuses_depth_and_pg(capsys):
    assert main(["bench", "smollm2-135m", "-d", "4", "--peer", "llamacpp"]) == 2
    assert "leave out -pg and -d" in capsys.readouterr().err
    assert main(["bench", "smollm2-135m", "-pg", "4"]) == 2
    assert "-pg takes PP,TG" in capsys.readouterr().err
