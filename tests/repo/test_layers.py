"""The code's floors hold: the LM protocol imports no backend, and no module imports from a floor
above its own (function-local imports included). No model."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from needs import ROOT

BACKENDS = ("core.models.hf", "core.models.server", "core.models.scripted", "core.models.ct2")


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from core import annotators`
    return out


# The floors, lowest first: a module imports only from its own floor or below (README, Layout).
FLOORS = [
    ["core.format", "core.settings", "core.events", "core.prompts", "core.outputs", "core.segments",
     "core.annotators", "core.item", "core.schema"],
    ["core.models", "core.quality", "core.dbfile"],
    ["core.store"],
    ["core.data"],
    ["core.runs"],
    ["core.reer", "core.r2"],
    ["core.judging"],
    ["core.export", "core.export_swap", "core.pairs", "core.train", "core.bench", "core.bench_generate", "core.bench_replay",
     "core.bench_serve",
     "core.serve_standin"],
    ["studio"],
]


def floor_of(module: str) -> int | None:
    """The floor of a module of this repository (its package's, or its own for a top-level one);
    `core` itself (an empty package file) is on the ground floor."""
    if module == "core":
        return 0
    for n, names in enumerate(FLOORS):
        if any(module == m or module.startswith(m + ".") for m in names):
            return n
    return None


def back_imports(root: Path = ROOT) -> list[str]:
    """Every import, at the top or inside a function, from a floor to a higher one."""
    found = []
    for path in sorted([*root.joinpath("core").rglob("*.py"), *root.joinpath("studio").rglob("*.py")]):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        own = floor_of(module)
        assert own is not None, f"{path.relative_to(root)}: on no floor; add it to FLOORS"
        for name in sorted(imported(path)):
            theirs = floor_of(name)
            if theirs is not None and theirs > own:
                found.append(f"{path.relative_to(root)} (floor {own}) imports {name} (floor {theirs})")
    return found


def test_no_module_imports_from_a_higher_floor():
    assert back_imports() == []


def test_the_engines_do_not_import_each_other():
    for a, b in (("reer", "r2"), ("r2", "reer")):
        for path in ROOT.joinpath("core", a).rglob("*.py"):
            assert not any(n == f"core.{b}" or n.startswith(f"core.{b}.") for n in imported(path)), path


def test_the_lm_protocol_imports_no_backend_not_even_inside_a_function():
    assert not imported(ROOT / "core" / "models" / "lm.py") & set(BACKENDS)


def test_the_protocol_loader_and_shelf_load_no_backend_when_imported():
    code = ("import sys, core.models.lm, core.models.load, core.models.shelf; "
            "print(sorted(m for m in sys.modules if m in ('core.models.hf', 'core.models.server', "
            "'core.models.scripted', 'torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_backend_is_loaded_by_its_table_entry_and_names_itself():
    from core.models.load import BACKENDS, backend_class, backend_of, load_lm

    assert backend_of("scripted:seed=1") == "scripted" and backend_of("http://h:1/v1#m") == "server"
    assert backend_of("smollm2-135m") == "hf"
    for name in BACKENDS:
        assert backend_class(name).backend == name
    assert load_lm("scripted:seed=1").backend == "scripted"


def test_no_module_outside_the_store_touches_its_private_members():
    """Judging, curation, exports and the pages go through the store's public API (reading(),
    transaction(), its query methods), never its lock or helpers."""
    import re

    private = re.compile(r"\bstore\._[a-z]\w*|(?<!self)\._lock\b|\._update\(|\._select\(")
    found = []
    for path in sorted([*ROOT.joinpath("core").rglob("*.py"), *ROOT.joinpath("studio").rglob("*.py")]):
        if path.relative_to(ROOT).as_posix() in ("core/store.py", "core/dbfile.py"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if private.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_no_raw_sql_in_the_pages():
    found = [p.name for p in ROOT.joinpath("studio", "pages").glob("*.py")
             if "SELECT " in p.read_text(encoding="utf-8")]
    assert not found


def test_reer_events_keep_their_stored_kinds_and_an_old_store_loads_them(tmp_path):
    """ReerStarted/ReerFinished were RunStarted/RunFinished: the kinds in the store are the old ones."""
    import json
    import sqlite3

    from core.events import ReerFinished, ReerStarted
    from core.store import open_store

    assert (ReerStarted.kind, ReerFinished.kind) == ("run_started", "run_finished")
    store = open_store(tmp_path / "s.db")
    pid, _ = store.add_prompt("a task", "an answer")
    run = store.create_run("reer", pid, {}, "scripted")
    store.close()
    raw = sqlite3.connect(tmp_path / "s.db")  # rows as a store of before the rename wrote them
    cols = [r[1] for r in raw.execute("PRAGMA table_info(events)")]
    rows = [{"run_id": run, "seq": 1, "kind": "run_started", "created_at": "2026-01-01T00:00:00",
             "payload": json.dumps({"kind": "run_started", "item_id": pid, "query": "a task", "reference": "an answer", "settings": {},
                                    "model": "scripted", "run_id": run})},
            {"run_id": run, "seq": 2, "kind": "run_finished", "created_at": "2026-01-01T00:00:01",
             "payload": json.dumps({"kind": "run_finished", "reason": "threshold", "thinking": "t", "segments": ["t"], "score": {}, "filters": {"passed": True, "reasons": []},
                                    "run_id": run})}]
    for row in rows:
        row = {k: v for k, v in row.items() if k in cols}
        raw.execute(f"INSERT INTO events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    raw.commit()
    raw.close()
    events = open_store(tmp_path / "s.db").events(run)
    assert [type(e) for e in events] == [ReerStarted, ReerFinished]


def test_the_import_graph_has_no_circle_between_packages():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import import_graph
    finally:
        sys.path.remove(str(ROOT / "docs"))
    assert import_graph.circles(import_graph.graph()) == []
