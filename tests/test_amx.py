"""AMX tiles (`isa.amx`, `formats.rows16_tiles`): the instructions, their emulation, the prefill kernels.

Where the CPU has no AMX (the AMD machines here) the kernels run on the emulation, so the
layout, the work split and the scaling are tested everywhere; the inline asm is checked
by disassembling what LLVM makes of it, and run against the emulation on an AMX CPU.
"""

import os
import shutil
import subprocess
import sys

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest

from workbench.errors import ParameterError
from workbench.kernels import dispatch
from workbench.kernels.formats import q4_0, q4_0_rows16, q4_1, q4_1_rows16, q8_0, q8_0_rows16
from workbench.kernels.formats.activations import quantize_rows_q8_0, quantize_rows_q8_1
from workbench.kernels.isa import amx
from workbench.kernels.isa.vectors import fmaf, load_f16
from workbench.kernels.jit import max_threads, set_threads
from workbench.kernels.scratch import scratch

VNNI = frozenset({"avx512vnni", "avx512bw", "avx512vl"})


def _tiles(cfg):
    """(rows, bytes per row) of tmm0..tmm7 from a 64-byte tile configuration."""
    return [(int(cfg[48 + i]), int(cfg[16 + 2 * i]) | int(cfg[17 + 2 * i]) << 8) for i in range(8)]


def test_the_configuration_fits_each_tile_product():
    t = _tiles(amx.CONFIG)
    assert amx.CONFIG[0] == 1 and not amx.CONFIG[1]  # palette 1, from row 0
    for c, a, b in ((0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)):  # tdpbssd's shape rules, C += A B
        assert t[c][0] == t[a][0] == 16 and t[c][1] == t[b][1] == 64 and t[a][1] == 4 * t[b][0]
    assert t[4][1] == 32  # A: one 32-value block of sixteen tokens


def _vnni_matrix(b, bo):
    """A 512-byte B tile in the VNNI order as the (32, 16) int8 matrix it stands for."""
    v = b.reshape(-1)[bo : bo + 512].view(np.int8).reshape(8, 16, 4)  # tile row k, column n, value 4k + j
    return v.transpose(0, 2, 1).reshape(32, 16)


def test_the_emulated_tile_product_is_an_int8_matrix_product():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (40, 96), dtype=np.int8)
    x[0, :32] = -128  # the extremes: sums far from int16
    b = rng.integers(0, 256, 2048, dtype=np.uint8)
    b[:512] = 0x80
    c = np.empty(1024, np.int32)
    xo0, xo1 = 0 * 96 + 32, 20 * 96 + 64
    amx.tile_dots_emulated(c, x, 0, xo1, 96, b, 0, 1024)
    for i, (xo, bo) in enumerate(((0, 0), (0, 1024), (xo1, 0), (xo1, 1024))):
        a = x.reshape(-1)[xo : xo + 16 * 96].reshape(16, 96)[:, :32].astype(np.int32)
        assert np.array_equal(c[256 * i : 256 * (i + 1)].reshape(16, 16), a @ _vnni_matrix(b, bo).astype(np.int32))
    assert xo0 != xo1


@numba.njit
def _asm_probe(c, x, b, cfg):
    amx.tile_config_asm(cfg)
    amx.tile_dots_asm(c, x, 0, 512, 32, b, 0, 512)
    amx.tile_release_asm()


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils' objdump")
def test_the_asm_assembles_to_the_tile_plan_for_any_x86_cpu(tmp_path):
    """Compiled here and assembled for a plain x86-64 (no AMX in its features): the
    instructions and operands of the plan in `isa.amx`, in order."""
    sig = (numba.int32[::1], numba.int8[::1], numba.uint8[::1], numba.uint8[::1])
    _asm_probe.compile(sig)
    module = llvm.parse_assembly(_asm_probe.inspect_llvm(sig))
    machine = llvm.Target.from_default_triple().create_target_machine(cpu="x86-64")
    (tmp_path / "probe.o").write_bytes(machine.emit_object(module))
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(tmp_path / "probe.o")],
                          capture_output=True, text=True, check=True).stdout
    tiles = [" ".join(line.split("\t")[-1].split()) for line in text.splitlines()
             if any(m in line for m in ("tile", "tdp"))]
    names = [t.split()[0] for t in tiles]
    assert names == ["ldtilecfg"] + ["tilezero"] * 4 + ["tileloadd"] * 4 + ["tdpbssd"] * 4 + ["tilestored"] * 4 + [
        "tilerelease"], tiles
    assert [t.split()[1] for t in tiles[9:13]] == ["%tmm6,%tmm4,%tmm0", "%tmm7,%tmm4,%tmm1",
                                                   "%tmm6,%tmm5,%tmm2", "%tmm7,%tmm5,%tmm3"]
    assert [t.split()[1].split("(")[0] for t in tiles[13:17]] == ["%tmm0,", "%tmm1,0x400", "%tmm2,0x800",
                                                                   "%tmm3,0xc00"]


# Run in a child with its own numba cache: the kernels compiled there call the real asm, and
# must never be loaded by a process that runs them on a CPU without AMX.
_COMPILE_WITH_ASM = """
import sys, numba
from pathlib import Path
from workbench.kernels.isa import amx
from workbench.kernels.formats import rows16_tiles, q4_0_rows16, q4_1_rows16, q8_0_rows16
rows16_tiles.tile_config, rows16_tiles.tile_dots = amx.tile_config_asm, amx.tile_dots_asm
rows16_tiles.tile_release = amx.tile_release_asm
sig = (numba.float32[:, ::1], numba.uint8[:, ::1], numba.float32[:, ::1], numba.int8[::1], numba.int32[::1],
       numba.float32[::1])
for mod in (q4_0_rows16, q4_1_rows16, q8_0_rows16):
    for name in ("rows16_amx", "rows16_amx_serial"):
        kernel = getattr(mod, name)
        kernel.compile(sig)  # compiled, never called
        obj = kernel.overloads[sig].library._get_compiled_object()  # numba's object code of it (private API)
        (Path(sys.argv[1]) / (mod.__name__.split(".")[-1] + "." + name + ".o")).write_bytes(obj)
"""


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils' objdump")
def test_the_whole_amx_kernels_compile_with_the_real_asm(tmp_path):
    """The probe above checks the asm alone; here the three prefill kernels, serial and
    parallel, are compiled with the real tile instructions in place of their emulation (as
    an AMX CPU compiles them) and disassembled: the plan survives inlining and register
    allocation in the whole kernel, on any x86 CPU."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    done = subprocess.run([sys.executable, "-c", _COMPILE_WITH_ASM, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    objects = sorted(tmp_path.glob("*.o"))
    assert len(objects) == 6
    plan = {"%tmm6,%tmm4,%tmm0", "%tmm7,%tmm4,%tmm1", "%tmm6,%tmm5,%tmm2", "%tmm7,%tmm5,%tmm3"}
    for obj in objects:
        text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True,
                              check=True).stdout
        tiles = [line.split("\t")[-1].split() for line in text.splitlines() if any(m in line for m in ("tile", "tdp"))]
        count = {n: sum(t[0] == n for t in tiles) for n in ("ldtilecfg", "tileloadd", "tdpbssd", "tilestored",
                                                            "tilerelease")}
        assert count["ldtilecfg"] >= 1 and count["tilerelease"] >= 1, (obj.name, count)
        assert count["tdpbssd"] >= 4 and count["tdpbssd"] % 4 == 0, (obj.name, count)
        assert count["tileloadd"] == count["tilestored"] == count["tdpbssd"], (obj.name, count)
        assert {t[1] for t in tiles if t[0] == "tdpbssd"} == plan, obj.name


@pytest.mark.skipif(not amx.AMX, reason="this CPU has no AMX (or Linux did not grant its state)")
def test_the_tiles_equal_their_emulation_on_this_cpu():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (32, 64), dtype=np.int8)
    b = rng.integers(0, 256, 1024, dtype=np.uint8)
    got, want = np.empty(1024, np.int32), np.empty(1024, np.int32)
    _asm_probe(got, x.reshape(-1)[:].copy(), b, amx.CONFIG)
    amx.tile_dots_emulated(want, x.reshape(-1), 0, 512, 32, b, 0, 512)
    assert np.array_equal(got, want)
    assert amx.verified()


def _weights(rng, fmt, rows, cols, raw):
    if raw:  # every quant byte, finite scales
        w = rng.integers(0, 256, (rows, cols // 32, fmt.BLOCK), dtype=np.uint8)
        w[:, :, :2] = (rng.standard_normal((rows, cols // 32)) * 0.1).astype(np.float16).view(np.uint8).reshape(
            rows, cols // 32, 2)
        return w.reshape(rows, -1)
    return fmt.quantize(rng.standard_normal((rows * cols // 32, 32)).astype(np.float32)).reshape(rows, -1)


def _run(kernel, w, x):
    out = np.full((x.shape[0], w.shape[0]), np.nan, np.float32)
    kernel(out, w, x, *scratch(x.size))
    return out


SHAPES = [(16, 64, 16), (13, 32, 20), (48, 96, 32), (83, 256, 35), (80, 128, 48), (16 * 9, 64, 64)]


@pytest.mark.parametrize("rows, cols, T", SHAPES)
def test_q4_0_tiles_give_the_bits_of_rows16(rows, cols, T):
    """Whole tiles of sixteen tokens on the tiles, the rest as rows16; groups of rows odd
    and even in number, rows after the last group, one and two threads: every value
    equal bit for bit to rows16 (itself equal to q4_0's reference order)."""
    rng = np.random.default_rng(rows * T)
    x = (rng.standard_normal((T, cols)) * 2).astype(np.float32)
    x[min(3, T - 1)] = 0  # a zero token
    for raw in (True, False):
        w = q4_0_rows16.repack(_weights(rng, q4_0, rows, cols, raw))
        want = _run(q4_0_rows16.rows16_serial, w, x)
        assert np.array_equal(_run(q4_0_rows16.rows16_amx_serial, w, x).view(np.uint32), want.view(np.uint32))
        try:
            for n in range(1, max_threads() + 1):
                set_threads(n)
                assert np.array_equal(_run(q4_0_rows16.rows16_amx, w, x).view(np.uint32), want.view(np.uint32))
        finally:
            set_threads(max_threads())


@numba.njit
def _single_chain(out, w, xq, xd, xs, q4_1):
    """GGUF-layout q8_0 or q4_1: per row and token acc = fmaf(sumi, d_w * d_x, acc), then
    (q4_1) acc + m_w * s_x, block after block."""
    cols, nb = xq.shape[1], xq.shape[1] // 32
    block = 20 if q4_1 else 34
    for t in range(xq.shape[0]):
        for r in range(w.shape[0]):
            acc = np.float32(0)
            for k in range(nb):
                o = block * k
                s = np.int32(0)
                for j in range(32):
                    if q4_1:
                        b = w[r, o + 4 + j % 16]
                        q = np.int32(b & 15) if j < 16 else np.int32(b >> 4)
                    else:
                        q = np.int32(np.int8(w[r, o + 2 + j]))
                    s += q * np.int32(xq[t, 32 * k + j])
                acc = fmaf(np.float32(s), load_f16(w[r], o) * xd[t, k], acc)
                if q4_1:
                    acc = acc + load_f16(w[r], o + 2) * xs[t, k]
            out[t, r] = acc


@pytest.mark.parametrize("fmt", [q8_0, q4_1], ids=["q8_0", "q4_1"])
@pytest.mark.parametrize("rows, cols, T", SHAPES)
def test_q8_0_and_q4_1_tiles_keep_one_chain_per_row(fmt, rows, cols, T):
    """The tiled tokens of the grouped rows: bit for bit the single float chain per row,
    and within float rounding of the format's reference (llama.cpp's eight lanes, q4_1's
    min terms apart): |diff| <= 2 nb eps sum|w x|. The other tokens and rows: the
    reference's bits."""
    mod = q8_0_rows16 if fmt is q8_0 else q4_1_rows16
    rng = np.random.default_rng(rows + T)
    x = (rng.standard_normal((T, cols)) * 2).astype(np.float32)
    w = _weights(rng, fmt, rows, cols, False)
    got = _run(mod.rows16_amx, mod.repack(w), x)
    nb = cols // 32
    xq, xd, xs = np.empty((T, cols), np.int8), np.empty((T, nb), np.float32), np.empty((T, nb), np.float32)
    if fmt is q8_0:
        quantize_rows_q8_0(x, xq, xd, np.empty((T, nb), np.int32))
    else:
        quantize_rows_q8_1(x, xq, xd, xs)
    chain = np.empty_like(got)
    _single_chain(chain, w, xq, xd, xs, fmt is q4_1)
    tiled, grouped = T - T % 16, rows - rows % 16
    assert np.array_equal(got[:tiled, :grouped].view(np.uint32), chain[:tiled, :grouped].view(np.uint32))
    lanes = _run(fmt.one_row_serial, w, x)
    assert np.array_equal(got[tiled:].view(np.uint32), lanes[tiled:].view(np.uint32))
    assert np.array_equal(got[:, grouped:].view(np.uint32), lanes[:, grouped:].view(np.uint32))
    blocks = w.reshape(-1, fmt.BLOCK)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float64)
    if fmt is q8_0:
        terms = np.abs(d * blocks[:, 2:].view(np.int8))
    else:  # |d q| + |m| bounds both of a block's terms
        q = np.concatenate([blocks[:, 4:] & 15, blocks[:, 4:] >> 4], axis=1)
        terms = np.abs(d * q) + np.abs(blocks[:, 2:4].copy().view(np.float16).astype(np.float64))
    scale = np.abs(xq.astype(np.float64) * np.repeat(xd, 32, axis=1)) @ terms.reshape(rows, cols).T
    assert np.all(np.abs(got.astype(np.float64) - lanes) <= 2 * nb * np.finfo(np.float32).eps * scale + 1e-30)


def test_the_amx_variants_are_listed_and_chosen_only_where_they_run():
    for f in (q4_0.FORMAT, q4_1.FORMAT, q8_0.FORMAT):
        v = f.variants[f.variant_index("rows16_amx")]
        assert set(amx.NEEDS) <= set(v.needs) and v.repack is f.variants[f.variant_index("rows16")].repack
        assert f.layout_for(VNNI).name == "rows16"
        want = "rows16_amx" if amx.verified() else "rows16"
        assert f.layout_for(VNNI | set(amx.NEEDS)).name == want
        # both kernels read the same bytes: a session may switch between them
        layout = "rows16_amx" if amx.verified() else "rows16"
        assert dispatch.describe(dispatch.matvec_code(f.name, "rows16", layout=layout)) == "rows16"
        with pytest.raises(ParameterError, match="repacked at load"):
            dispatch.matvec_code(f.name, "one_row", layout=layout)
    if not amx.AMX:
        with pytest.raises(ParameterError, match="needs .*amx-tile"):
            dispatch.variant_code("q8_0", "rows16_amx")


@pytest.mark.skipif(amx.AMX, reason="checks the CPUs without AMX")
def test_without_amx_the_self_test_never_starts(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a child process started")

    monkeypatch.setattr(subprocess, "run", refuse)
    amx.verified.cache_clear()
    assert amx.verified() is False
