"""The layers point one way: ``schemas ← runtime ← {router.engine ← router.planning ←
router.shell / router.api, adapters} ← switchboard ← tools``, and no module imports itself back through others.

Every import counts, module-level or inside a function: a lazy import is still a
dependency, and hiding a cycle behind one is what this test is for.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "runtime", "router", "adapters", "switchboard", "tools")

#: Layer (a package or subpackage) -> the first-party layers its modules may import.
ALLOWED: dict[str, frozenset[str]] = {
    "schemas": frozenset({"schemas"}),
    "router": frozenset(),  # the package's docstring only
    "runtime": frozenset({"schemas", "runtime"}),
    "router.engine": frozenset({"schemas", "router.engine"}),
    "router.shell": frozenset(
        {"schemas", "runtime", "router.engine", "router.planning", "router.shell"}
    ),
    "router.api": frozenset(
        {"schemas", "runtime", "router.engine", "router.planning", "router.api", "router.console"}
    ),
    "router.console": frozenset(
        {"schemas", "runtime", "router.engine", "router.api", "router.console"}
    ),
    "router.planning": frozenset({"schemas", "runtime", "router.engine", "router.planning"}),
    "adapters": frozenset({"schemas", "runtime", "adapters"}),
    "switchboard": frozenset(
        {
            "schemas",
            "runtime",
            "router.engine",
            "router.shell",
            "router.api",
            "router.console",
            "router.planning",
            "adapters",
            "switchboard",
        }
    ),
    "tools": frozenset(
        {
            "schemas",
            "runtime",
            "router.engine",
            "router.shell",
            "router.api",
            "router.console",
            "router.planning",
            "adapters",
            "switchboard",
            "tools",
        }
    ),
}


def layer_of(module: str) -> str:
    """The most specific layer ``module`` belongs to."""
    parts = module.split(".")
    for depth in (2, 1):
        candidate = ".".join(parts[:depth])
        if candidate in ALLOWED:
            return candidate
    raise AssertionError(f"{module} is in no layer: add it to ALLOWED")


def modules(root: Path) -> dict[str, Path]:
    """First-party module name -> file, under ``root``."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The first-party modules ``path`` imports (``from a import b`` is ``a.b`` when that
    is a module, else ``a``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in known else node.module


def violations(root: Path) -> list[str]:
    known = modules(root)
    found = []
    for module, path in sorted(known.items()):
        allowed = ALLOWED[layer_of(module)]
        for imported in imports_of(path, known):
            if layer_of(imported) not in allowed:
                found.append(f"{module} imports {imported}")
    return found


def cycles(root: Path) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan)."""
    known = modules(root)
    graph = {
        m: sorted({i for i in imports_of(p, known) if i in known and i != m})
        for m, p in known.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph[node]:
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_import_points_down_the_layers() -> None:
    assert violations(ROOT) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(ROOT) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("router/shell/extra.py", "import switchboard\n", "router.shell.extra imports switchboard"),
        (
            "router/api/extra.py",
            "def f():\n    from switchboard.config import Config\n",
            "router.api.extra imports switchboard.config",
        ),
        (
            "runtime/extra.py",
            "from router.engine import apply\n",
            "runtime.extra imports router.engine",
        ),
        (
            "adapters/extra.py",
            "from router.shell import store\n",
            "adapters.extra imports router.shell.store",
        ),
        ("switchboard/extra.py", "from tools import cli\n", "switchboard.extra imports tools.cli"),
        ("schemas/extra.py", "import runtime.kafka\n", "schemas.extra imports runtime.kafka"),
    ],
)
def test_an_import_against_the_layers_is_found(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            copy = tmp_path / path.relative_to(ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(path.read_text())
    (tmp_path / module).write_text(source)
    assert violations(tmp_path) == [expected]


def test_a_cycle_is_found(tmp_path: Path) -> None:
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "__init__.py").write_text("")
    (tmp_path / "runtime" / "a.py").write_text("from runtime import b\n")
    (tmp_path / "runtime" / "b.py").write_text("def f():\n    import runtime.a\n")
    assert cycles(tmp_path) == [["runtime.a", "runtime.b"]]
