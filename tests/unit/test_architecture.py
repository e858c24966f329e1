"""The shape of the code: layers that import only downward, no cycles, small rooms."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("detectors", "streamer", "evaluation")
MAX_MODULE_LINES = 500
# ~300: ModelMonitor, the coordinator, is the largest (323, 40 of them its doctests).
MAX_CLASS_LINES = 330


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules this module imports, at any level but under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    checking_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module (the package is already
            # being imported by then); `from module import name`, the module
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in submodules if t in known] or [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_no_module_imports_itself_through_others() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    # A package's __init__ re-exports its modules: importing a package means them too.
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt]
                # a package importing its own submodules is the re-export, not a cycle
                if not all(b.startswith(a + ".") for a, b in itertools.pairwise(cycle)):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("detectors", ("streamer", "evaluation", "kafka", "prometheus_client", "confluent_kafka")),
        ("streamer", ("evaluation",)),
    ],
)
def test_layers_import_only_downward(package: str, forbidden: tuple[str, ...]) -> None:
    allowed_upward = {"streamer.cli", "streamer.demo"}  # the commands run the evaluation
    modules = _modules()
    leaks = []
    for name, path in modules.items():
        if not name.startswith(package) or name in allowed_upward:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            leaks += [f"{name} imports {root}" for root in roots if root in forbidden]
    assert not leaks


def test_no_large_rooms() -> None:
    large = []
    for name, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            large.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    large.append(f"{name}.{node.name}: {length} lines")
    assert not large, "split these by concern:\n" + "\n".join(large)
