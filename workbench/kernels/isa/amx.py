"""Intel AMX from numba: the tile configuration, int8 tile products, and their emulation.

Why this exists: a prefill multiplies many tokens by each weight block, and AMX's TMUL
does a 16 x 16 block of int32 sums of 32 int8 products per instruction (`tdpbssd`), eight
times what one 512-bit `vpdpbusd` does. The pieces (facts in ../shared/DESIGN.md):
- the OS grants the tile data state to a process on request (`arch_prctl`), once;
- LLVM must have its native asm parser, or inline asm aborts the process;
- the configuration (`ldtilecfg`) is per thread, so each parallel work item loads it;
- B (the weights) is in the VNNI order: tile row k holds values 4k..4k+3 of 16 columns,
  which is exactly a block of the sixteen-row layouts (`formats.groups16`).

The tile plan of `tile_dots`, one 32-value block:

    tmm4, tmm5  A: 16 tokens x 32 int8 each (two token tiles)
    tmm6, tmm7  B: 8 x 64 int8 (two groups of sixteen rows, VNNI order)
    tmm0..tmm3  C: 16 x 16 int32 = A0 B0, A0 B1, A1 B0, A1 B1, stored to c[0:1024]

On CPUs without AMX the same names run `tile_dots_emulated`, plain loops with the
instruction's exact semantics (every sum exact in int32), so the kernels built on them
run and are tested everywhere; `AMX` says which one this process runs. The asm is
checked where it cannot run by disassembling it (tests/test_amx.py), and on an AMX
machine by `verified()`, a self-test in a child process before any model uses it.
"""

import ctypes
import functools
import json
import os
import subprocess
import sys
import warnings

import llvmlite.binding as _llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from workbench.kernels.isa.vectors import _f16, _f32, _fma, _i8, _i16, _i32, _const, _load, _splat, _vt
from workbench.kernels.isa.x86 import _target_has, cpu_features
from workbench.kernels.jit import CACHE_DIR, njit_serial

_llvm.initialize_native_asmparser()  # without it LLVM aborts on the first inline asm

NEEDS = ("amx-tile", "amx-int8")
_i64 = ir.IntType(64)


def _tile_config() -> np.ndarray:
    """The 64-byte `ldtilecfg` operand of the tile plan above: palette 1; bytes 16 + 2i:
    tile i's bytes per row; byte 48 + i: its rows."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    shape = [(16, 64)] * 4 + [(16, 32)] * 2 + [(8, 64)] * 2  # (rows, bytes per row) of tmm0..tmm7
    for i, (rows, colsb) in enumerate(shape):
        cfg[16 + 2 * i : 18 + 2 * i] = np.frombuffer(np.uint16(colsb).tobytes(), np.uint8)
        cfg[48 + i] = rows
    return cfg


CONFIG = _tile_config()


def _request_tile_data() -> bool:
    """Ask Linux for the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA): without
    it the first tile instruction kills the process. Process-wide, idempotent."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(158, 0x1023, 18) == 0  # SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    except (OSError, AttributeError):
        return False


def _host_has_amx() -> bool:
    host = _llvm.get_host_cpu_features()
    return all(host.get(f, False) for f in NEEDS)


# The target numba compiles for has AMX, the host too (NUMBA_CPU_FEATURES may name a
# CPU other than the host), and Linux granted the tile state.
AMX = _target_has(*NEEDS) and _host_has_amx() and _request_tile_data()


def _ptr(context, builder, aryty, ary, offset):
    """Flat element `offset` of `ary` as an integer address (an asm "r" operand)."""
    data = context.make_array(aryty)(context, builder, value=ary).data
    return builder.ptrtoint(builder.gep(data, [offset]), _i64)


def _asm(builder, text, operands):
    """An inline-asm block with side effects that reads and writes memory through `operands`."""
    fnty = ir.FunctionType(ir.VoidType(), [_i64] * len(operands))
    constraints = ",".join(["r"] * len(operands) + ["~{memory}"])
    builder.call(ir.InlineAsm(fnty, text, constraints, side_effect=True), operands)


@intrinsic
def tile_config_asm(typingctx, cfg):
    """`ldtilecfg` from the 64 bytes of `cfg` (`CONFIG`)."""
    def codegen(context, builder, sig, args):
        _asm(builder, "ldtilecfg ($0)", [_ptr(context, builder, sig.args[0], args[0], ir.Constant(_i64, 0))])
        return context.get_dummy_value()
    return types.none(cfg), codegen


@intrinsic
def tile_release_asm(typingctx):
    """`tilerelease`: the tiles back to their initial state (nothing for the OS to save)."""
    def codegen(context, builder, sig, args):
        _asm(builder, "tilerelease", [])
        return context.get_dummy_value()
    return types.none(), codegen


_DOTS = "\n\t".join([
    "tilezero %tmm0", "tilezero %tmm1", "tilezero %tmm2", "tilezero %tmm3",
    "tileloadd ($1,$3,1), %tmm4", "tileloadd ($2,$3,1), %tmm5",
    "tileloadd ($4,$6,1), %tmm6", "tileloadd ($5,$6,1), %tmm7",
    # AT&T order: B, A, C (C += A B)
    "tdpbssd %tmm6, %tmm4, %tmm0", "tdpbssd %tmm7, %tmm4, %tmm1",
    "tdpbssd %tmm6, %tmm5, %tmm2", "tdpbssd %tmm7, %tmm5, %tmm3",
    "tilestored %tmm0, ($0,$6,1)", "tilestored %tmm1, 1024($0,$6,1)",
    "tilestored %tmm2, 2048($0,$6,1)", "tilestored %tmm3, 3072($0,$6,1)",
])


@intrinsic
def tile_dots_asm(typingctx, c, x, xo0, xo1, xs, b, bo0, bo1):
    """c[256 i + 16 m + n] (int32) = tile i's sum over 32 values of x * b, exactly: i = 0..3
    pairs token tile (x at flat xo0 or xo1, rows xs bytes apart) with weight block (b at
    flat bo0 or bo1, VNNI order, 512 bytes) as A0 B0, A0 B1, A1 B0, A1 B1. Needs
    `tile_config(CONFIG)` first in this thread."""
    def codegen(context, builder, sig, args):
        c_, x_, xo0_, xo1_, xs_, b_, bo0_, bo1_ = args
        tys = sig.args
        ops = [_ptr(context, builder, tys[0], c_, ir.Constant(_i64, 0)),
               _ptr(context, builder, tys[1], x_, xo0_), _ptr(context, builder, tys[1], x_, xo1_), xs_,
               _ptr(context, builder, tys[5], b_, bo0_), _ptr(context, builder, tys[5], b_, bo1_),
               ir.Constant(_i64, 64)]
        _asm(builder, _DOTS, ops)
        return context.get_dummy_value()
    return types.none(c, x, types.intp, types.intp, types.intp, b, types.intp, types.intp), codegen


@njit_serial
def tile_config_emulated(cfg):
    """No tiles to configure."""


@njit_serial
def tile_release_emulated():
    """No tiles to release."""


@njit_serial
def tile_dots_emulated(c, x, xo0, xo1, xs, b, bo0, bo1):
    """`tile_dots_asm`'s results by plain loops (signed bytes, exact int32 sums)."""
    xf, bf = x.reshape(x.size), b.reshape(b.size)
    for i in range(4):
        xo = xo0 if i < 2 else xo1
        bo = bo0 if i % 2 == 0 else bo1
        for m in range(16):
            for n in range(16):
                s = np.int32(0)
                for k in range(32):
                    a = np.int32(np.int8(xf[xo + m * xs + k]))
                    s += a * np.int32(np.int8(bf[bo + 64 * (k // 4) + 4 * n + k % 4]))
                c[256 * i + 16 * m + n] = s


def _update_rows(context, builder, aryty, out, oo, os, update):
    """out.flat[oo + m os : +16] = update(m, its 16 floats), for m < 16 (a C tile's tokens)."""
    data = context.make_array(aryty)(context, builder, value=out)
    for m in range(16):
        at = builder.add(oo, builder.mul(ir.Constant(_i64, m), os))
        ptr = builder.bitcast(builder.gep(data.data, [at]), _vt(_f32, 16).as_pointer())
        builder.store(update(m, builder.load(ptr, align=4)), ptr, align=4)


def _row_f16(context, builder, aryty, w, o):
    """The sixteen f16 at byte o of w, widened."""
    return builder.fpext(builder.bitcast(_load(context, builder, aryty, w, o, _i16, 16), _vt(_f16, 16)), _vt(_f32, 16))


@intrinsic
def fma_tile(typingctx, out, oo, os, c, co, xd, xo, xs, w, so):
    """out.flat[oo + m os + n] += float(c[co + 16 m + n]) * (d_n * xd.flat[xo + m xs]), fused,
    for m, n < 16, d the sixteen f16 row scales at byte so of w: one C tile's block sums
    scaled and added into sixteen tokens' sixteen rows, each product d_w * d_x rounded
    once, as the single-chain reference orders do (`isa.sixteen.fma16`)."""
    def codegen(context, builder, sig, args):
        out_, oo_, os_, c_, co_, xd_, xo_, xs_, w_, so_ = args
        tys = sig.args
        d = _row_f16(context, builder, tys[8], w_, so_)

        def update(m, acc):
            dx = _load(context, builder, tys[5], xd_, builder.add(xo_, builder.mul(ir.Constant(_i64, m), xs_)), _f32)
            v = builder.sitofp(_load(context, builder, tys[3], c_, builder.add(co_, ir.Constant(_i64, 16 * m)),
                                     _i32, 16), _vt(_f32, 16))
            return _fma(builder, v, builder.fmul(d, _splat(builder, dx, 16)), acc)
        _update_rows(context, builder, tys[0], out_, oo_, os_, update)
        return context.get_dummy_value()
    return types.none(out, types.intp, types.intp, c, types.intp, xd, types.intp, types.intp, w, types.intp), codegen


@intrinsic
def add_mins_tile(typingctx, out, oo, os, xs, xo, xstride, w, mo):
    """out.flat[oo + m os + n] += m_n * xs.flat[xo + m xstride] (the product rounded, then
    added), for m, n < 16, m_n the sixteen f16 mins at byte mo of w: q4_1's min terms of
    one block for sixteen tokens' sixteen rows."""
    def codegen(context, builder, sig, args):
        out_, oo_, os_, xs_, xo_, xst_, w_, mo_ = args
        tys = sig.args
        mins = _row_f16(context, builder, tys[6], w_, mo_)

        def update(m, acc):
            sx = _load(context, builder, tys[3], xs_, builder.add(xo_, builder.mul(ir.Constant(_i64, m), xst_)), _f32)
            return builder.fadd(acc, builder.fmul(mins, _splat(builder, sx, 16)))
        _update_rows(context, builder, tys[0], out_, oo_, os_, update)
        return context.get_dummy_value()
    return types.none(out, types.intp, types.intp, xs, types.intp, types.intp, w, types.intp), codegen


@intrinsic
def unpack_q4_tile(typingctx, buf, bo, w, o, offset):
    """The four 64-byte nibble chunks of a sixteen-row block at byte o of w
    (`formats.q4_0_rows16`, `q4_1_rows16`) as a B tile of signed values q - offset at
    buf[bo:bo+512]: rows 0..3 the low nibbles (values 4c..4c+3 of each row), rows 4..7 the
    high (16 + 4c..)."""
    def codegen(context, builder, sig, args):
        buf_, bo_, w_, o_, off_ = args
        data = context.make_array(sig.args[0])(context, builder, value=buf_).data
        bias = _splat(builder, builder.trunc(off_, _i8), 64)
        for ch in range(4):
            n = _load(context, builder, sig.args[2], w_, builder.add(o_, ir.Constant(_i64, 64 * ch)), _i8, 64)
            hi = builder.bitcast(builder.lshr(builder.bitcast(n, _vt(_i16, 32)), _const(_i16, 32, 4)), _vt(_i8, 64))
            for h, v in enumerate((n, hi)):
                q = builder.sub(builder.and_(v, _const(_i8, 64, 15)), bias)
                ptr = builder.gep(data, [builder.add(bo_, ir.Constant(_i64, 256 * h + 64 * ch))])
                builder.store(q, builder.bitcast(ptr, _vt(_i8, 64).as_pointer()), align=1)
        return context.get_dummy_value()
    return types.none(buf, types.intp, w, types.intp, types.intp), codegen


if AMX:
    tile_config, tile_release, tile_dots = tile_config_asm, tile_release_asm, tile_dots_asm
else:
    tile_config, tile_release, tile_dots = tile_config_emulated, tile_release_emulated, tile_dots_emulated


@functools.cache
def verified() -> bool:
    """Whether AMX kernels may run in this process: the CPU has AMX, Linux granted its state,
    and the self-test (`workbench.kernels.amx_check`) passed in a child process, where a
    fault cannot take a session down. The verdict is kept beside the compiled code, whose
    directory name changes with the sources and the CPU: one child per build and machine."""
    if not AMX:
        if _target_has(*NEEDS) and _host_has_amx():
            warnings.warn("this CPU has AMX but Linux refused its tile state (arch_prctl ARCH_REQ_XCOMP_PERM); "
                          "AMX kernels stay off", stacklevel=2)
        return False
    record = CACHE_DIR / "amx-check.json"
    try:
        return bool(json.loads(record.read_text())["ok"])
    except (OSError, ValueError, KeyError):
        pass
    print("[amx] testing the AMX kernels in a child process (once per build and machine; compiles them)",
          file=sys.stderr, flush=True)
    try:
        run = subprocess.run([sys.executable, "-m", "workbench.kernels.amx_check"], capture_output=True,
                             text=True, timeout=1200)
        ok, detail = run.returncode == 0, (run.stdout + run.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        ok, detail = False, "timed out"
    if not ok:
        warnings.warn(f"AMX self-test failed; AMX kernels stay off on this machine ({detail.strip()[-300:]})",
                      stacklevel=2)
    try:  # whole or not at all: other processes may read it meanwhile
        part = record.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps({"ok": ok, "cpu": sorted(f for f in cpu_features() if f.startswith("amx")),
                                    "detail": detail}))
        os.replace(part, record)
    except OSError:
        pass
    return ok
