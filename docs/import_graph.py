"""Draws the import graph of core/ at package level and writes docs/import-graph.md.

Knows: how to read every module under core/ with `ast` (no import, so no torch, no side
effects), resolve its absolute and relative imports (lazy imports inside functions included),
and fold modules into units: a subpackage (`core.reer`) or a top-level module (`core.store`).
Does not know: what the modules do, or anything outside core/ except the top-level names of
third-party imports (kept so a test can check that core never imports gradio or plotly).

Regenerate the page (one command, from the repository root):

    python docs/import_graph.py

`--check` writes nothing and exits 1 when docs/import-graph.md is not what it would write.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"
PAGE = ROOT / "docs" / "import-graph.md"
COMMAND = "python docs/import_graph.py"
ENGINES = ("core.reer", "core.r2")  # drawn side by side; the page says whether they import each other
COUNTERPARTS = {"search": "loop"}  # modules of different names that play the same part (the engine's generator)


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to an absolute module name."""

    module: str  # importing module, e.g. "core.reer.search"
    target: str  # imported module (or module.name for `from m import name`), e.g. "core.models.lm"
    line: int  # line number in the importing file


def module_name(path: Path, root: Path = ROOT) -> str:
    """Dotted name of a .py file under root: core/reer/search.py -> core.reer.search."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules(core: Path = CORE) -> list[Path]:
    """Every .py file under core/, sorted, caches skipped."""
    return sorted(p for p in core.rglob("*.py") if "__pycache__" not in p.parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """Every import in one file, anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module)
                    if node.level else node.module or "")
            found += [Import(module, f"{base}.{alias.name}" if alias.name != "*" else base, node.lineno)
                      for alias in node.names]
    return found


def unit_of(name: str, units: set[str]) -> str | None:
    """The longest unit that is name or a prefix of it (core.reer.search.X -> core.reer)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in units:
            return ".".join(parts[:n])
    return None


def units_of(core: Path = CORE, root: Path = ROOT) -> set[str]:
    """core itself, each subpackage of core, and each top-level module of core."""
    units = {"core"}
    for child in core.iterdir():
        if child.is_dir() and (child / "__init__.py").exists():
            units.add(module_name(child / "__init__.py", root))
        elif child.suffix == ".py" and child.name != "__init__.py":
            units.add(module_name(child, root))
    return units


def graph(core: Path = CORE, root: Path = ROOT) -> dict[str, set[str]]:
    """unit -> the other units it imports (every unit present, possibly with no edges)."""
    units = units_of(core, root)
    edges: dict[str, set[str]] = {u: set() for u in units}
    for path in core_modules(core):
        for imp in imports_of(path, root):
            src, dst = unit_of(imp.module, units), unit_of(imp.target, units)
            if src and dst and dst != src and dst != "core":
                edges[src].add(dst)
    return edges


def third_party(core: Path = CORE, root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level name of every non-core import -> the core modules that import it."""
    out: dict[str, set[str]] = {}
    for path in core_modules(core):
        for imp in imports_of(path, root):
            top = imp.target.split(".")[0]
            if top != "core":
                out.setdefault(top, set()).add(imp.module)
    return out


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles between units: each strongly connected group of two or more (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(u: str) -> None:
        index[u] = low[u] = len(index)
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if v not in index:
                visit(v)
                low[u] = min(low[u], low[v])
            elif v in stack:
                low[u] = min(low[u], index[v])
        if low[u] == index[u]:
            group = []
            while True:
                v = stack.pop()
                group.append(v)
                if v == u:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for u in sorted(edges):
        if u not in index:
            visit(u)
    return sorted(out)


def _node(unit: str) -> str:
    return unit.replace(".", "_")


def _label(unit: str, core: Path) -> str:
    """The unit's path from the repository root: core/reer/ or core/store.py."""
    path = unit.replace(".", "/")
    return path + "/" if (core.parent / path).is_dir() else path + ".py"


def _modules_of(unit: str, core: Path) -> list[str]:
    folder = core.parent / unit.replace(".", "/")
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def _mirror_rows(left: list[str], right: list[str]) -> list[tuple[str, str]]:
    """Modules both sides have, on one row each, then COUNTERPARTS; then each side's own."""
    rows = [(m, m) for m in left if m in right]
    rows += [(a, b) for a, b in COUNTERPARTS.items() if a in left and b in right]
    paired = {m for row in rows for m in row}
    own_left, own_right = [m for m in left if m not in paired], [m for m in right if m not in paired]
    return rows + list(itertools.zip_longest(own_left, own_right, fillvalue=""))


def render(edges: dict[str, set[str]], core: Path = CORE) -> str:
    """The Markdown page: the command, the engines' mutual imports, a text list, a Mermaid graph."""
    edges = {u: t for u, t in edges.items() if u != "core" or t}  # core/__init__.py only if it imports
    a, b = ENGINES
    between = [f"{_label(x, core)} imports {_label(y, core)}"
               for x, y in ((a, b), (b, a)) if y in edges.get(x, set())]
    verdict = "no import between them, in either direction." if not between else "; ".join(between) + "."
    lines = [
        "# Import graph of core/",
        "",
        "Written by `docs/import_graph.py` from the source (`ast`, nothing imported); do not edit.",
        f"Regenerate after moving code: `{COMMAND}` (`tests/repo/test_layout.py` fails when this page is stale).",
        "",
        "One node per subpackage of `core/` (`core/reer/`) or top-level module (`core/store.py`); an arrow",
        "A --> B means some module of A imports some module of B (lazy imports included).",
        "",
        f"The two engines, `{_label(a, core)}` and `{_label(b, core)}`: {verdict}",
        "",
        "Circles between packages: " + ("; ".join(" <-> ".join(_label(u, core) for u in c) for c in circles(edges))
                                       or "none.") + "",
        "",
        "## As text",
        "",
        "```",
    ]
    width = max(len(_label(u, core)) for u in edges)
    for unit in sorted(edges):
        targets = ", ".join(_label(t, core) for t in sorted(edges[unit])) or "(nothing in core)"
        lines.append(f"{_label(unit, core):<{width}}  imports  {targets}")
    lines += ["```", "", "## The engines' modules, side by side", "", f"| {_label(a, core)} | {_label(b, core)} |", "|---|---|"]
    for row in _mirror_rows(*(_modules_of(u, core) for u in ENGINES)):
        lines.append("| " + " | ".join(f"`{m}.py`" if m else "" for m in row) + " |")
    lines += ["", "## As a diagram", "", "```mermaid", "flowchart TB"]
    lines += ["  subgraph engines [the two engines, side by side]", "    direction LR"]
    lines += [f'    {_node(u)}["{_label(u, core)}"]' for u in ENGINES if u in edges]
    lines += ["  end"]
    lines += [f'  {_node(u)}["{_label(u, core)}"]' for u in sorted(edges) if u not in ENGINES]
    lines += [f"  {_node(u)} --> {_node(t)}" for u in sorted(edges) for t in sorted(edges[u])]
    lines += ["```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/import-graph.md from core/'s imports.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale; write nothing")
    args = parser.parse_args(argv)
    text = render(graph())
    if args.check:
        stale = not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text
        print(f"{PAGE.relative_to(ROOT)} is {'stale: run ' + COMMAND if stale else 'up to date'}")
        return 1 if stale else 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
