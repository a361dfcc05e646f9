"""GGUF -> GGUF: every tensor re-encoded to one target format, the metadata carried over.

Contract: `write_gguf(gf, path, fmt, progress)` writes `path` (a new file; the caller
makes it atomic) holding every tensor of the parsed GGUF `gf`, encoded per `plan`:

- 1-D tensors (norms, biases) are F32, whatever the target;
- every other tensor, `token_embd` included (no llama-quantize style exceptions: one rule
  is easier to reason about), takes the target format `fmt` ("q8_0", "q4_0", "f16",
  "f32"), except that a row whose length is not a multiple of the target's block size
  falls back to F16; those tensors are returned as the `fallback` dict;
- a tensor already in its output format is copied byte for byte; any other is
  dequantized with `quant.reference.dequantize_ref` and quantized with `quantize_ref`
  (ggml's reference quantizers, as llama-quantize without an importance matrix), in
  chunks of rows so that memory holds one output tensor at a time.

Every metadata key/value is copied with its GGUF type, in the source's order, except
`general.file_type` (set to the target's llama_ftype) and the keys `gguf.GGUFWriter`
manages itself (`general.architecture`, `general.alignment`, `split.*`);
`general.quantization_version` is added for quantized targets that lack it. Tensors
keep their order.

It does not write what gguf-py cannot: empty metadata arrays are dropped and nested
arrays refused (neither occurs in llama.cpp's converters' output).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import gguf
import numpy as np
from tqdm.auto import tqdm

from workbench.errors import UnsupportedError
from workbench.formats.gguf import GGUFFile, TensorInfo
from workbench.quant import format_named
from workbench.quant.reference import dequantize_ref, quantize_ref

# llama_ftype of a file whose weights are mostly `fmt` (llama.h)
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}
# keys GGUFWriter writes itself (architecture, alignment) or that describe a split file
_WRITER_KEYS = ("general.architecture", "general.alignment")
_SPLIT_PREFIX = "split."
_CHUNK_ELEMENTS = 1 << 22  # rows re-encoded at a time: ~16 MB of float32


def plan(gf: GGUFFile, fmt: str) -> tuple[list[tuple[TensorInfo, str]], dict[str, str]]:
    """(each tensor with its output format, {tensor: fallback format}) for target `fmt`.
    Raises UnsupportedError naming the first tensor that cannot be decoded."""
    block = format_named(fmt).block_size
    out, fallback = [], {}
    for info in gf.tensors.values():
        src = info.type_name.lower()
        if len(info.shape) == 1:
            to = "f32"
        elif info.shape[0] % block:
            to = fallback[info.name] = "f16"
        else:
            to = fmt
        if src != to:
            try:
                format_named(src)
            except UnsupportedError:
                raise UnsupportedError(f"{gf.path}: tensor {info.name!r} is {info.type_name}, which workbench "
                                       "cannot decode, so it cannot be converted") from None
        out.append((info, to))
    return out, fallback


def write_gguf(gf: GGUFFile, path: Path, fmt: str, progress: bool) -> tuple[Counter, dict[str, str]]:
    """Write `gf` re-encoded to `fmt` into `path`; (output formats counted, fallback tensors)."""
    tensors, fallback = plan(gf, fmt)
    writer = gguf.GGUFWriter(path, gf.architecture)
    try:
        _copy_metadata(gf, writer, fmt)
        for info, to in tensors:
            add_tensor_info(writer, info.name, info.numpy_shape, to)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        with tqdm(total=len(tensors), unit="tensor", desc=f"to {fmt.upper()}", disable=None if progress else True,
                  leave=False) as bar:
            for info, to in tensors:
                writer.write_tensor_data(encode(gf, info, to))  # streams: one tensor in memory at a time
                bar.update()
    finally:
        writer.close()
    return Counter(to for _, to in tensors), fallback


def add_tensor_info(writer: gguf.GGUFWriter, name: str, shape: tuple[int, ...], fmt: str) -> None:
    """Declare tensor `name` of numpy `shape` (GGUFWriter reverses it) stored as `fmt`."""
    f = format_named(fmt)
    n_bytes = int(np.prod(shape)) // f.block_size * f.type_size
    if fmt in ("f32", "f16"):
        writer.add_tensor_info(name, shape, np.dtype(np.float32 if fmt == "f32" else np.float16), n_bytes)
    else:  # a uint8 tensor with raw_dtype: GGUFWriter wants the byte shape (..., row_bytes)
        writer.add_tensor_info(name, (*shape[:-1], f.row_bytes(shape[-1])), np.dtype(np.uint8), n_bytes,
                               raw_dtype=gguf.GGMLQuantizationType(f.ggml_type))


def encode(gf: GGUFFile, info: TensorInfo, to: str) -> np.ndarray:
    """Tensor `info` of `gf` as uint8 (rows, row_bytes) in format `to`."""
    src = info.type_name.lower()
    raw = gf.raw(info.name)
    if src == to:
        return raw
    n = info.shape[0]
    out = np.empty((raw.shape[0], format_named(to).row_bytes(n)), np.uint8)
    step = max(1, _CHUNK_ELEMENTS // n)
    for r in range(0, raw.shape[0], step):
        out[r : r + step] = quantize_ref(to, dequantize_ref(src, raw[r : r + step]))
    return out


def _copy_metadata(gf: GGUFFile, writer: gguf.GGUFWriter, fmt: str) -> None:
    if gf.metadata.get("split.count", 1) > 1:
        raise UnsupportedError(f"{gf.path} is one part of a split GGUF file; merge the parts before converting")
    for key, value in gf.metadata.items():
        if key in _WRITER_KEYS or key.startswith(_SPLIT_PREFIX):
            continue
        if key == "general.file_type":
            value = FILE_TYPES[fmt]
        kind = gf.metadata_types[key]
        if kind.startswith("ARRAY["):
            sub = kind[len("ARRAY["):-1]
            if sub == "ARRAY":
                raise UnsupportedError(f"{gf.path}: metadata key {key!r} is an array of arrays, which gguf-py "
                                       "cannot write")
            items = value.tolist() if isinstance(value, np.ndarray) else [_string(v) for v in value]
            if items:  # gguf-py refuses empty arrays
                writer.add_key_value(key, items, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType[sub])
        else:
            writer.add_key_value(key, _string(value) if kind == "STRING" else value, gguf.GGUFValueType[kind])
    if "general.file_type" not in gf.metadata:
        writer.add_file_type(FILE_TYPES[fmt])
    if fmt not in ("f32", "f16") and "general.quantization_version" not in gf.metadata:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _string(s: str) -> bytes:
    """The original bytes of a metadata string (the reader keeps invalid UTF-8 as surrogates)."""
    return s.encode("utf-8", "surrogateescape")
