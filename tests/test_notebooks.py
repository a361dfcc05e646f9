"""The numbered notebooks, as committed: stripped, parameterized, asserting, thin.

These checks read the .ipynb JSON only (no Jupyter needed); running the notebooks is
`WORKBENCH_NB_SMALL=1 pytest --nbmake notebooks/0*.ipynb` (see notebooks/README.md).

What "no library code" means here, decided once:
- no `class` anywhere, and no `def` except in `04_kernel_lab`, whose point is kernels
  written by the user: there every `def` must be a numba `@njit` kernel (helpers are
  lambdas, as in the other notebooks);
- `numba` is imported by `04_kernel_lab` only;
- workbench is reached through its public surface: no private names (`._x`, `import _x`)
  and none of the engine's inner objects (`model.net`, `model.state`).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
KERNEL_LAB = "04_kernel_lab"
EXPECTED = ["01_quickstart", "02_anatomy_of_a_decode_step", "03_quantization_threshold", "04_kernel_lab",
            "05_lm_head_bottleneck", "06_versus_llama_cpp", "07_sweep"]
# An executed notebook with a plotly figure carries plotly.js inline (megabytes).
PLOTLY_BLOB = re.compile(r"plotly\.js v\d|window\.PlotlyConfig|application/vnd\.plotly\.v1\+json")
PRIVATE = re.compile(r"\.(_[A-Za-z]\w*)|\b(?:model|m|self)\.(?:net|state)\b")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _code(nb: dict) -> list[str]:
    return [_source(c) for c in nb["cells"] if c["cell_type"] == "code"]


def _tree(src: str) -> ast.Module:
    # IPython magics and shell escapes are not Python; the notebooks use none, but do not choke on one
    return ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines()))


def test_the_numbered_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return request.param, _load(request.param)


def test_outputs_are_stripped(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    assert not PLOTLY_BLOB.search(path.read_text(encoding="utf-8")), f"{path.name} carries plotly.js or figure data"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} carries saved widget state"


def test_first_code_cell_holds_the_size_parameters(notebook):
    path, nb = notebook
    first = _code(nb)[0]
    assert "WORKBENCH_NB_SMALL" in first and "SEED" in first, f"{path.name}: the first code cell sets the sizes"
    assert nb["cells"][0]["cell_type"] == "markdown" and _source(nb["cells"][0]).startswith("# "), \
        f"{path.name} opens with a markdown title"


def test_imports_workbench_and_asserts(notebook):
    path, nb = notebook
    code = "\n".join(_code(nb))
    assert re.search(r"^\s*(import workbench|from workbench)", code, re.M), f"{path.name} does not use workbench"
    n_asserts = sum(isinstance(node, ast.Assert) for src in _code(nb) for node in ast.walk(_tree(src)))
    assert n_asserts >= 3, f"{path.name} has {n_asserts} asserts: check the numbers it shows"


def test_cells_that_print_also_assert(notebook):
    # a cell that only prints shows a number nobody checks
    path, nb = notebook
    for i, src in enumerate(_code(nb)):
        tree = _tree(src)
        prints = any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print" for n in ast.walk(tree))
        if prints:
            assert any(isinstance(n, ast.Assert) for n in ast.walk(tree)), f"{path.name} code cell {i} prints, asserts nothing"


def test_no_library_code(notebook):
    path, nb = notebook
    lab = path.stem == KERNEL_LAB
    for i, src in enumerate(_code(nb)):
        tree = _tree(src)
        for node in ast.walk(tree):
            where = f"{path.name} code cell {i}, line {getattr(node, 'lineno', '?')}"
            assert not isinstance(node, ast.ClassDef), f"{where}: notebooks define no classes"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert lab, f"{where}: `def {node.name}` is library code; put it in workbench/ (or use a lambda)"
                decorators = [ast.unparse(d) for d in node.decorator_list]
                assert any(d.startswith(("njit", "numba.njit")) for d in decorators), \
                    f"{where}: in the kernel lab only numba kernels are defined, `def {node.name}` is not one"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert lab or not any(n and n.split(".")[0] == "numba" for n in names), \
                    f"{where}: numba kernels belong in the kernel lab (04) or in workbench/kernels"
                assert not any(n and any(part.startswith("_") for part in n.split(".")) for n in names), \
                    f"{where}: imports a private module or name"
        for line_no, line in enumerate(src.splitlines(), 1):
            code = line.split("#", 1)[0]
            m = PRIVATE.search(code)
            assert m is None or m.group(0) in ("._repr_html_",), \
                f"{path.name} code cell {i}, line {line_no}: {m.group(0)!r} reaches past the public API"


def test_sampling_is_seeded(notebook):
    path, nb = notebook
    code = "\n".join(_code(nb))
    assert "seed" in code.lower(), f"{path.name} sets no seed"
    for call in re.findall(r"temperature\s*=\s*([0-9.]+)", code):
        if float(call) > 0:
            assert re.search(r"seed\s*=", code), f"{path.name} samples without a seed"
    assert "np.random.rand(" not in code and "np.random.randn(" not in code, \
        f"{path.name}: use np.random.default_rng(SEED), not the global generator"


def test_readme_documents_the_parameters():
    readme = (NOTEBOOKS[0].parent / "README.md").read_text(encoding="utf-8")
    assert "WORKBENCH_NB_SMALL" in readme and "WORKBENCH_NB_THREADS" in readme
    for path in NOTEBOOKS:
        assert path.name in readme, f"notebooks/README.md does not list {path.name}"
