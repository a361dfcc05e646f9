"""The byte moves of the sixteen-row layouts (`q4_0_rows16`, `q8_0_rows16`, `q5_0_rows16`), numpy.

A matrix of GGUF rows (rows, row_bytes) is cut into groups of sixteen rows; in a group,
each block's bytes become fields of sixteen rows side by side: `pieces` lays bytes
start..stop of the block out as consecutive `width`-byte pieces of rows 0..15 (the f16
scales as one 2-byte piece, the quants as 4-byte pieces). Rows after the last whole group
keep the GGUF layout.
"""

import numpy as np

GROUP = 16


def blocks(w: np.ndarray, block: int) -> tuple[np.ndarray, int]:
    """The whole groups of w as (groups, 16, blocks per row, block bytes), and their count."""
    g = w.shape[0] // GROUP
    return w[: GROUP * g].reshape(g, GROUP, w.shape[1] // block, block), g


def pieces(b: np.ndarray, start: int, stop: int, width: int) -> np.ndarray:
    """Bytes start..stop of every block of `blocks`' array as (groups, nb, 16 * (stop - start)):
    piece k (bytes start + k * width ..) of rows 0..15, then piece k + 1."""
    g, _, nb, _ = b.shape
    n = (stop - start) // width
    return b[..., start:stop].reshape(g, GROUP, nb, n, width).transpose(0, 2, 3, 1, 4).reshape(g, nb, GROUP * n * width)


def rows_of(packed: np.ndarray, width: int) -> np.ndarray:
    """The inverse of `pieces` on one field (groups, nb, 16 * n * width): (groups, 16, nb, n * width)."""
    g, nb, size = packed.shape
    n = size // (GROUP * width)
    return packed.reshape(g, nb, n, GROUP, width).transpose(0, 3, 1, 2, 4).reshape(g, GROUP, nb, n * width)


def joined(w: np.ndarray, g: int, fields: list[np.ndarray]) -> np.ndarray:
    """A new array shaped as w: its whole groups from `fields` (each (groups, nb, ...) repacked or
    (groups, 16, nb, ...) unpacked, concatenated on their last axis), the rest of w's rows as they are."""
    out = np.empty_like(w)
    out[: GROUP * g] = np.concatenate(fields, axis=-1).reshape(GROUP * g, w.shape[1])
    out[GROUP * g :] = w[GROUP * g :]
    return out


def repack_fields(w: np.ndarray, block: int, scales: int) -> np.ndarray:
    """Blocks of `scales` f16 fields then quants: the sixteen rows' first field side by side,
    then their second, ..., then the quants as 4-byte pieces of the sixteen rows."""
    b, g = blocks(w, block)
    return joined(w, g, [pieces(b, 2 * i, 2 * i + 2, 2) for i in range(scales)] + [pieces(b, 2 * scales, block, 4)])


def unpack_fields(w: np.ndarray, block: int, scales: int) -> np.ndarray:
    """The inverse of `repack_fields`."""
    g, nb = w.shape[0] // GROUP, w.shape[1] // block
    packed = w[: GROUP * g].reshape(g, nb, GROUP * block)
    fields = [rows_of(packed[..., 2 * GROUP * i : 2 * GROUP * (i + 1)], 2) for i in range(scales)]
    return joined(w, g, fields + [rows_of(packed[..., 2 * GROUP * scales :], 4)])


def repack_scaled(w: np.ndarray, block: int) -> np.ndarray:
    """Blocks of an f16 scale then quants (q4_0, q8_0): the sixteen scales, then the quants as
    4-byte pieces of the sixteen rows."""
    return repack_fields(w, block, 1)


def unpack_scaled(w: np.ndarray, block: int) -> np.ndarray:
    """The inverse of `repack_scaled`."""
    return unpack_fields(w, block, 1)
