"""Our own reader for one `.safetensors` file (the Hugging Face tensor format).

Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each
tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
byte after the header) plus an optional "__metadata__" dict of strings, then the data.

Contract: `SafetensorsFile.open(path)` validates the header against the file (length
beyond the file, bad or absurdly nested JSON, missing or mistyped fields, unknown dtype,
shapes numpy cannot hold (more than 64 dims, a byte size past int64 even when a zero
dim makes it empty), offsets outside the data or disagreeing with shape x dtype,
overlapping tensors) and raises a `FormatError` naming the file and tensor, with
header values cut short in the message; then memory-maps the file read-only.
`array(name)` is a zero-copy numpy view (bf16 and fp8 come back as their raw uint16 /
uint8 bits); `f32(name)` converts F32/F16/BF16 to float32. `shape` is numpy
(row-major) order, as stored.

It does not read sharded checkpoints (`model.safetensors.index.json`) or HF config
files: the HF directory loader does that on top of this.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import reprlib
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import FormatError

# safetensors dtype -> (bytes per element, numpy dtype of `array()` views)
DTYPES: dict[str, tuple[int, np.dtype]] = {
    "BOOL": (1, np.dtype(bool)),
    "U8": (1, np.dtype("u1")),
    "I8": (1, np.dtype("i1")),
    "F8_E4M3": (1, np.dtype("u1")),
    "F8_E5M2": (1, np.dtype("u1")),
    "U16": (2, np.dtype("<u2")),
    "I16": (2, np.dtype("<i2")),
    "F16": (2, np.dtype("<f2")),
    "BF16": (2, np.dtype("<u2")),
    "U32": (4, np.dtype("<u4")),
    "I32": (4, np.dtype("<i4")),
    "F32": (4, np.dtype("<f4")),
    "U64": (8, np.dtype("<u8")),
    "I64": (8, np.dtype("<i8")),
    "F64": (8, np.dtype("<f8")),
}
MAX_HEADER_BYTES = 100 * 2**20  # the reference implementation's limit
MAX_DIMS = 64  # numpy's limit (NPY_MAXDIMS): a view with more dims cannot exist
INT64_MAX = 2**63 - 1  # numpy's limit on an array's byte size, even an empty one's


@dataclass(frozen=True)
class SafetensorInfo:
    """One tensor: numpy-order `shape`, absolute byte `offset` in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


class SafetensorsFile:
    """A parsed, memory-mapped safetensors file. Build with `SafetensorsFile.open(path)`."""

    def __init__(self, path: Path, metadata: dict[str, str],
                 tensors: dict[str, SafetensorInfo], data_offset: int, file_size: int,
                 data: np.ndarray):
        self.path = path
        self.metadata = metadata  # the "__metadata__" strings
        self.tensors = tensors  # in data order
        self.data_offset = data_offset
        self.file_size = file_size
        self._data = data

    @classmethod
    def open(cls, path: str | os.PathLike) -> SafetensorsFile:
        path = Path(path)
        try:
            st = path.stat()
            size = st.st_size
            if path.is_dir():
                raise FormatError(f"{path}: is a directory, not a safetensors file")
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open below
                raise FormatError(f"{path}: is a FIFO, device or socket, not a safetensors file")
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise FormatError(
                        f"{path}: not a safetensors file (only {size} bytes, "
                        "the header length alone takes 8)"
                    )
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    raise FormatError(
                        f"{path}: header length {n} runs past the end of the "
                        f"{size}-byte file"
                    )
                if n > MAX_HEADER_BYTES:
                    raise FormatError(f"{path}: header length {n} exceeds {MAX_HEADER_BYTES}")
                header = f.read(n)
                data = (np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ),
                                      np.uint8) if size else np.empty(0, np.uint8))
        except OSError as e:
            raise FormatError(f"{path}: cannot read safetensors file: {e.strerror or e}") from None
        metadata, tensors = _parse_header(path, header, 8 + n, size)
        return cls(path, metadata, tensors, 8 + n, size, data)

    def tensor(self, name: str) -> SafetensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise FormatError(f"file {self.path} has no tensor {_short(name)}") from None

    def array(self, name: str) -> np.ndarray:
        """Read-only zero-copy view with the stored shape (BF16 -> uint16 bits, F8 -> uint8)."""
        t = self.tensor(name)
        dtype = DTYPES[t.dtype][1]
        return self._data[t.offset : t.offset + t.n_bytes].view(dtype).reshape(t.shape)

    def f32(self, name: str) -> np.ndarray:
        """float32 array of an F32 (view), F16 or BF16 (converted copy) tensor."""
        t = self.tensor(name)
        a = self.array(name)
        if t.dtype == "F32":
            return a
        if t.dtype == "F16":
            return a.astype(np.float32)
        if t.dtype == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        raise FormatError(
            f"{self.path}: tensor {_short(name)} is {t.dtype}, expected F32, F16 or BF16"
        )

    def __repr__(self) -> str:
        return f"SafetensorsFile({str(self.path)!r}, {len(self.tensors)} tensors)"


def read_safetensors(path: str | os.PathLike) -> SafetensorsFile:
    """Same as `SafetensorsFile.open(path)`."""
    return SafetensorsFile.open(path)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 8, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 60


def _short(value: object, limit: int = 80) -> str:
    """A repr of a header value for an error message, at most about `limit` characters:
    header values are hostile and can be megabytes long."""
    r = _REPR.repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(path: Path, header: bytes, data_offset: int, file_size: int):
    try:
        obj = json.loads(header.decode("utf-8"))
    except RecursionError:
        raise FormatError(f"{path}: header JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        # ValueError: JSONDecodeError, and integers past Python's 4300-digit limit
        raise FormatError(f"{path}: header is not valid UTF-8 JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: header is a JSON {type(obj).__name__}, expected an object")

    metadata = obj.pop("__metadata__", None)
    if metadata is None:  # null and absent both mean no metadata
        metadata = {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(
            f"{path}: __metadata__ is {_short(metadata)}, expected an object mapping "
            "strings to strings"
        )

    data_size = file_size - data_offset
    infos = []
    for name, entry in obj.items():
        def fail(what: str) -> FormatError:
            return FormatError(f"{path}: tensor {_short(name)} {what}")

        if not isinstance(entry, dict):
            raise fail("entry is not a JSON object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise fail(f"has unknown dtype {_short(dtype)} (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise fail(f"has shape {_short(shape)}, expected a list of non-negative integers")
        if len(shape) > MAX_DIMS:
            raise fail(f"has {len(shape)} dims, more than the {MAX_DIMS} a numpy array can hold")
        # numpy refuses any shape whose non-zero dims times the item size exceed int64,
        # even when a zero dim makes the array empty ([0, 2**64] included)
        n_bytes = DTYPES[dtype][0]
        for d in shape:
            n_bytes *= d or 1
            if n_bytes > INT64_MAX:
                raise fail(f"has shape {_short(shape)} whose byte size overflows int64")
        n_bytes = math.prod(shape) * DTYPES[dtype][0]
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
        ):
            raise fail(f"has data_offsets {_short(offsets)}, expected [begin, end]")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise fail(
                f"data_offsets [{_short(begin, 30)}, {_short(end, 30)}] lie outside the "
                f"{data_size}-byte data section"
            )
        if end - begin != n_bytes:
            raise fail(
                f"spans {end - begin} bytes but shape {_short(shape)} of {dtype} needs {n_bytes}"
            )
        infos.append(SafetensorInfo(name, dtype, tuple(shape), data_offset + begin, n_bytes))

    infos.sort(key=lambda t: (t.offset, t.n_bytes))
    spans = [t for t in infos if t.n_bytes]  # empty tensors occupy no bytes
    for a, b in zip(spans, spans[1:]):
        if b.offset < a.offset + a.n_bytes:
            raise FormatError(f"{path}: tensors {_short(a.name)} and {_short(b.name)} overlap")
    return metadata, {t.name: t for t in infos}


def describe(st: SafetensorsFile) -> dict:
    """A JSON-serializable summary for `workbench inspect`, shaped like gguf.describe()."""
    by_dtype: dict[str, dict[str, int]] = {}
    for t in st.tensors.values():
        row = by_dtype.setdefault(t.dtype, {"tensors": 0, "bytes": 0, "elements": 0})
        row["tensors"] += 1
        row["bytes"] += t.n_bytes
        row["elements"] += t.n_elements
    return {
        "path": str(st.path),
        "format": "safetensors",
        "file_size": st.file_size,
        "data_offset": st.data_offset,
        "n_tensors": len(st.tensors),
        "n_parameters": sum(t.n_elements for t in st.tensors.values()),
        "metadata": dict(st.metadata),
        "tensor_types": by_dtype,
        "tensors": [
            {"name": t.name, "type": t.dtype, "shape": list(t.shape), "bytes": t.n_bytes,
             "offset": t.offset}
            for t in st.tensors.values()
        ],
    }
