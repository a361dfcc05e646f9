"""IEEE half precision inside numba kernels.

numba has no usable float16 scalar on the CPU, so half values travel as their uint16
bits: `F16_TO_F32` is the 65,536-entry decode table (256 KiB, stays in L2) and
`f32_to_f16_bits` rounds to nearest-even exactly as numpy's `astype(np.float16)` and
x86's F16C do, which is what llama.cpp uses for its f16 KV cache.
"""

import numpy as np

from workbench.kernels.jit import njit_serial

# uint16 bit pattern -> float32 value, for every half.
F16_TO_F32 = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@njit_serial
def f32_to_f16_bits(f):
    """Bits of a float32 (as uint32) -> bits of the nearest half (round half to even)."""
    f = np.uint32(f)
    sign = np.uint32((f & np.uint32(0x80000000)) >> np.uint32(16))
    exp = f & np.uint32(0x7F800000)
    if exp >= np.uint32(0x47800000):  # too large for a half: inf, or nan kept as nan
        if exp == np.uint32(0x7F800000) and (f & np.uint32(0x007FFFFF)) != 0:
            return np.uint16(sign | np.uint32(0x7E00))
        return np.uint16(sign | np.uint32(0x7C00))
    if exp <= np.uint32(0x38000000):  # a half subnormal, or zero
        if exp < np.uint32(0x33000000):
            return np.uint16(sign)
        e = exp >> np.uint32(23)
        sig = np.uint32(0x00800000) + (f & np.uint32(0x007FFFFF))
        sig = sig >> (np.uint32(113) - e)
        if (sig & np.uint32(0x3FFF)) != np.uint32(0x1000) or (f & np.uint32(0x7FF)) != 0:
            sig += np.uint32(0x1000)
        return np.uint16(sign + (sig >> np.uint32(13)))
    h_exp = (exp - np.uint32(0x38000000)) >> np.uint32(13)
    sig = f & np.uint32(0x007FFFFF)
    if (sig & np.uint32(0x3FFF)) != np.uint32(0x1000):
        sig += np.uint32(0x1000)
    return np.uint16(sign + h_exp + (sig >> np.uint32(13)))
