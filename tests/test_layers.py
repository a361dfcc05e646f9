"""The layering of DESIGN.md, enforced: imports flow downward only.

Each package may import workbench modules only from the packages listed for it (its
own included), and the heavy front-end or reference libraries stay out of the engine.
Read from the source with `ast`, so a lazy import inside a function counts too.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "workbench"
BASE = {"errors"}
ALLOWED = {
    "trace": {"trace"},  # a leaf: not even errors
    "formats": {"formats"},
    "kernels": {"kernels", "formats"},  # each weight format's layout, codec and kernels live here
    "quant": {"quant", "kernels", "formats"},  # the reference codecs' face, over the table of formats
    "nn": {"nn", "kernels", "quant", "formats", "trace"},
    "models": {"models", "nn", "kernels", "quant", "formats", "trace"},
    "engine": {"engine", "models", "nn", "kernels", "quant", "formats", "trace"},
    "convert": {"convert", "models", "quant", "formats"},
    "peers": {"peers", "machine"},  # the CPU name its build records
    "viz": {"viz", "trace"},
    "ui": {"ui", "api", "viz", "trace", "engine", "nn", "kernels", "formats", "convert", "machine"},
    # runs bench points (and through them `workbench.load`) on workers; plots of its records live in viz
    "sweep": {"sweep", "bench", "machine", "engine", "nn", "kernels"},
}
# libraries only the face (viz, ui) may import; torch and transformers nowhere
FRONT_END = {"plotly", "ipywidgets", "IPython", "anywidget"}
NOWHERE = {"torch", "transformers", "llama_cpp"}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        yield path, rel.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path, layer", list(_modules()), ids=lambda v: str(v).split("workbench/")[-1])
def test_imports_flow_downward(path, layer):
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "workbench" and layer in ALLOWED and "." in name:
            target = name.split(".")[1]
            allowed = ALLOWED[layer] if layer == "trace" else ALLOWED[layer] | BASE
            assert target in allowed, f"{path.name} ({layer}) imports {name}"
        if layer not in ("viz", "ui"):
            assert top not in FRONT_END, f"{path.name} ({layer}) imports {name}"
        if not (layer == "peers" and top == "llama_cpp"):
            assert top not in NOWHERE, f"{path.name} imports {name}"
