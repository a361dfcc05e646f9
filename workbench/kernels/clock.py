"""A clock that compiled code can read: the CPU's cycle counter, for traces from inside.

A traced step records when each of its ops ends without leaving nopython code: `mark`
reads `llvm.readcyclecounter` (the TSC on x86: a few nanoseconds, no system call) into a
preallocated int64 array. Untraced, the array is empty and `mark` reads nothing, so the
step that runs is the same compiled function either way. `ticks_per_second` converts
ticks to seconds; it is calibrated against `time.perf_counter` once per process (the
CPUs here have an invariant TSC: `constant_tsc`, `nonstop_tsc`).

Not here: what the marks mean (the model's op plan, `workbench.nn.step`).
"""

import time

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from workbench.kernels.jit import njit_serial


@intrinsic
def _readcyclecounter(typingctx):
    """The CPU's cycle counter as an int64 (LLVM lowers it to rdtsc on x86)."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return types.int64(), codegen


@njit_serial
def cycles():
    """The cycle counter, from compiled code or from Python."""
    return _readcyclecounter()


@njit_serial
def mark(marks, k):
    """marks[k] = now when tracing (marks not empty); the next mark's index either way."""
    if marks.shape[0] > k:
        marks[k] = _readcyclecounter()
    return k + 1


_TICKS_PER_SECOND = []


def ticks_per_second() -> float:
    """Cycle-counter ticks per second, measured once per process over ~20 ms."""
    if not _TICKS_PER_SECOND:
        cycles()  # loaded or compiled outside the measurement
        t0, c0 = time.perf_counter(), cycles()
        time.sleep(0.02)
        t1, c1 = time.perf_counter(), cycles()
        _TICKS_PER_SECOND.append((c1 - c0) / (t1 - t0))
    return _TICKS_PER_SECOND[0]
