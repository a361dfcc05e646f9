"""Model conversion: GGUF -> requantized GGUF or HF F32 directory, and cached variants.

- `convert(src, dst, to)` / `convert_report(...)`: one conversion, atomic (`core.py`);
  `to` in `TARGETS`: "gguf-q8_0", "gguf-q4_0", "gguf-f16", "gguf-f32", "hf-f32".
- `derived(name, variant)`: a catalog model converted once into the workbench cache and
  verified by checksum on reuse (`cache.py`); `variants()` names them all
  ("smollm2-135m:q4_0", ...), as `workbench.load` accepts them.

The encodings themselves: `gguf_out.py` (GGUF writer) and `hf_out.py` (HF directory).
"""

from workbench.convert.cache import SOURCES, VARIANTS, derived, derived_path, variants
from workbench.convert.core import CONVERTER_VERSION, TARGETS, ConvertError, ConvertReport, convert, convert_report

__all__ = [
    "CONVERTER_VERSION", "SOURCES", "TARGETS", "VARIANTS", "ConvertError", "ConvertReport", "convert",
    "convert_report", "derived", "derived_path", "variants",
]
