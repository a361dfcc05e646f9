"""The package's shape, enforced: short modules and no import cycles between them.

A module over 500 lines has stopped being one idea (STYLE.md: keep modules a few hundred
lines). An import cycle means two modules cannot be understood, tested or moved apart,
and numba projects grow them easily because jitted functions import each other. Both
are read from the source with `ast`: imports inside functions count (a lazy import is
still a dependency), imports under `if TYPE_CHECKING:` do not (they never run).

Edges are the modules an import statement names: `import a.b`, `from a import b` (the
submodule `a.b` when there is one, else the package `a`), relative imports resolved.
The parent packages Python runs on the way are not edges, so a submodule importing its
own package's `__init__` is a cycle only when that `__init__` imports it back.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "workbench"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST):
    """Every Import / ImportFrom under `node`, skipping the bodies of `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub
                yield from _import_nodes(sub)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def _targets(name: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The workbench modules one import statement of module `name` names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:
            found.add(sub)
        elif source in modules:
            found.add(source)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = set()
        for node in _import_nodes(tree):
            edges |= _targets(name, path, node, modules)
        graph[name] = edges - {name}
    return graph


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): the modules
    that reach each other through imports."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _path_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth first)."""
    start = min(component)
    came_from = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return path[::-1] + [start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"{sorted(component)} is not a cycle")


def _where(module: str) -> str:
    return str(_modules()[module].relative_to(PKG.parent))


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(PKG.parent)): n for p in sorted(PKG.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, "over 500 lines (split along a real seam): " + \
        ", ".join(f"{p} ({n})" for p, n in long.items())


def _describe(graph: dict[str, set[str]], component: set[str]) -> str:
    """One cycle of the component as files, and the other modules caught in it."""
    cycle = _path_within(graph, component)
    rest = sorted(component - set(cycle))
    return "  " + " -> ".join(_where(m) for m in cycle) + \
        (f"\n    (in the same knot: {', '.join(_where(m) for m in rest)})" if rest else "")


def test_no_import_cycles():
    graph = _graph()
    components = _components(graph)
    assert not components, "import cycles:\n" + "\n".join(_describe(graph, c) for c in components)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": {"b"}, "e": {"e", "a"}}
    assert _components(graph) == [{"a", "b", "c", "d"}]  # self-loops are dropped by _graph
    assert _path_within(graph, {"a", "b", "c", "d"}) == ["a", "b", "c", "a"]


def test_imports_are_resolved():
    modules = {name: PKG / "unused" for name in ("workbench.x", "workbench.x.y", "workbench.x.w", "workbench.z",
                                                 "workbench.v", "workbench.t")}
    here = ast.parse("from .. import z\nfrom workbench.x import thing\nimport workbench.v\n"
                     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import workbench.t\n"
                     "else:\n    from . import w\n"
                     "def f():\n    from .y import g\n")
    got = set()
    for node in _import_nodes(here):
        got |= _targets("workbench.x", PKG / "x" / "__init__.py", node, modules)
    assert got == {"workbench.z", "workbench.x", "workbench.v", "workbench.x.w", "workbench.x.y"}
