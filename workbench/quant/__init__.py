"""Block formats and their numpy reference codecs.

`FORMATS` / `format_named` / `format_of_ggml_type` describe each format (layout, GGUF
type, the activation format llama.cpp pairs it with); `dequantize_ref`, `quantize_ref`
and `quantize_activation_ref` convert between raw block bytes and float32 rows. Plain
numpy: the fast paths are the numba kernels in `workbench.kernels`.
"""

from workbench.quant.formats import (
    FORMATS,
    WEIGHT_FORMATS,
    BlockFormat,
    format_named,
    format_of_ggml_type,
)
from workbench.quant.reference import dequantize_ref, quantize_activation_ref, quantize_ref

__all__ = [
    "FORMATS",
    "WEIGHT_FORMATS",
    "BlockFormat",
    "format_named",
    "format_of_ggml_type",
    "dequantize_ref",
    "quantize_ref",
    "quantize_activation_ref",
]
