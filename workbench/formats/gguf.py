"""Our own reader for GGUF v2/v3 files (llama.cpp's model format).

Contract: `GGUFFile.open(path)` parses the header, every metadata key/value and every
tensor record, validates them against the file (every length and count is checked
against the bytes that remain *before* anything is allocated, so a hostile file fails
fast with a `FormatError` naming the file and the key or tensor at fault, names cut
short so that a megabyte-long key cannot make a megabyte-long message) and
memory-maps the file read-only. Tensor data is never copied: `raw(name)` hands the
kernels a uint8 view of shape (n_rows, row_bytes), `f32(name)` a float32 view.

Conventions:
- `TensorInfo.shape` is in GGUF order: `shape[0]` (ne0) is the contiguous dimension, so
  a weight of numpy shape (d_out, d_in) is stored as shape (d_in, d_out).
- `metadata` holds plain Python values: ints, floats, bools, str; arrays of strings as
  `list[str]`; arrays of numbers or bools as read-only 1-D numpy arrays of the GGUF
  element type (so the 262k Gemma token scores stay one compact array); nested arrays
  as lists of those. Strings that are not valid UTF-8 are decoded with
  `surrogateescape` so that their bytes survive (`s.encode("utf-8", "surrogateescape")`).
- Tensor types unknown to `ggml_types` parse (so `inspect` can show them); their
  `n_bytes` is None and `raw()` raises `UnsupportedError`.

It does not write GGUF files, handle big-endian files or GGUF v1 (32-bit counts), or
know what any metadata key means: architectures interpret `metadata` themselves.
"""

from __future__ import annotations

import math
import mmap
import os
import reprlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import FormatError, UnsupportedError
from workbench.formats.ggml_types import GGML_TYPES, ggml_type

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
INT64_MAX = 2**63 - 1

# GGUF metadata value types: id -> (name, numpy dtype or None for str/array)
_VALUE_TYPES: dict[int, tuple[str, np.dtype | None]] = {
    0: ("UINT8", np.dtype("<u1")),
    1: ("INT8", np.dtype("<i1")),
    2: ("UINT16", np.dtype("<u2")),
    3: ("INT16", np.dtype("<i2")),
    4: ("UINT32", np.dtype("<u4")),
    5: ("INT32", np.dtype("<i4")),
    6: ("FLOAT32", np.dtype("<f4")),
    7: ("BOOL", np.dtype("u1")),
    8: ("STRING", None),
    9: ("ARRAY", None),
    10: ("UINT64", np.dtype("<u8")),
    11: ("INT64", np.dtype("<i8")),
    12: ("FLOAT64", np.dtype("<f8")),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7
_MAX_NESTING = 8  # arrays of arrays deeper than this are not a real model file

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 8, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 60


def _short(value: Any, limit: int = 80) -> str:
    """A repr for error messages, at most about `limit` characters: names and values come
    from the file and a hostile one can be megabytes long."""
    r = _REPR.repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class TensorInfo:
    """One tensor record. `offset` is absolute in the file; `shape` is GGUF order (ne0 first)."""

    name: str
    type_id: int
    type_name: str
    shape: tuple[int, ...]
    offset: int
    n_bytes: int | None  # None when the type is unknown to ggml_types
    n_elements: int

    @property
    def numpy_shape(self) -> tuple[int, ...]:
        """Row-major shape: the GGUF shape reversed (ne0 last)."""
        return tuple(reversed(self.shape))


class _Cursor:
    """Reads little-endian values from a buffer, checking every read against its end."""

    def __init__(self, buf: memoryview, path: Path):
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.path = path
        self.where = "header"  # what is being read, for error messages

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.path}: {what} (at byte {self.pos}, reading {self.where})")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise self.fail(
                f"truncated: {what} needs {n} bytes but only {self.end - self.pos} remain"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str) -> str:
        n = self.u64(f"{what} length")
        self.need(n, f"{what} of {n} bytes")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "surrogateescape")

    def scalar(self, dtype: np.dtype, what: str) -> Any:
        self.need(dtype.itemsize, what)
        v = np.frombuffer(self.buf, dtype, 1, self.pos)[0]
        self.pos += dtype.itemsize
        return v.item()

    def value(self, type_id: int, depth: int = 0) -> Any:
        if type_id not in _VALUE_TYPES:
            raise self.fail(f"unknown metadata value type {type_id}")
        if type_id == _STRING:
            return self.string("string")
        if type_id == _ARRAY:
            return self.array(depth)
        v = self.scalar(_VALUE_TYPES[type_id][1], _VALUE_TYPES[type_id][0])
        return bool(v) if type_id == _BOOL else v

    def array(self, depth: int) -> Any:
        if depth >= _MAX_NESTING:
            raise self.fail(f"arrays nested deeper than {_MAX_NESTING}")
        elem = self.u32("array element type")
        if elem not in _VALUE_TYPES:
            raise self.fail(f"unknown array element type {elem}")
        count = self.u64("array length")
        dtype = _VALUE_TYPES[elem][1]
        # smallest encoding of one element: a string is at least its 8-byte length,
        # an array at least its 4-byte type and 8-byte count
        min_size = dtype.itemsize if dtype is not None else (8 if elem == _STRING else 12)
        if count > (self.end - self.pos) // min_size:
            raise self.fail(
                f"truncated: array of {count} {_VALUE_TYPES[elem][0]} needs at least "
                f"{count * min_size} bytes but only {self.end - self.pos} remain"
            )
        if dtype is not None:
            a = np.frombuffer(self.buf, dtype, count, self.pos).copy()
            self.pos += count * dtype.itemsize
            if elem == _BOOL:
                a = a.astype(bool)
            a.flags.writeable = False
            return a
        if elem == _STRING:
            return [self.string("string array item") for _ in range(count)]
        return [self.array(depth + 1) for _ in range(count)]


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class GGUFFile:
    """A parsed, memory-mapped GGUF file. Build with `GGUFFile.open(path)`."""

    def __init__(
        self,
        path: Path,
        version: int,
        metadata: dict[str, Any],
        metadata_types: dict[str, str],
        tensors: dict[str, TensorInfo],
        alignment: int,
        data_offset: int,
        file_size: int,
        data: np.ndarray,
    ):
        self.path = path
        self.version = version
        self.metadata = metadata
        self.metadata_types = metadata_types  # key -> GGUF type name ("UINT32", "ARRAY[STRING]")
        self.tensors = tensors
        self.alignment = alignment
        self.data_offset = data_offset
        self.file_size = file_size
        self._data = data  # the whole file, uint8, read-only memory map

    @classmethod
    def open(cls, path: str | os.PathLike) -> GGUFFile:
        path = Path(path)
        try:
            file_size = path.stat().st_size
        except OSError as e:
            raise FormatError(f"{path}: cannot open GGUF file: {e.strerror or e}") from None
        if path.is_dir():
            raise FormatError(f"{path}: is a directory, not a GGUF file")
        if file_size < 4:
            raise FormatError(f"{path}: not a GGUF file (only {file_size} bytes)")
        try:
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise FormatError(f"{path}: cannot map GGUF file: {e.strerror or e}") from None
        data = np.frombuffer(mm, dtype=np.uint8)  # read-only view; keeps the map alive
        return _parse(path, data, file_size)

    # -- metadata -----------------------------------------------------------------

    def get(self, key: str, default: Any = REQUIRED) -> Any:
        """Metadata value for `key`; `FormatError` if absent and no default is given."""
        if key in self.metadata:
            return self.metadata[key]
        if default is REQUIRED:
            raise FormatError(f"file {self.path} lacks metadata key {key}")
        return default

    @property
    def architecture(self) -> str:
        return self.get("general.architecture")

    # -- tensors ------------------------------------------------------------------

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise FormatError(f"file {self.path} has no tensor {_short(name)}") from None

    def raw(self, name: str) -> np.ndarray:
        """Read-only uint8 view (n_rows, row_bytes): the block-row layout kernels consume.

        n_rows = prod(shape[1:]); row_bytes = shape[0] // block_size * type_size.
        """
        t = self.tensor(name)
        if t.n_bytes is None:
            raise UnsupportedError(
                f"{self.path}: tensor {_short(name)} has tensor type {t.type_name} "
                f"(id {t.type_id}), which workbench does not support"
            )
        ty = ggml_type(t.type_id)
        n_rows = t.n_elements // t.shape[0]
        row_bytes = t.shape[0] // ty.block_size * ty.type_size
        return self._data[t.offset : t.offset + t.n_bytes].reshape(n_rows, row_bytes)

    def f32(self, name: str) -> np.ndarray:
        """Read-only float32 view of an F32 tensor, numpy shape = reversed GGUF shape."""
        t = self.tensor(name)
        if t.type_name != "F32":
            raise FormatError(
                f"{self.path}: tensor {_short(name)} is {t.type_name}, expected F32"
            )
        return self.raw(name).view(np.float32).reshape(t.numpy_shape)

    def close(self) -> None:
        """Drop this object's reference to the map (views handed out keep it alive)."""
        self._data = np.empty(0, np.uint8)

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        arch = self.metadata.get("general.architecture", "?")
        return (
            f"GGUFFile({str(self.path)!r}, v{self.version}, arch={arch}, "
            f"{len(self.metadata)} keys, {len(self.tensors)} tensors)"
        )


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Same as `GGUFFile.open(path)`."""
    return GGUFFile.open(path)


def _parse(path: Path, data: np.ndarray, file_size: int) -> GGUFFile:
    cur = _Cursor(memoryview(data), path)

    cur.need(4, "magic")
    magic = bytes(cur.buf[0:4])
    if magic != GGUF_MAGIC:
        raise FormatError(f"{path}: not a GGUF file (magic {magic!r}, expected b'GGUF')")
    cur.pos = 4
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            raise FormatError(f"{path}: big-endian GGUF files are not supported")
        raise FormatError(
            f"{path}: unsupported GGUF version {version} (supported: 2, 3)"
        )
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    # each key/value needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor
    # record at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset)
    if n_kv > (cur.end - cur.pos) // 13:
        raise cur.fail(f"truncated: metadata count {n_kv} cannot fit in the file")
    if n_tensors > (cur.end - cur.pos) // 24:
        raise cur.fail(f"truncated: tensor count {n_tensors} cannot fit in the file")

    metadata: dict[str, Any] = {}
    metadata_types: dict[str, str] = {}
    for i in range(n_kv):
        cur.where = f"metadata key #{i}"
        key = cur.string("metadata key")
        cur.where = f"metadata key {_short(key)}"
        if key in metadata:
            raise cur.fail(f"duplicate metadata key {_short(key)}")
        type_id = cur.u32("value type")
        if type_id not in _VALUE_TYPES:
            raise cur.fail(f"metadata key {_short(key)} has unknown value type {type_id}")
        if type_id == _ARRAY:
            cur.need(4, "array element type")
            (elem,) = _U32.unpack_from(cur.buf, cur.pos)
            elem_name = _VALUE_TYPES.get(elem, (str(elem),))[0]
            metadata_types[key] = f"ARRAY[{elem_name}]"
        else:
            metadata_types[key] = _VALUE_TYPES[type_id][0]
        metadata[key] = cur.value(type_id)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise FormatError(
            f"{path}: metadata key general.alignment is {_short(alignment)}, "
            "expected a positive power of two"
        )

    records = []
    for i in range(n_tensors):
        cur.where = f"tensor record #{i}"
        name = cur.string("tensor name")
        cur.where = f"tensor {_short(name)}"
        n_dims = cur.u32("dims count")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {_short(name)} has {n_dims} dims, expected 1 to {MAX_DIMS}")
        shape = tuple(cur.u64("dimension") for _ in range(n_dims))
        type_id = cur.u32("tensor type")
        rel_offset = cur.u64("tensor offset")
        records.append((name, shape, type_id, rel_offset))

    data_offset = _align(cur.pos, alignment)
    if records and data_offset > file_size:
        cur.where = "tensor data"
        raise cur.fail("truncated: the file ends before its tensor data section")

    tensors: dict[str, TensorInfo] = {}
    for name, shape, type_id, rel_offset in records:
        tensors[name] = _tensor_info(path, name, shape, type_id, rel_offset,
                                     alignment, data_offset, file_size, tensors)
    _check_overlaps(path, tensors)
    return GGUFFile(path, version, metadata, metadata_types, tensors, alignment,
                    data_offset, file_size, data)


def _tensor_info(path, name, shape, type_id, rel_offset, alignment, data_offset,
                 file_size, seen) -> TensorInfo:
    def fail(what: str) -> FormatError:
        return FormatError(f"{path}: tensor {_short(name)} {what}")

    if name in seen:
        raise FormatError(f"{path}: duplicate tensor name {_short(name)}")
    if any(d <= 0 or d > INT64_MAX for d in shape):
        bad = [d - 2**64 if d > INT64_MAX else d for d in shape]
        raise fail(f"has shape {bad}: every dimension must be positive")
    n_elements = math.prod(shape)
    if n_elements > INT64_MAX:
        raise fail(f"has shape {list(shape)} whose element count overflows int64")
    if rel_offset % alignment:
        raise fail(f"data offset {rel_offset} is not a multiple of the alignment {alignment}")
    offset = data_offset + rel_offset
    if offset > file_size:
        raise fail(f"data starts at byte {offset}, past the end of the {file_size}-byte file")

    ty = GGML_TYPES.get(type_id)
    if ty is None:  # unknown type: parse, but raw() refuses it
        return TensorInfo(name, type_id, f"UNKNOWN({type_id})", shape, offset, None, n_elements)
    if shape[0] % ty.block_size:
        raise fail(
            f"of type {ty.name} has ne0 = {shape[0]}, not a multiple of its block size "
            f"{ty.block_size}"
        )
    n_bytes = n_elements // ty.block_size * ty.type_size
    if offset + n_bytes > file_size:
        raise fail(
            f"data [{offset}, {offset + n_bytes}) runs past the end of the "
            f"{file_size}-byte file"
        )
    return TensorInfo(name, type_id, ty.name, shape, offset, n_bytes, n_elements)


def _check_overlaps(path: Path, tensors: dict[str, TensorInfo]) -> None:
    spans = sorted((t.offset, t.offset + (t.n_bytes or 0), t.name) for t in tensors.values())
    for (a0, a1, a), (b0, _b1, b) in zip(spans, spans[1:]):
        if b0 < a1:
            raise FormatError(
                f"{path}: tensors {_short(a)} [{a0}, {a1}) and {_short(b)} (from {b0}) overlap"
            )


# -- inspect ---------------------------------------------------------------------------

_HEAD = 8  # items of a long array shown by describe()


def summarize_value(value: Any, head: int = _HEAD) -> Any:
    """JSON-friendly form of a metadata value; long arrays become {length, head}."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        items = [summarize_value(v, head) for v in value[:head]]
        if len(value) <= head:
            return items
        return {"length": len(value), "head": items}
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def describe(gguf_file: GGUFFile) -> dict:
    """A JSON-serializable summary for `workbench inspect`: metadata and a tensor table."""
    g = gguf_file
    by_type: dict[str, dict[str, int]] = {}
    for t in g.tensors.values():
        row = by_type.setdefault(t.type_name, {"tensors": 0, "bytes": 0, "elements": 0})
        row["tensors"] += 1
        row["bytes"] += t.n_bytes or 0
        row["elements"] += t.n_elements
    return {
        "path": str(g.path),
        "format": "gguf",
        "version": g.version,
        "file_size": g.file_size,
        "alignment": g.alignment,
        "data_offset": g.data_offset,
        "n_tensors": len(g.tensors),
        "n_parameters": sum(t.n_elements for t in g.tensors.values()),
        "metadata": {summarize_value(k): summarize_value(v) for k, v in g.metadata.items()},
        "metadata_types": {summarize_value(k): v for k, v in g.metadata_types.items()},
        "tensor_types": by_type,
        "tensors": [
            {
                "name": summarize_value(t.name),
                "type": t.type_name,
                "shape": list(t.shape),
                "bytes": t.n_bytes,
                "offset": t.offset,
            }
            for t in g.tensors.values()
        ],
    }
