"""`make docs` (issue 19): every tutorial executes with small settings and renders to a
static HTML page that shows each of its charts.

A chart is a code cell whose last statement is the bare name `fig` (how the notebooks
show a figure); the page must hold one plotly plot per such cell and plotly.js inline
once. Executing a notebook takes minutes, so these are `slow` tests, one per notebook."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import build_docs  # noqa: E402


def expected_charts(path: Path) -> int:
    count = 0
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        src = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        body = ast.parse(src).body if src.strip() else []
        if body and isinstance(body[-1], ast.Expr) and isinstance(body[-1].value, ast.Name) \
                and body[-1].value.id == "fig":
            count += 1
    return count


def test_docs_target_and_build_output_is_ignored():
    make = subprocess.run(["make", "-n", "docs"], cwd=ROOT, capture_output=True, text=True)
    assert make.returncode == 0 and "scripts/build_docs.py" in make.stdout
    assert subprocess.run(["git", "check-ignore", "-q", "docs/_build/x.html"], cwd=ROOT).returncode == 0


def test_the_notebooks_that_draw_are_counted():
    counts = {p.stem: expected_charts(p) for p in NOTEBOOKS}
    assert counts["02_anatomy_of_a_decode_step"] == 5 and counts["04_kernel_lab"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_renders_with_its_charts(notebook, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_NB_SMALL", "1")
    monkeypatch.setenv("PLOTLY_RENDERER", build_docs.RENDERERS["inline"])
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    page = build_docs.build(notebook, tmp_path)
    text = page.read_text(encoding="utf-8")
    charts = expected_charts(notebook)
    assert text.count("Plotly.newPlot(") == charts
    assert text.count("* plotly.js v") == (1 if charts else 0)
