"""Which matvec kernel a product runs, as an integer a compiled step can branch on.

A compiled step (`workbench.nn.step`) runs every product of a forward without returning
to Python, so it cannot look kernels up in the registry per call, and it must not take
kernels as arguments either: numba's on-disk cache keys a function taking another
compiled function by that function's identity, which changes in every process (a new
cache entry per process, then `ReferenceError: underlying object has vanished`). So a
kernel is data:

    code = 64 * ggml_type + variant

`variant` is the index of a variant in its format's row (`kernels.table`), plus SERIAL
for its serial twin, or CUSTOM for a kernel registered from a notebook (an njit function
`fn(out, w, x)`). `matvec_code(fmt, choice)` turns a session's choice, or else the
registry's current default, into a code at load (and again whenever the registry
changes); `table.matvec_into(code, ...)` branches on it. For CUSTOM codes `matvec_with`
builds an uncached `matvec_into` that calls the notebook's kernel, and the model's step
is recompiled around it (`nn.step.Products.specialize`), so it too runs inside the step.

Nothing here checks shapes: callers validate every weight when they pack it.
"""

from numba.core.dispatcher import Dispatcher

from workbench.errors import ParameterError, UnsupportedError
from workbench.kernels.formats.base import SERIAL
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.jit import njit_uncached
from workbench.kernels.registry import default, default_name, variants, version
from workbench.kernels.table import FORMATS, format_named, get_rows_into, matvec_into  # noqa: F401 (re-exported)

CUSTOM = 63


def _builtin_codes() -> dict:
    """{a variant's compiled kernel: its code}, for every built-in variant."""
    codes = {}
    for f in FORMATS.values():
        for i, v in enumerate(f.variants):
            codes[v.kernel] = 64 * f.ggml_type + i
            codes[v.serial] = 64 * f.ggml_type + i + SERIAL
    return codes


_CODES = _builtin_codes()


def variant_code(fmt: str, name: str) -> int:
    """The code of built-in variant `name` of `fmt` ("row_groups", "one_row_serial", ...),
    refusing a variant this CPU lacks the instructions for."""
    f = format_named(fmt)
    serial = name.endswith("_serial")
    v = f.variants[f.variant_index(name.removesuffix("_serial"))]
    missing = [n for n in v.needs if n not in cpu_features()]
    if missing:
        raise ParameterError(f"kernel {fmt}/{name} needs {', '.join(missing)}, which this CPU lacks; "
                             f"choose one of {available(fmt)}")
    if not v.runs_on(cpu_features()):
        raise ParameterError(f"kernel {fmt}/{name} cannot run here although the CPU has {', '.join(v.needs)}: "
                             f"the OS did not grant them or its self-test failed (a warning said which); "
                             f"choose one of {available(fmt)}")
    return 64 * f.ggml_type + f.variants.index(v) + (SERIAL if serial else 0)


def available(fmt: str) -> list[str]:
    """The built-in variants of `fmt` this CPU can run, parallel ones first."""
    f = format_named(fmt)
    names = [v.name for v in f.variants if v.runs_on(cpu_features())]
    return names + [f"{n}_serial" for n in names]


def matvec_code(fmt: str, choice: str | None = None, layout: str = "") -> int:
    """The code of a session's `choice` for `fmt`, else of the registry's default kernel
    (CUSTOM: a kernel registered from Python). For weights repacked at load (`layout`, the
    variant that repacked them) the one kernel that reads them, its serial twin if chosen:
    a choice that cannot read the weights' layout is refused, naming the way to get it."""
    f = format_named(fmt)
    if layout:
        if choice is not None and _same_layout(f, choice.removesuffix("_serial"), layout):
            return variant_code(fmt, choice)  # another kernel of the same bytes (rows16 / rows16_amx)
        if choice is not None and choice.removesuffix("_serial") != layout:
            raise ParameterError(f"{f.name} weights were repacked at load for {layout}, which variant {choice!r} "
                                 f"cannot read; load with kernels={{{f.name!r}: {choice!r}}} to run it")
        return 64 * f.ggml_type + f.variant_index(layout) + (SERIAL if choice and choice.endswith("_serial") else 0)
    if choice is not None:
        if f.variants[f.variant_index(choice.removesuffix("_serial"))].repack is not None:
            raise ParameterError(f"{f.name} variant {choice!r} reads weights repacked at load, and these were "
                                 f"loaded as the file stores them; load with kernels={{{f.name!r}: {choice!r}}}")
        return variant_code(fmt, choice)
    fn = default("matvec", fmt)
    code = _CODES.get(getattr(fn, "into", fn))
    if code is not None:
        return code
    if not isinstance(fn, Dispatcher):
        raise UnsupportedError(
            f"the default matvec kernel for {fmt} ({getattr(fn, '__name__', fn)!r}) is not compiled with numba: "
            "a model's compiled step can only call an njit function fn(out, w, x)")
    return 64 * format_named(fmt).ggml_type + CUSTOM


def _same_layout(f, name: str, layout: str) -> bool:
    """Whether variant `name` of format `f` reads the bytes repacked for variant `layout`."""
    names = [v.name for v in f.variants]
    if name == layout or name not in names:
        return False
    return f.variants[names.index(name)].repack is f.variants[names.index(layout)].repack is not None


def check_choices(choices: dict) -> dict[str, str]:
    """A session's {format: variant name}, validated (format known, variant built in and
    runnable on this CPU); the names lower-cased."""
    out = {}
    for fmt, name in (choices or {}).items():
        if not isinstance(fmt, str) or not isinstance(name, str):
            raise ParameterError(f"kernels: expected {{format: variant name}}, got {fmt!r}: {name!r}")
        f = FORMATS.get(fmt.lower())
        if f is None or not f.weight:
            raise ParameterError(f"kernels: unknown weight format {fmt!r}; expected one of "
                                 f"{', '.join(n for n, r in FORMATS.items() if r.weight)}")
        try:
            variant_code(f.name, name)
        except UnsupportedError:
            raise ParameterError(f"kernels: {f.name} has no variant {name!r}; have {available(f.name)}") from None
        out[f.name] = name
    return out


def matvec_with(kernels: dict):
    """`matvec_into` that runs kernels[code](out, w, x) for the CUSTOM codes in `kernels`,
    compiled without caching (the kernels live in a notebook, not in a file)."""
    fn = matvec_into
    for code, kernel in sorted(kernels.items()):
        fn = _with_kernel(fn, code, kernel)
    return fn


def _with_kernel(inner, custom, kernel):
    def matvec(code, out, w, x, i8, i32, f32):
        if code == custom:
            kernel(out, w, x)
        else:
            inner(code, out, w, x, i8, i32, f32)

    return njit_uncached(matvec)


def format_of_code(code: int) -> str:
    """The weight format a code belongs to."""
    return next(f.name for f in FORMATS.values() if f.ggml_type == code // 64)


def describe(code: int) -> str:
    """What kernel `code` is: its variant name ("row_groups", "one_row_serial"), or
    "python-registered: NAME"."""
    fmt, variant = format_of_code(code), code % 64
    if variant == CUSTOM:
        return "python-registered: " + default_name("matvec", fmt)
    f = FORMATS[fmt]
    return f.variants[variant % SERIAL].name + ("_serial" if variant >= SERIAL else "")


def registry_version() -> int:
    """Changes whenever a kernel is registered or a default is set: codes are stale then."""
    return version()


def describe_variants(fmt: str) -> list[dict]:
    """Every matvec variant of `fmt`: name, what it does, what it needs, whether this CPU
    runs it, which one the CPU's choice and the registry's default are, and which one a
    model loaded here runs instead, on weights repacked at load ("repacked here")."""
    f = format_named(fmt)
    chosen, current = f.choose(cpu_features()), default_name("matvec", f.name)
    rows = [{"format": f.name, "variant": v.name, "summary": v.summary, "needs": ",".join(v.needs) or "-",
             "runs here": v.runs_on(cpu_features()), "reference": v.reference,
             "chosen for this CPU": v.name == chosen, "repacked here": v is f.layout_for(cpu_features()),
             "default now": v.name == current}
            for v in f.variants]
    rows += [{"format": f.name, "variant": name, "summary": "registered from Python", "needs": "-",
              "runs here": True, "reference": False, "chosen for this CPU": False, "repacked here": False,
              "default now": name == current}
             for name, fn in variants("matvec", f.name).items() if getattr(fn, "into", None) not in _CODES]
    return rows
