"""Render the tutorials to static HTML, with their outputs and charts: `make docs`.

The notebooks are committed without outputs (an executed one carries megabytes of
plotly.js), so nobody could read a tutorial with its charts without running it. This
executes each `notebooks/0*.ipynb` in a fresh kernel with the small settings the tests
use (`WORKBENCH_NB_SMALL=1`), the working directory its own folder and this checkout
first on the path, and writes `docs/_build/<name>.html` plus an `index.html` linking them
(build output, not committed: `docs/_build/` is ignored).

Charts are plotly figures shown by the "notebook" renderer, so each page carries
plotly.js once, inline, and opens offline; `--plotlyjs cdn` references it instead.
A notebook that fails to run stops the build with its error (exit 1): a tutorial that
does not run is not published.

    python scripts/build_docs.py [NOTEBOOK...] [--out docs/_build] [--timeout 1200] [--plotlyjs inline|cdn]
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RENDERERS = {"inline": "notebook", "cdn": "notebook_connected"}


def build(notebook: Path, out_dir: Path, timeout: int = 1200) -> Path:
    """Execute `notebook` and write its HTML page into `out_dir`; return the page's path."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = nbformat.read(notebook, as_version=4)
    ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(
        nb, {"metadata": {"path": str(notebook.parent)}})
    body, _ = HTMLExporter().from_notebook_node(nb)
    page = out_dir / f"{notebook.stem}.html"
    page.write_text(body, encoding="utf-8")
    return page


def index(pages: list[Path], out_dir: Path) -> Path:
    items = "".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>' for p in pages)
    path = out_dir / "index.html"
    path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>workbench tutorials</title>"
                    f"</head><body><h1>workbench tutorials</h1><ul>{items}</ul></body></html>\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/0*.ipynb")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "_build")
    p.add_argument("--timeout", type=int, default=1200, help="seconds a cell may take")
    p.add_argument("--plotlyjs", choices=list(RENDERERS), default="inline")
    args = p.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("0*.ipynb"))
    # the kernels inherit this environment: small settings, this checkout, the chart renderer
    os.environ["WORKBENCH_NB_SMALL"] = "1"
    os.environ["PLOTLY_RENDERER"] = RENDERERS[args.plotlyjs]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    args.out.mkdir(parents=True, exist_ok=True)
    pages = []
    for nb in notebooks:
        print(f"docs: running {nb.name}", file=sys.stderr, flush=True)
        try:
            pages.append(build(nb.resolve(), args.out, args.timeout))
        except Exception as e:  # a cell's error, a timeout, a dead kernel: one line, then stop
            print(f"docs: {nb.name} failed: {type(e).__name__}: {str(e).strip().splitlines()[-1:] or ''}",
                  file=sys.stderr)
            return 1
    print(index(pages, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
