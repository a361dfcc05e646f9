"""workbench: a CPU inference engine for decoder-only LLMs that can be traced and seen.

    import workbench
    model = workbench.load("smollm2-135m", threads=2)
    gen = model.generate("The capital of France is", max_tokens=32)
    with workbench.trace("op") as t:
        model.generate("Hello", max_tokens=8)
    workbench.sweep({"sources": ["smollm2-135m"], "threads": [1, 2]}, "sweep.parquet")

The top-level names load lazily, so `import workbench.trace` (or the CLI's `--help`)
does not pay for numba and the model code.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load": ("workbench.api", "load"),
    "Model": ("workbench.api", "Model"),
    "Generation": ("workbench.engine.generator", "Generation"),
    "WorkbenchError": ("workbench.errors", "WorkbenchError"),
    "machine_bandwidth": ("workbench.machine", "machine_bandwidth"),
    "compare": ("workbench.comparison", "compare"),
}

# `workbench.trace(...)` is the tracing context manager. Importing the subpackage first
# and then rebinding the name keeps the function in place of the module attribute.
from workbench.trace import tracing as trace  # noqa: E402


def __getattr__(name):
    if name == "sweep":  # a callable module: workbench.sweep(grid, out) and workbench.sweep.load(path)
        import importlib

        return importlib.import_module("workbench.sweep")
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = [*_EXPORTS, "sweep", "trace"]
