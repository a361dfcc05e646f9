"""The STREAM-style bandwidth kernels and the per-machine cached record.

The kernels are checked for what they compute; the record for its shape, its cache and
its round trip. Measurements run on small buffers (the real default is 3 x 256 MiB) and
no assertion is about speed beyond "positive".
"""

import json

import numpy as np
import pytest

import workbench
from workbench.cli import main
from workbench.errors import ParameterError
from workbench.kernels.membw import copy_f64, read_i64, stream, triad_f64
from workbench.machine import MachineBandwidth, cache_path, cpu_name, machine_bandwidth


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    return tmp_path


def test_kernels_compute_what_they_say():
    a = np.arange(1000, dtype=np.float64)
    partial = np.empty(7, np.int64)
    read_i64(a.view(np.int64), partial)
    assert partial.sum() == a.view(np.int64).sum()
    b = np.zeros_like(a)
    copy_f64(b, a, 7)
    assert np.array_equal(a, b)
    c = np.full_like(a, 0.5)
    out = np.empty_like(a)
    triad_f64(out, a, c, 3.0, 7)
    assert np.array_equal(out, a + 3.0 * c)


def test_stream_returns_samples_per_kernel_and_thread_count():
    got = stream([1], buffer_mib=4, repeats=2)
    assert set(got) == {"read", "copy", "triad"}
    assert all(len(got[k][1]) == 2 and min(got[k][1]) > 0 for k in got)


def test_machine_bandwidth_is_cached_per_machine(_cache):
    first = machine_bandwidth(threads=[1], buffer_mib=4, repeats=2)
    path = cache_path()
    assert path.parent == _cache and path.is_file() and str(path) == first.path
    assert first.cpu == cpu_name() and first.threads == [1] and first.gbps("read", 1) > 0
    again = machine_bandwidth()
    assert again == first  # read back, not measured again
    fresh = machine_bandwidth(refresh=True, threads=[1], buffer_mib=4, repeats=1)
    assert fresh.repeats == 1 and machine_bandwidth() == fresh


def test_record_round_trip_and_thread_choice():
    samples = {"read": {1: [9.0, 10.0], 2: [15.0, 16.0]}, "copy": {1: [8.0], 2: [12.0]},
               "triad": {1: [9.0], 2: [13.0]}}
    bw = MachineBandwidth("cpu", 2, "2025-01-01T00:00:00+00:00", 256, 2, samples)
    assert MachineBandwidth.from_dict(json.loads(json.dumps(bw.as_dict()))) == bw
    assert bw.gbps() == 16.0 and bw.gbps("read", 1) == 10.0 and bw.gbps("read", 8) == 16.0
    assert bw.table()[0] == {"threads": 1, "read": 10.0, "copy": 8.0, "triad": 9.0}
    assert "<table>" in bw._repr_html_()
    with pytest.raises(ParameterError):
        bw.gbps("scale")


def test_bad_parameters():
    with pytest.raises(ParameterError, match="threads"):
        machine_bandwidth(refresh=True, threads=[0])


def test_lazy_export():
    assert workbench.machine_bandwidth is machine_bandwidth


def test_cli_bench_membw_reads_the_cache(capsys):
    record = machine_bandwidth(threads=[1], buffer_mib=4, repeats=1)
    assert main(["bench", "--membw", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["date"] == record.date
    assert main(["bench", "--membw"]) == 0
    out = capsys.readouterr().out
    assert "read GB/s" in out and record.cpu in out


def test_cli_bench_without_a_benchmark_is_bad_input(capsys):
    assert main(["bench"]) == 2
    assert "--membw" in capsys.readouterr().err
