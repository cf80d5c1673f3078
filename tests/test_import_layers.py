"""The package's import layers, checked on the source with ``ast``.

Layers, bottom to top (README, "Layout"):

    base      maml_depth (the package), maml_depth.errors, maml_depth._checks, maml_depth._io
    theory    maml_depth.theory
    numerics  maml_depth.numerics
    common    maml_depth.common                      (the shared layer)
    peers     maml_depth.validation, maml_depth.paper_figures, maml_depth.sweep,
              maml_depth.experiments, maml_depth.benchmarks   (never import each other)
    cli       maml_depth.cli, maml_depth.commands, maml_depth.__main__

Every import of every module — at module level *and* inside functions — is mapped to the
module it loads (``from pkg import name`` loads ``pkg.name`` where that is a module) and so
to a layer. A module may import its own group and any lower layer; an import of a higher
layer, of another peer, or a cycle of imports between modules fails, naming the file and
line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]

#: group -> layer (higher imports lower)
LAYERS: dict[str, int] = {
    "base": 0, "theory": 1, "numerics": 2, "common": 3,
    "validation": 4, "paper_figures": 4, "sweep": 4, "experiments": 4, "benchmarks": 4,
    "cli": 5,
}
BASE = {"maml_depth", "maml_depth.errors", "maml_depth._checks", "maml_depth._io"}
CLI = ("maml_depth.cli", "maml_depth.commands", "maml_depth.__main__")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def group(module: str) -> str:
    if module in BASE:
        return "base"
    if module == CLI[0] or any(module == c or module.startswith(c + ".") for c in CLI):
        return "cli"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    raise AssertionError(f"module {module} belongs to no layer: add it to the layer table")


def package_dirs() -> dict[str, Path]:
    """``maml_depth.x`` -> its folder, from pyproject's package-dir table."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {pkg: ROOT / folder
            for pkg, folder in table["tool"]["setuptools"]["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    out: dict[str, Path] = {}
    for pkg, folder in package_dirs().items():
        for path in folder.glob("*.py"):
            name = pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"
            out[name] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module an import of ``name`` loads (its longest known prefix), None if external."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in known:
            return cand
        parts.pop()
    return None


def edges(known: dict[str, Path]) -> list[Edge]:
    out: list[Edge] = []
    for mod, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        pkg = mod if path.stem == "__init__" else mod.rsplit(".", 1)[0]
        for node in ast.walk(tree):  # every import, at module level and inside functions
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in known else base)
            for t in targets:
                r = _resolve(t, known)
                if r is not None and r != mod:
                    out.append(Edge(mod, r, path, node.lineno))
    return out


def violations(all_edges: list[Edge]) -> list[str]:
    bad = []
    for e in all_edges:
        gs, gt = group(e.source), group(e.target)
        if gs == gt:
            continue
        ls, lt = LAYERS[gs], LAYERS[gt]
        if lt > ls:
            bad.append(f"{e.where()}: {e.source} ({gs}) imports {e.target} ({gt}), a higher "
                       f"layer")
        elif lt == ls:
            bad.append(f"{e.where()}: {e.source} ({gs}) imports {e.target} ({gt}), a peer")
    return bad


def cycles(all_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> list[Edge]:
    return edges(modules())


def test_every_module_has_a_layer() -> None:
    for mod in modules():
        group(mod)


def test_no_upward_or_peer_imports(graph: list[Edge]) -> None:
    bad = violations(graph)
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_no_import_cycles(graph: list[Edge]) -> None:
    found = cycles(graph)
    where = {(e.source, e.target): e.where() for e in graph}
    lines = []
    for comp in found:
        inner = [f"{s} -> {t} ({where[(s, t)]})" for (s, t) in where
                 if s in comp and t in comp]
        lines.append("cycle among " + ", ".join(comp) + ":\n  " + "\n  ".join(inner))
    assert not found, "\n".join(lines)


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """The walker itself: a nested upward import and a peer import are both caught."""
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from maml_depth.validation import claims\n"
                   "\nfrom ..validation import report\n")
    other = tmp_path / "empty.py"
    other.write_text("")
    known = {"maml_depth.numerics.fake": src, "maml_depth.validation.claims": other,
             "maml_depth.validation.report": other, "maml_depth.validation": other}
    found = edges(known)
    assert any(e.source == "maml_depth.numerics.fake" and e.target ==
               "maml_depth.validation.claims" and e.line == 4 for e in found)
    assert any(e.target == "maml_depth.validation.report" and e.line == 6 for e in found)
    assert any("higher layer" in v for v in violations(found))
    peer = [Edge("maml_depth.sweep.x", "maml_depth.experiments.y", src, 1)]
    assert "a peer" in violations(peer)[0]
    loop = [Edge("maml_depth.sweep.a", "maml_depth.sweep.b", src, 1),
            Edge("maml_depth.sweep.b", "maml_depth.sweep.a", src, 2)]
    assert cycles(loop) == [["maml_depth.sweep.a", "maml_depth.sweep.b"]]
