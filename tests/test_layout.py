"""The code's layout, read from the source with `ast`: no import cycles between the project's
modules, a web UI that never reaches paddle (also checked by importing it in a subprocess), and no
module too long to read.

The import graph covers the packages `trainer`, `models`, `webui`, `plumbing` and `app.py`. An edge
is module-level when it runs as the module is imported (class bodies and `try` blocks included) and
lazy when it sits in a function. Cycles are checked twice: through module-level edges only (a cycle
there can break an import outright, depending on which module comes first) and through every edge,
since a lazy import that closes a loop still ties the two modules into one unit neither can be
understood, tested or moved without.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trainer", "models", "webui", "plumbing")
SCRIPTS = ("app",)  # top-level modules that belong to the project
PADDLE = ("paddle", "paddleformers")
MAX_LINES = 600


@dataclass(frozen=True)
class Edge:
    source: str
    target: str  # a project module, or the top-level name of anything else
    line: int
    lazy: bool  # inside a function: runs when the function is called, not when the module is imported

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}" + (" (in a function)" if self.lazy else "")


def module_files() -> dict[str, Path]:
    """Module name -> file for every module of the project."""
    found = {name: ROOT / f"{name}.py" for name in SCRIPTS}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """(node, lazy) for every import statement that can run; `if TYPE_CHECKING:` bodies never do."""
    def walk(node: ast.AST, lazy: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    yield from walk(ast.Module(body=[other], type_ignores=[]), lazy)
            else:
                inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                yield from walk(child, inner)

    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules an import statement loads: project modules by full name (a submodule brings its
    packages), anything else by its top-level name."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        # `from pkg import name` loads pkg.name when that is a module, else takes a name from pkg
        names = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
    out = []
    for name in names:
        parts = name.split(".")
        if parts[0] not in known and not any(name.startswith(p + ".") or name == p for p in PACKAGES):
            out.append(parts[0])
            continue
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known:
                out.append(prefix)
    return list(dict.fromkeys(out))


@cache
def import_edges() -> tuple[Edge, ...]:
    files = module_files()
    known = set(files)
    edges = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy in _imports(tree):
            for target in _targets(node, module, path.name == "__init__.py", known):
                if target != module:
                    edges.append(Edge(module, target, node.lineno, lazy))
    return tuple(edges)


def graph(lazy_too: bool, edges: tuple[Edge, ...] | None = None, modules: set[str] | None = None
          ) -> dict[str, list[Edge]]:
    """Project module -> its edges to project modules (module-level ones only unless `lazy_too`)."""
    known = set(module_files()) if modules is None else modules
    out: dict[str, list[Edge]] = {m: [] for m in known}
    for edge in import_edges() if edges is None else edges:
        if edge.target in known and (lazy_too or not edge.lazy):
            out[edge.source].append(edge)
    return out


def strongly_connected(g: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's components with more than one module, each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        # iterative, so a deep package cannot hit the recursion limit
        work = [(v, iter(g[v]))]
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        while work:
            node, edges = work[-1]
            for edge in edges:
                w = edge.target
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(g[w])))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(found)


def shortest_cycle(g: dict[str, list[Edge]], start: str, members: set[str]) -> list[Edge]:
    """A shortest chain of edges from `start` back to itself inside one component."""
    paths = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for edge in g[v]:
                if edge.target not in members:
                    continue
                if edge.target == start:
                    return paths[v] + [edge]
                if edge.target not in paths:
                    paths[edge.target] = paths[v] + [edge]
                    nxt.append(edge.target)
        frontier = nxt
    raise AssertionError(f"{start} is in a component but on no cycle")


def describe_cycles(lazy_too: bool) -> str:
    g = graph(lazy_too)
    lines = []
    for component in strongly_connected(g):
        members = set(component)
        lines.append(f"modules importing each other: {', '.join(component)}")
        shown: set[tuple[str, ...]] = set()
        for start in component:
            cycle = shortest_cycle(g, start, members)
            key = tuple(sorted(f"{e.source}>{e.target}" for e in cycle))
            if key not in shown:
                shown.add(key)
                lines.append("  cycle: " + " ; ".join(str(e) for e in cycle))
    return "\n".join(lines)


def test_the_graph_sees_the_imports_it_must():
    # Guards the parser: if these known edges vanished, the tests below would pass on an empty graph.
    edges = {(e.source, e.target, e.lazy) for e in import_edges()}
    assert ("webui.app", "webui.train_tab", False) in edges
    assert any(s == "app" and t == "webui.app" for s, t, _ in edges), "app.py imports the UI"
    assert any(t == "paddle" and not lazy for _, t, lazy in edges), "the model code imports paddle"
    assert any(s.startswith("trainer.data.") for s, _, _ in edges), "subpackages are read too"
    assert sum(map(len, graph(lazy_too=True).values())) > 50
    # ... and guards the searches on small graphs whose answers are known
    loop = (Edge("a", "b", 1, False), Edge("b", "a", 2, True))
    assert strongly_connected(graph(True, loop, {"a", "b"})) == [["a", "b"]]
    assert strongly_connected(graph(False, loop, {"a", "b"})) == []
    ui = (Edge("app", "webui.app", 9, True), Edge("webui.app", "trainer.x", 3, False),
          Edge("trainer.x", "paddle", 5, False), Edge("trainer.y", "paddle", 1, False),
          Edge("webui.app", "trainer.y", 4, True))
    assert paddle_chains(ui, {"app", "webui.app", "trainer.x", "trainer.y"}) == [
        "app:9 -> webui.app (in a function) ; webui.app:3 -> trainer.x ; trainer.x:5 -> paddle"]


def test_no_import_cycle_at_import_time():
    cycles = describe_cycles(lazy_too=False)
    assert not cycles, "module-level imports go round in a circle:\n" + cycles


def test_no_import_cycle_even_through_imports_inside_functions():
    cycles = describe_cycles(lazy_too=True)
    assert not cycles, "imports (module-level or in functions) go round in a circle:\n" + cycles


def paddle_chains(edges: tuple[Edge, ...], modules: set[str]) -> list[str]:
    """For each module that imports paddle and that the UI process reaches when it starts, the chain
    of imports that gets there."""
    g = graph(False, edges, modules)
    direct = {e.source: e for e in edges if not e.lazy and e.target in PADDLE}
    # `python app.py` runs main(), so app.py's imports inside functions run at start-up as well
    starts: dict[str, list[Edge]] = {"app": []}
    for edge in edges:
        if edge.source == "app" and edge.lazy and edge.target in modules:
            starts.setdefault(edge.target, [edge])
    for module in sorted(modules):
        if module == "webui" or module.startswith("webui."):
            starts.setdefault(module, [])
    chains = []
    seen = dict(starts)
    frontier = list(starts)
    while frontier:  # breadth first, so each chain shown is a shortest one
        nxt = []
        for v in frontier:
            if v in direct:
                chains.append(" ; ".join(str(e) for e in seen[v] + [direct[v]]))
            for edge in g[v]:
                if edge.target not in seen:
                    seen[edge.target] = seen[v] + [edge]
                    nxt.append(edge.target)
        frontier = nxt
    return chains


def test_the_web_ui_reaches_no_module_that_imports_paddle():
    chains = paddle_chains(import_edges(), set(module_files()))
    assert not chains, "the UI process would import paddle:\n" + "\n".join(chains)


def test_importing_the_web_ui_loads_no_paddle():
    # The same promise checked by running it: catches a path through a third-party module that the
    # source walk cannot follow.
    ui_modules = sorted(m for m in module_files() if m == "webui" or m.startswith("webui."))
    code = ("import importlib, sys\n"
            f"for name in {['app', *ui_modules]!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'paddleformers')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout[-2000:]


def test_no_module_is_over_600_lines():
    long = {str(path.relative_to(ROOT)): n for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by what they own): {long}"
