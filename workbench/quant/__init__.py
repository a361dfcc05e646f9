"""Weight formats as data and their numpy reference codecs, for notebooks and tests.

`FORMATS` / `format_named` / `format_of_ggml_type` are the table of formats
(`workbench.kernels.table`: one row per GGML block type, its module holding layout,
codec and kernels); `dequantize_ref`, `quantize_ref` and `quantize_activation_ref`
convert between raw block bytes and float32 rows with those rows' numpy references.
"""

from workbench.kernels.formats.base import WeightFormat
from workbench.kernels.table import FORMATS, WEIGHT_FORMATS, format_named, format_of_ggml_type
from workbench.quant.reference import dequantize_ref, quantize_activation_ref, quantize_ref

BlockFormat = WeightFormat  # the older name

__all__ = [
    "FORMATS",
    "WEIGHT_FORMATS",
    "BlockFormat",
    "WeightFormat",
    "format_named",
    "format_of_ggml_type",
    "dequantize_ref",
    "quantize_ref",
    "quantize_activation_ref",
]
