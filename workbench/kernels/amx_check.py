"""The AMX self-test, run in a child process by `isa.amx.verified()` before any model uses AMX.

Exits 0 and prints "ok" when the tile product equals its emulation and the AMX prefill
kernels equal their sixteen-row twins (q4_0 bit for bit, q4_1 and q8_0 within float
rounding of their references), at every thread count; anything else (a wrong sum, a fault) keeps AMX off.
"""

import sys

import numpy as np


def _scratch(n):
    return np.empty(n, np.int8), np.empty(n, np.int32), np.empty(n, np.float32)


def main() -> int:
    from workbench.kernels.formats import q4_0, q4_0_rows16, q4_1, q4_1_rows16, q8_0, q8_0_rows16
    from workbench.kernels.isa import amx
    from workbench.kernels.jit import max_threads, set_threads

    if not amx.AMX:
        print("no AMX here (CPU features or the OS's grant)")
        return 1
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (32, 64), dtype=np.int8)
    b = rng.integers(0, 256, 1024, dtype=np.uint8)
    got, want = np.empty(1024, np.int32), np.empty(1024, np.int32)
    amx.tile_config_asm(amx.CONFIG)
    amx.tile_dots_asm(got, x, 0, 16 * 64 + 32, 64, b, 0, 512)
    amx.tile_release_asm()
    amx.tile_dots_emulated(want, x, 0, 16 * 64 + 32, 64, b, 0, 512)
    if not np.array_equal(got, want):
        print(f"tile_dots: {np.count_nonzero(got != want)} of 1024 sums differ from the emulation")
        return 1
    for threads in range(1, max_threads() + 1):
        set_threads(threads)
        for fmt, mod in ((q4_0, q4_0_rows16), (q4_1, q4_1_rows16), (q8_0, q8_0_rows16)):
            for rows, cols, T in ((16 * 5 + 3, 256, 48), (16 * 9, 1024, 35)):
                w = mod.repack(fmt.quantize(rng.standard_normal((rows * cols // 32, 32), np.float32))
                               .reshape(rows, -1))
                xs = rng.standard_normal((T, cols), np.float32)
                a, r = np.empty((T, rows), np.float32), np.empty((T, rows), np.float32)
                mod.rows16_amx(a, w, xs, *_scratch(T * cols))
                mod.rows16(r, w, xs, *_scratch(T * cols))
                same = np.array_equal(a, r) if fmt is q4_0 else np.allclose(a, r, rtol=1e-5, atol=1e-4)
                if not same:
                    print(f"{fmt.FORMAT.name} rows16_amx {rows}x{cols} T={T} at {threads} threads: "
                          f"max difference {np.abs(a - r).max():.3g} from rows16")
                    return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
