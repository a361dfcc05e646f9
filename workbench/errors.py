"""The one exception family of workbench.

Every error a user can cause (a bad file, a bad parameter, an unsupported model) is a
`WorkbenchError` whose message names the file, tensor or parameter and what was
expected. The CLI turns these into one line on stderr and exit code 2.
"""

import re


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""


class FormatError(WorkbenchError):
    """A model file (GGUF, safetensors, config, tokenizer) is malformed or unsupported."""


class UnsupportedError(WorkbenchError):
    """A valid file uses something workbench does not implement (tensor type, architecture)."""


class ParameterError(WorkbenchError, ValueError):
    """A caller passed a value outside its documented range.

    `param` is the keyword argument at fault when one is (None otherwise); the message
    then starts with that name, so that the CLI can say the same with its flag instead
    (`--max-tokens must be >= 1`, where Python says `max_tokens must be >= 1`). Left
    out, it is read from a message of the form "NAME must ...", which every check of a
    single argument uses."""

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        named = re.match(r"([a-z_][a-z0-9_]*) must\b", message)
        self.param = param if param is not None else named.group(1) if named else None

    def renamed(self, name: str) -> str:
        """The message with the parameter called `name` (a CLI flag) instead."""
        text = str(self)
        if self.param and text.startswith(self.param):
            return name + text[len(self.param):]
        return text


class StaleStepperError(WorkbenchError):
    """A generation was used after a later one took over its model's KV cache (one model
    holds one session: a second `start()` or `generate()` ends the first stepper)."""


class PeerUnavailableError(WorkbenchError):
    """A peer engine (`workbench.peers`) is not installed (or cannot start) in this environment."""


class CacheError(WorkbenchError):
    """The workbench cache directory cannot be made or written."""


class ShapeError(WorkbenchError, ValueError):
    """An array handed to a kernel wrapper has the wrong shape, dtype or layout."""
