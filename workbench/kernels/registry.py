"""A registry of kernel variants: (op, weight format) -> {variant name: function}.

The kernel experimenter registers a new variant next to the built-in ones and compares
them on the same weights; the engine calls `default(op, fmt)`. A variant is a plain
function with the op's documented signature (for "matvec": `fn(out, w, x)`, see
`workbench.kernels.linear`). The built-in ones come from the table of formats
(`kernels.table`), registered on first use: for each matvec variant of a format its
name ("row_groups", "one_row", ...) and its serial twin ("row_groups_serial"), plus
"serial", the serial twin of the variant chosen for this CPU, which is the default.
Sessions may override the choice per format without touching the registry
(`workbench.load(..., kernels={"q4_0": "one_row"})`).
"""

from typing import Callable

from workbench.errors import ParameterError, UnsupportedError

_VARIANTS: dict[tuple[str, str], dict[str, Callable]] = {}
_DEFAULTS: dict[tuple[str, str], str] = {}
_VERSION = [0]  # bumped by every change, so that callers caching a choice know it is stale
_BUILTINS = [False]


def register(op: str, fmt: str, name: str, fn: Callable, default: bool = False) -> Callable:
    """Add variant `name` of `op` for weight format `fmt`; the first one (or one registered
    with default=True) becomes the default. Re-registering a name replaces it. Returns fn."""
    _load_builtins()
    return _register(op, fmt, name, fn, default)


def _register(op, fmt, name, fn, default=False):
    key = (op, fmt)
    _VERSION[0] += 1
    _VARIANTS.setdefault(key, {})[name] = fn
    if default or key not in _DEFAULTS:
        _DEFAULTS[key] = name
    return fn


def _load_builtins() -> None:
    if _BUILTINS[0]:
        return
    _BUILTINS[0] = True
    from workbench.kernels.isa.x86 import cpu_features
    from workbench.kernels.scratch import with_scratch
    from workbench.kernels.table import FORMATS

    features = cpu_features()
    for f in FORMATS.values():
        if not f.weight:
            continue
        chosen = f.choose(features)
        scratch = f.vec_dot != "f32"
        for v in f.variants:
            if v.repack is not None:  # reads its own layout, not the GGUF bytes every registry kernel takes
                continue
            _register("matvec", f.name, v.name, with_scratch(v.kernel, scratch, v.name), default=v.name == chosen)
            _register("matvec", f.name, f"{v.name}_serial", with_scratch(v.serial, scratch, f"{v.name}_serial"))
            if v.name == chosen:
                _register("matvec", f.name, "serial", with_scratch(v.serial, scratch, f"{v.name}_serial"))
        _register("get_rows", f.name, "scalar", f.get_rows, default=True)


def variants(op: str, fmt: str) -> dict[str, Callable]:
    """All variants of `op` for `fmt`, by name (a copy); UnsupportedError if there are none."""
    _load_builtins()
    found = _VARIANTS.get((op, fmt))
    if not found:
        raise UnsupportedError(f"no {op} kernel for weight format {fmt!r}")
    return dict(found)


def default(op: str, fmt: str) -> Callable:
    """The default variant of `op` for `fmt`; UnsupportedError if there is none."""
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
    _load_builtins()
    return sorted(fmt for (o, fmt), found in _VARIANTS.items() if o == op and found)
