"""The house rules, read from the package's own source (ast), so a change that breaks one fails here.

- no import cycle between modules of playground/ (imports inside functions count: a lazy import that
  only hides a cycle is still one);
- gradio only in ui/; SQLAlchemy and Alembic only in store/; torch, transformers, bitsandbytes and
  accelerate only in the model-loading and local-backend rooms (models/, backends/local/);
- nothing reaches into ui/ but the web server that mounts the page;
- no module imports another module's `_private` name;
- no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "playground"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80

# Third-party packages and the rooms that may import them (module-name prefixes).
CONFINED = {
    "gradio": ("playground.ui",),
    "gradio_client": ("playground.ui",),
    "sqlalchemy": ("playground.store",),
    "alembic": ("playground.store",),
    "psycopg": ("playground.store",),
    "prometheus_client": ("playground.web.metrics",),
    "torch": ("playground.models", "playground.backends.local"),
    "transformers": ("playground.models", "playground.backends.local"),
    "bitsandbytes": ("playground.models", "playground.backends.local"),
    "accelerate": ("playground.models", "playground.backends.local"),
    # The graders' checkers: run in the checker worker, imported nowhere else.
    "math_verify": ("playground.evaluation",),
    "latex2sympy2_extended": ("playground.evaluation",),
    "sympy": ("playground.evaluation",),
    "reasoning_gym": ("playground.evaluation",),
    "pyarrow": ("playground.evaluation",),
}
# Who may import the page.
UI_IMPORTERS = ("playground.ui", "playground.web.server")
# Exceptions to the transformers rule, each with its reason.
ALLOWED = {
    # The remote backend loads only a tokenizer (never a model) to count tokens when a server sends no
    # usage report; it is optional and lazy, and the tokenizer has no torch behind it.
    ("playground.backends.remote.tokens", "transformers"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


MODULES = package_modules()


def imports(name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the module, nested ones too."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names], node.lineno))
    return out


def internal_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        deps = set()
        for target, names, _ in imports(name):
            if not target.startswith("playground"):
                continue
            hits = {f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES}
            deps |= hits or ({target} if target in MODULES else set())
        edges[name] = deps - {name}
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def in_room(name: str, rooms: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in rooms)


def test_the_rules_see_the_whole_package():
    # A rule that reads nothing passes everything: make sure the walk finds the rooms.
    for room in ("playground.lanes", "playground.ui.app", "playground.store.store", "playground.backends.local.engine"):
        assert room in MODULES
    assert len(internal_edges()["playground.app.service"]) >= 3


def test_no_import_cycles():
    assert find_cycles(internal_edges()) == []


def test_find_cycles_finds_one():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("library", sorted(CONFINED))
def test_libraries_stay_in_their_rooms(library):
    rooms = CONFINED[library]
    strays = [f"{name}:{line}" for name in MODULES for target, _, line in imports(name)
              if target.split(".")[0] == library and not in_room(name, rooms) and (name, library) not in ALLOWED]
    assert not strays, f"{library} is imported outside {', '.join(rooms)}: " + ", ".join(strays)


def test_only_the_server_reaches_into_the_page():
    strays = [f"{name}:{line}" for name in MODULES for target, _, line in imports(name)
              if in_room(target, ("playground.ui",)) and not in_room(name, UI_IMPORTERS)]
    assert not strays, "only the web server mounts the page: " + ", ".join(strays)


def test_no_module_imports_another_modules_private_names():
    strays = []
    for name in MODULES:
        for target, names, line in imports(name):
            if not target.startswith("playground") or target == name:
                continue
            strays += [f"{name}:{line} {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not strays, "make these public (and name them for what they promise) or keep them home: " + ", ".join(strays)


def test_modules_stay_small():
    big = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, f"split these into rooms of at most {MAX_MODULE_LINES} lines: {big}"


def test_functions_stay_short():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({n} lines)")
    assert not long, f"split these into functions of at most {MAX_FUNCTION_LINES} lines: " + ", ".join(long)
