"""The one exception family of workbench.

Every error a user can cause (a bad file, a bad parameter, an unsupported model) is a
`WorkbenchError` whose message names the file, tensor or parameter and what was
expected. The CLI turns these into one line on stderr and exit code 2.
"""


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""


class FormatError(WorkbenchError):
    """A model file (GGUF, safetensors, config, tokenizer) is malformed or unsupported."""


class UnsupportedError(WorkbenchError):
    """A valid file uses something workbench does not implement (tensor type, architecture)."""


class ParameterError(WorkbenchError, ValueError):
    """A caller passed a value outside its documented range."""


class ShapeError(WorkbenchError, ValueError):
    """An array handed to a kernel wrapper has the wrong shape, dtype or layout."""
