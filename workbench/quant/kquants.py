"""Reference codecs for ggml's 256-element k-quant formats q4_K, q6_K and q8_K.

Plain numpy, vectorized over super-blocks (N, type_size) <-> (N, 256). Layouts are in
`formats.py`. The dequantizers reproduce `gguf.quants.dequantize` bit for bit;
`quantize_q8_k` is ggml's `quantize_row_q8_K_ref`, which is also what the x86 CPU backend
runs on activations (there is no SIMD variant of it there).

Not here: quantizers for q4_K / q6_K (ggml's `make_qkx2_quants` search); workbench only
ever reads those formats from files.
"""

import numpy as np

from workbench.quant.floats import f16_field

QK_K = 256


def q4_k_scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack the 12 scale bytes of q4_K super-blocks into 8 scales and 8 mins (N, 8).

    Bytes 0..3 hold the low 6 bits of scales 0..3, bytes 4..7 those of mins 0..3; bytes
    8..11 hold the low 4 bits of scale 4+j and min 4+j, whose top 2 bits sit in the
    spare high bits of bytes j and 4+j (ggml's `get_scale_min_k4`).
    """
    s_lo, m_lo, packed = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    six = np.uint8(0x3F)
    sc = np.concatenate([s_lo & six, (packed & 0x0F) | ((s_lo >> 6) << 4)], axis=-1)
    mn = np.concatenate([m_lo & six, (packed >> 4) | ((m_lo >> 6) << 4)], axis=-1)
    return sc, mn


def dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_field(blocks, 0)
    dmin = f16_field(blocks, 2)
    sc, mn = q4_k_scales_mins(blocks[:, 4:16])
    # 4 chunks of 32 bytes: low nibbles are sub-block 2i, high nibbles sub-block 2i+1
    qs = blocks[:, 16:].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    q = (qs & np.uint8(0x0F)).reshape(n, 8, 32).astype(np.float32)
    scale = (d * sc.astype(np.float32)).reshape(n, 8, 1)
    offset = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)
    return (scale * q - offset).reshape(n, QK_K)


def q6_k_values(blocks: np.ndarray) -> np.ndarray:
    """The 6-bit quants of q6_K super-blocks, 0..63, as uint8 (N, 256)."""
    n = blocks.shape[0]
    # Each half of 128 values uses ql[64] and qh[32]: value 32*k + l (k = 0..3) takes
    # the low or high nibble of ql[l] / ql[l + 32] and bits 2k..2k+1 of qh[l].
    ql = blocks[:, 0:128].reshape(n, 2, 2, 32)  # (half, ql[l] or ql[l+32], l)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)
    low = np.stack([ql & 0x0F, ql >> 4], axis=2).reshape(n, 2, 4, 32)  # k = 0,1,2,3
    high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & np.uint8(3)
    return (low | (high << np.uint8(4))).reshape(n, QK_K)


def dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    n = blocks.shape[0]
    d = f16_field(blocks, 208)
    sc = blocks[:, 192:208].view(np.int8).astype(np.float32)  # one scale per 16 values
    q = (q6_k_values(blocks).astype(np.int8) - np.int8(32)).astype(np.float32)
    return ((d * sc).reshape(n, 16, 1) * q.reshape(n, 16, 16)).reshape(n, QK_K)


def dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    d = blocks[:, 0:4].copy().view(np.float32)
    return d * blocks[:, 4:260].view(np.int8).astype(np.float32)


def quantize_q8_k(x: np.ndarray) -> np.ndarray:
    """ggml `quantize_row_q8_K_ref`: d = max/-127 with max the first largest-magnitude
    value (sign kept), q = nearest_int(x * -127/max) (halves to even), per-16 bsums."""
    n = x.shape[0]
    i = np.abs(x).argmax(axis=-1)[:, None]
    vmax = np.take_along_axis(x, i, axis=-1)
    with np.errstate(divide="ignore"):
        iscale = np.where(vmax == 0, np.float32(0), np.float32(-127) / vmax).astype(np.float32)
        d = np.where(vmax == 0, np.float32(0), np.float32(1) / iscale).astype(np.float32)
    q = np.minimum(np.rint(iscale * x), 127).astype(np.int8)
    bsums = q.reshape(n, 16, 16).astype(np.int16).sum(axis=-1, dtype=np.int16)
    return np.concatenate(
        [d.view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)], axis=-1
    )
