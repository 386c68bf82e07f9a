"""How the package reads to the next engineer: every module imports on its own, and the
module-level import graph has no cycle (a cycle makes import order matter and hides layering
mistakes; see issue 14, "The house")."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "scarlet_ray"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of scarlet_ray, by dotted name."""
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top level, and inside module-level
    ``if``/``try``/``with`` blocks, but not in functions, classes or ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(stmts: list[ast.stmt]) -> None:
        for s in stmts:
            if isinstance(s, (ast.Import, ast.ImportFrom)):
                found.append(s)
            elif isinstance(s, ast.If):
                if not _is_type_checking(s.test):
                    walk(s.body)
                walk(s.orelse)
            elif isinstance(s, ast.Try):
                walk(s.body)
                for h in s.handlers:
                    walk(h.body)
                walk(s.orelse)
                walk(s.finalbody)
            elif isinstance(s, (ast.With, ast.AsyncWith)):
                walk(s.body)

    walk(tree.body)
    return found


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> package modules it imports at module level.

    ``import a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those edges count, except
    to the importer's own enclosing packages (a package's ``__init__`` importing its submodules,
    which import siblings, is the normal layout, not a cycle)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_pkg)}
        targets: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = _resolve(node, name, is_pkg)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for full in names:
                parts = full.split(".")
                for i in range(1, len(parts) + 1):
                    m = ".".join(parts[:i])
                    if m in modules and m != name and (m not in own or i == len(parts)):
                        targets.add(m)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative DFS, stable order)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if start in state:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_counts_parent_packages_but_not_own():
    graph = import_graph(package_modules())
    # datasets.wikidata imports scarlet_ray.records; the parent `scarlet_ray` is its own package
    assert "scarlet_ray" not in graph["scarlet_ray.datasets.wikidata"]
    assert "scarlet_ray.records" in graph["scarlet_ray.datasets.wikidata"]


def all_imports(path: Path, name: str) -> set[str]:
    """Every module ``name`` imports anywhere (functions included): for layering rules."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, is_pkg)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


# (importer prefix, forbidden prefixes): lower layers never reach up, not even lazily
LAYERS = [
    ("scarlet_ray.datasets", ("scarlet_ray.context", "scarlet_ray.synthesis",
                              "scarlet_ray.attribution", "scarlet_ray.training",
                              "scarlet_ray.evaluation", "scarlet_ray.distributed",
                              "scarlet_ray.commands", "scarlet_ray.pipeline", "scarlet_ray.cli")),
    ("scarlet_ray.sparql", ("scarlet_ray.",)),
    ("scarlet_ray.tasks", ("scarlet_ray.",)),
    ("scarlet_ray.formatting", ("scarlet_ray.",)),
]


def test_lower_layers_do_not_import_upper_ones():
    """The two circles of issue 14 (context.knowledge <-> datasets.wikidata, datasets.base ->
    synthesis.tasks) went through function-level imports, which the cycle check cannot see."""
    bad = []
    for name, path in package_modules().items():
        for prefix, forbidden in LAYERS:
            if name == prefix or name.startswith(prefix + "."):
                bad += [f"{name} imports {m}" for m in sorted(all_imports(path, name))
                        if m.startswith(forbidden)]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    cycle = find_cycle(import_graph(package_modules()))
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


@pytest.mark.slow
def test_every_module_imports_alone():
    """Each module in a fresh interpreter, one at a time (a module that only imports after
    another has been imported first fails here)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "TOKENIZERS_PARALLELISM": "false"}
    bad = []
    for m in sorted(package_modules()):
        r = subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=300)
        if r.returncode:
            bad.append(f"{m}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    assert not bad, "modules that fail to import alone:\n" + "\n".join(bad)
