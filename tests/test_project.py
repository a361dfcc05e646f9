"""The project's set-up contracts: environment.yml mirrors pyproject, CI runs make test."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["models"])
    for req in extras["test"]:  # `workbench[viz,ui]` stands for those extras' requirements
        if req.startswith("workbench["):
            for extra in req[len("workbench["):-1].split(","):
                wanted |= set(extras[extra])
        else:
            wanted.add(req)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pinned = {p for p in pip if not p.startswith("-e")}
    assert pinned == wanted, f"only in environment.yml: {pinned - wanted}; only in pyproject: {wanted - pinned}"
    assert "-e ." in pip
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
