"""A registry of kernel variants: (op, weight format) -> {variant name: function}.

The kernel experimenter registers a new variant next to the existing ones and compares
them on the same weights; the engine calls `default(op, fmt)`. A variant is a plain
function with the op's documented signature (for "matvec": `fn(out, w, x)`, see
`workbench.kernels.linear`). Registering is explicit and happens at import of the
module that defines the kernels; this module imports no kernels itself until a lookup
misses, when it loads the built-in ones (`workbench.kernels.linear`) once, so that a
notebook may ask the registry first.
"""

from typing import Callable

from workbench.errors import ParameterError, UnsupportedError

_VARIANTS: dict[tuple[str, str], dict[str, Callable]] = {}
_DEFAULTS: dict[tuple[str, str], str] = {}
_VERSION = [0]  # bumped by every change, so that callers caching a choice know it is stale


def register(op: str, fmt: str, name: str, fn: Callable, default: bool = False) -> Callable:
    """Add variant `name` of `op` for weight format `fmt`; the first one (or one registered
    with default=True) becomes the default. Re-registering a name replaces it. Returns fn."""
    key = (op, fmt)
    _VERSION[0] += 1
    _VARIANTS.setdefault(key, {})[name] = fn
    if default or key not in _DEFAULTS:
        _DEFAULTS[key] = name
    return fn


def _load_builtins() -> None:
    import workbench.kernels.linear  # noqa: F401  (registers the built-in kernels)


def variants(op: str, fmt: str) -> dict[str, Callable]:
    """All variants of `op` for `fmt`, by name (a copy); UnsupportedError if there are none."""
    if (op, fmt) not in _VARIANTS:
        _load_builtins()
    found = _VARIANTS.get((op, fmt))
    if not found:
        raise UnsupportedError(f"no {op} kernel for weight format {fmt!r}")
    return dict(found)


def default(op: str, fmt: str) -> Callable:
    """The default variant of `op` for `fmt`; UnsupportedError if there is none."""
    name = _DEFAULTS.get((op, fmt))
    if name is None:
        _load_builtins()
        name = _DEFAULTS.get((op, fmt))
    if name is None:
        raise UnsupportedError(f"no {op} kernel for weight format {fmt!r}")
    return _VARIANTS[(op, fmt)][name]


def default_name(op: str, fmt: str) -> str:
    """The name of the default variant of `op` for `fmt`."""
    default(op, fmt)
    return _DEFAULTS[(op, fmt)]


def set_default(op: str, fmt: str, name: str) -> None:
    """Make the registered variant `name` the default of `op` for `fmt`."""
    if name not in variants(op, fmt):
        raise ParameterError(f"{op}/{fmt} has no variant {name!r}; have {list(variants(op, fmt))}")
    _DEFAULTS[(op, fmt)] = name
    _VERSION[0] += 1


def version() -> int:
    """A number that changes whenever a variant is registered or a default is set."""
    return _VERSION[0]


def formats(op: str) -> list[str]:
    """The weight formats that have at least one `op` variant."""
    return sorted(fmt for (o, fmt), found in _VARIANTS.items() if o == op and found)
