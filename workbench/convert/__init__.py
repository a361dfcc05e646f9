"""Model conversion: GGUF -> requantized GGUF or HF F32 directory, and cached variants.

- `convert(src, dst, to)` / `convert_report(...)`: one conversion, atomic (`core.py`);
  `to` in `TARGETS`: "gguf-q8_0", "gguf-q4_0", "gguf-f16", "gguf-f32", "hf-f32".
- `derived(name, variant)`: a catalog model converted once into the workbench cache and
  verified by checksum on reuse (`cache.py`); `variants()` names them all
  ("smollm2-135m:q4_0", ...), as `workbench.load` accepts them; `derived("twin", NAME)`
  is the shape twin NAME (`workbench.load("twin:NAME")`);
- `twin(name)` / `twin_files(name)`: shape twins of the models of rustml's trace report,
  random weights at real shapes and formats, made into the cache on first use (`twins.py`).

The encodings themselves: `gguf_out.py` (GGUF writer) and `hf_out.py` (HF directory).
"""

from workbench.convert.cache import SOURCES, VARIANTS, derived, derived_path, variants
from workbench.convert.core import CONVERTER_VERSION, TARGETS, ConvertError, ConvertReport, convert, convert_report
from workbench.convert.twins import TWINS, twin, twin_files

__all__ = [
    "CONVERTER_VERSION", "SOURCES", "TARGETS", "VARIANTS", "ConvertError", "ConvertReport", "convert",
    "convert_report", "derived", "derived_path", "TWINS", "twin", "twin_files", "variants",
]
