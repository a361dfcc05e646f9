"""Shared settings and checks for the hostile-file fuzz tests (tests/test_fuzz_*.py).

Hypothesis profiles (registered here as "workbench-fuzz-ci" / "-long" and applied per
test with `@FUZZ`, so that other test files keep their own settings):
- "ci", the default: a fixed budget per test, derandomized (the same examples on every
  run), no deadline (the machine is shared), no example database (nothing written into
  the checkout). The whole fuzz suite stays well under a minute on 2 cores.
- "long", with `WORKBENCH_FUZZ=long`: 20000 examples per test, random seeds; a failure
  prints the `@reproduce_failure` blob to paste into the test. `WORKBENCH_FUZZ_EXAMPLES=N`
  sets another budget for either profile (10-25 ms an example on 2 shared cores: the
  11 fuzz tests took 7.7 minutes at N=3000, so the full 20000 takes most of an hour).

The contract every fuzz test checks: opening a hostile file, and reading any tensor of a
file that opened, either succeeds or raises a `WorkbenchError` whose message names the
file. Any other exception, or an operation still running after `HANG_SECONDS`, fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from workbench.errors import WorkbenchError

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
# registered as "workbench-fuzz-<name>" so as not to clash with a suite-wide "ci" profile
settings.register_profile("workbench-fuzz-ci", max_examples=200, derandomize=True, **_COMMON)
settings.register_profile("workbench-fuzz-long", max_examples=20_000, derandomize=False,
                          **_COMMON)

PROFILE = os.environ.get("WORKBENCH_FUZZ", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"WORKBENCH_FUZZ={PROFILE!r}: expected 'ci' or 'long'")
FUZZ = settings.get_profile(f"workbench-fuzz-{PROFILE}")
if os.environ.get("WORKBENCH_FUZZ_EXAMPLES"):
    FUZZ = settings(FUZZ, max_examples=int(os.environ["WORKBENCH_FUZZ_EXAMPLES"]))

# A safety net, not a timing assertion: parsing a file of a few kilobytes that takes
# this long is a hang (a loop driven by a count the file claims).
HANG_SECONDS = 30

# Integers that make readers misbehave: zero, off-by-ones around powers of two, the
# signed/unsigned boundaries of 32 and 64 bits.
EDGE_U32 = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 255, 256, 2**16, 2**31 - 1, 2**31,
            2**32 - 1]
EDGE_U64 = EDGE_U32 + [2**32, 2**40, 2**53 + 1, 2**61, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


def u32s() -> st.SearchStrategy[int]:
    return st.sampled_from(EDGE_U32) | st.integers(0, 2**32 - 1)


def u64s() -> st.SearchStrategy[int]:
    return st.sampled_from(EDGE_U64) | st.integers(0, 2**64 - 1)


def rarely(strategy: st.SearchStrategy, one_in: int = 4) -> st.SearchStrategy:
    """None, or (about one time in `one_in`) a value of `strategy`."""
    return st.integers(1, one_in).flatmap(lambda i: strategy if i == 1 else st.none())


class Hang(BaseException):
    """Raised by `hang_guard`; a BaseException so that no reader code can swallow it."""


@contextlib.contextmanager
def hang_guard(what: str, seconds: int = HANG_SECONDS) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise Hang(f"{what} still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def clean(path: Path, what: str, action: Callable[[], Any]) -> tuple[bool, Any]:
    """Run `action`; (True, result) on success, (False, error) on a WorkbenchError that
    names `path`. Any other exception propagates and fails the test. Outcomes are
    recorded as hypothesis events (`--hypothesis-show-statistics` shows the mix)."""
    with hang_guard(f"{what} of {path}"):
        try:
            result = action()
        except WorkbenchError as e:
            msg = str(e)
            assert str(path) in msg, f"{what}: message does not name the file: {msg}"
            _event(f"{what.split('(')[0]}: {type(e).__name__} "
                   + re.sub(r"\d+|'[^']*'", "N", msg.replace(str(path), ""))[:60])
            return False, e
    _event(f"{what.split('(')[0]}: ok")
    return True, result


def _event(label: str) -> None:
    with contextlib.suppress(Exception):  # outside a hypothesis test there is no event log
        event(label)


def put_int(blob: bytes | bytearray, pos: int, size: int, value: int) -> bytes:
    """`blob` with the little-endian `size`-byte integer `value` written at `pos`
    (clipped at the end of the blob)."""
    b = bytearray(blob)
    enc = struct.pack("<Q" if size == 8 else "<I", value % (2 ** (8 * size)))
    b[pos : pos + size] = enc[: max(0, len(b) - pos)]
    return bytes(b[: len(blob)])


def run_limited(script: str, files: list[str], limit_bytes: int = 2**30,
                timeout: int = 60) -> list[dict]:
    """Run `script` (which reads sys.argv[1:] and prints one JSON line per file) in a
    fresh interpreter whose address space is capped at `limit_bytes` (RLIMIT_AS), so
    that a reader allocating what a header claims dies with MemoryError instead of
    taking the machine. The child first checks that the cap bites."""
    prelude = (
        "import resource, sys, json\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
        "import numpy as np\n"
        "try:\n"
        f"    np.ones({2 * limit_bytes}, np.uint8)\n"
        "    sys.exit('RLIMIT_AS did not bite')\n"
        "except MemoryError:\n"
        "    pass\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", prelude + script, *files],
        capture_output=True, text=True, timeout=timeout, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == len(files), proc.stdout
    return rows


# The child side of `run_limited`: open each file with OPEN (set by the caller's script)
# and report the outcome as one JSON line; anything but a WorkbenchError is reported by
# type so that the parent's assertion shows it.
LIMITED_OPEN = """
from workbench.errors import WorkbenchError
for path in sys.argv[1:]:
    try:
        OPEN(path)
        row = {"path": path, "ok": True}
    except WorkbenchError as e:
        row = {"path": path, "ok": False, "type": type(e).__name__, "message": str(e)}
    except BaseException as e:
        row = {"path": path, "ok": False, "type": "ESCAPED " + type(e).__name__,
               "message": repr(e)[:500]}
    print(json.dumps(row), flush=True)
"""
