"""The import graph of the curate package runs one way: no module imports, directly or through others, a module
that imports it back, and no subpackage does so with another; and the package installs from pyproject.toml without
remapping folders."""

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "curate"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """Returns the curate modules a module imports at run time (top level or inside functions), not those under
    `if TYPE_CHECKING:`."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs or ({node.module} & modules)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """Returns module -> the curate modules it imports."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imported(ast.parse(path.read_text()), modules) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Returns the strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_module_import_graph_has_no_cycles():
    graph = import_graph()
    assert len(graph) > 50 and "curate.stages.pool" in graph["curate.filters.dfn"]
    assert cycles(graph) == []


def package_of(module: str) -> str:
    """Returns the package a module belongs to: curate.<subpackage>, or the top-level module itself."""
    return ".".join(module.split(".")[:2])


def test_packages_import_one_way_too():
    graph: dict[str, set[str]] = {}
    for module, imports in import_graph().items():
        graph.setdefault(package_of(module), set()).update(package_of(i) for i in imports)
    graph = {package: imports - {package} for package, imports in graph.items()}
    assert "curate.models" in graph["curate.stages"] and "curate.stages" in graph["curate.concepts"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_command_line_imports_the_command_line():
    graph = import_graph()
    outside = {m: sorted(i for i in imports if i.startswith("curate.cli")) for m, imports in graph.items()
               if not m.startswith("curate.cli")}
    assert {m: i for m, i in outside.items() if i} == {}


def test_every_package_installs_from_its_own_folder():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-dir" not in setuptools
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    folders = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("*.py")}
    assert folders <= packages, f"folders without __init__.py: {sorted(folders - packages)}"


def test_the_command_line_parser_and_the_distill_package_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, curate.distill; from curate.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'ray', 'open_clip') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"  # `curate --help` and every command's options stay fast
