"""The layout's promises, checked from the source text: core never imports gradio or plotly,
the two engines never import each other, docs/import-graph.md is what docs/import_graph.py
writes now, the README and docs/*.md name only files, modules and names that exist, and the
tests sit in folders by subject (none in tests/ itself), each importable by name (docs/testing.md).

Knows: the repository's files and docs/import_graph.py (loaded by path; docs/ is no package).
Does not know: what the modules do; nothing here imports core, torch or gradio.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from needs import ROOT

TOP_DIRS = ("core", "studio", "assets", "data", "tests", "docs")
FILE_SUFFIXES = {"py", "md", "json", "jsonl", "csv", "tsv", "parquet", "txt", "css", "svg", "toml", "log", "zip"}
README_LIMIT = 8 * 1024  # bytes: the README is a front door, the manual lives in docs/


def _load_script():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "docs" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ig = _load_script()


def _engine_imports(engine: str, other: str) -> list[str]:
    """'file:line imports target' for every import in core/<engine> that lands in core/<other>."""
    hits = []
    for path in ig.core_modules(ROOT / "core" / engine):
        for imp in ig.imports_of(path):
            if imp.target == f"core.{other}" or imp.target.startswith(f"core.{other}."):
                hits.append(f"{path.relative_to(ROOT)}:{imp.line} imports {imp.target}")
    return hits


# --- the import graph -----------------------------------------------------------------------

def test_core_never_imports_gradio_or_plotly():
    used = ig.third_party()
    bad = {name: sorted(used[name]) for name in ("gradio", "plotly", "gradio_client") if name in used}
    assert not bad, f"core imports UI libraries: {bad}"


def test_reer_does_not_import_r2():
    assert not _engine_imports("reer", "r2")


def test_r2_does_not_import_reer():
    assert not _engine_imports("r2", "reer")


def test_the_scanner_sees_the_real_imports():
    """Guards the checks above against passing vacuously: both engines import the models."""
    edges = ig.graph()
    assert "core.models" in edges["core.reer"] and "core.models" in edges["core.r2"]


def test_import_graph_page_is_current():
    page = ROOT / "docs" / "import-graph.md"
    assert page.exists(), f"docs/import-graph.md is missing: run `{ig.COMMAND}`"
    assert page.read_text(encoding="utf-8") == ig.render(ig.graph()), f"stale: run `{ig.COMMAND}`"


def test_scanner_resolves_relative_and_lazy_imports(tmp_path):
    """A fake core/ where reer reaches r2 only through a relative import inside a function."""
    core = tmp_path / "core"
    for pkg in ("reer", "r2"):
        (core / pkg).mkdir(parents=True)
        (core / pkg / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "store.py").write_text("import json\n")
    (core / "reer" / "search.py").write_text("def f():\n    from ..r2 import loop\n    from . import state\n")
    (core / "r2" / "loop.py").write_text("from core.store import x\nimport gradio as gr\n")
    edges = ig.graph(core, tmp_path)
    assert edges["core.reer"] == {"core.r2"}
    assert edges["core.r2"] == {"core.store"}
    assert ig.third_party(core, tmp_path)["gradio"] == {"core.r2.loop"}
    page = ig.render(edges, core)
    assert "core/reer/ imports core/r2/." in page.split("## As text")[0]  # the verdict
    assert "| `search.py` | `loop.py` |" in page  # each engine's generator on one row


# --- the docs -------------------------------------------------------------------------------

def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


PATH_RE = re.compile(r"(?<![\w./~\-])((?:%s)/[\w./*\-]*)" % "|".join(TOP_DIRS))
LINK_RE = re.compile(r"\]\(([^)\s]+)\)")
DOTTED_RE = re.compile(r"(?<![\w./\-])((?:core|studio|assets|data)(?:\.[A-Za-z_]\w*)+)")


def _paths_in(text: str, folder: Path) -> set[str]:
    """Repository paths a doc in folder names: core/..., docs/... in its text, its relative links."""
    found = {m.rstrip(".") for m in PATH_RE.findall(text)}
    for target in LINK_RE.findall(text):
        target = target.split("#")[0]
        if target and not re.match(r"^[a-z]+:", target):
            found.add(str((folder / target).resolve().relative_to(ROOT)))
    return found


def _exists(path: str) -> bool:
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_names_only_files_that_exist(doc):
    text = doc.read_text(encoding="utf-8")
    assert "../" not in text, f"{doc.name} points outside the repository"
    missing = sorted(p for p in _paths_in(text, doc.parent) if not _exists(p))
    assert not missing, f"{doc.name} names files that are not in the repository: {missing}"


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _dangling_dotted(ref: str) -> str | None:
    """Why `core.reer.search.reer_search` names nothing, or None: modules must exist, and the
    first name after the last module must be defined at that module's top level."""
    parts, path = ref.split("."), ROOT
    for i, part in enumerate(parts):
        if (path / part / "__init__.py").exists():
            path = path / part
            continue
        if (path / f"{part}.py").exists():
            module, rest = path / f"{part}.py", parts[i + 1:]
        else:
            module, rest = path / "__init__.py", parts[i:]
        if rest and rest[0] not in _top_level_names(module):
            return f"{ref}: {module.relative_to(ROOT)} defines no {rest[0]}"
        return None
    return None


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_names_only_modules_that_exist(doc):
    refs = {m for m in DOTTED_RE.findall(doc.read_text(encoding="utf-8"))
            if m.rsplit(".", 1)[-1] not in FILE_SUFFIXES}
    dangling = sorted(filter(None, map(_dangling_dotted, refs)))
    assert not dangling, f"{doc.name} names modules or names that do not exist: {dangling}"


def test_doc_checks_catch_a_dangling_reference():
    """The checks above can fail: a made-up path, link, module and function are all reported."""
    text = "see `core/nowhere.py`, [the flags](nowhere.md), [home](https://x.org) and data/samples.jsonl."
    names = _paths_in(text, ROOT / "docs")
    assert names == {"core/nowhere.py", "docs/nowhere.md", "data/samples.jsonl"}
    assert [p for p in sorted(names) if not _exists(p)] == ["core/nowhere.py", "docs/nowhere.md"]
    assert _dangling_dotted("core.reer.no_such_function")
    assert _dangling_dotted("core.no_such_module.f")
    assert _dangling_dotted("data.SAMPLES") is None


def test_readme_is_a_front_door():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"


@pytest.mark.model
def test_readme_example_output_is_what_score_prints(capsys):
    """The worked example's output in the README is real: the command prints it today. When the
    scoring layout changes, rerun `palimpsest score --input docs/example.jsonl` and paste."""
    import json

    from studio.cli.main import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("$ palimpsest score --input docs/example.jsonl", 1)[1].split("```", 1)[0]
    shown = [json.loads(line) for line in block.splitlines() if line.startswith("{")]
    assert [row["id"] for row in shown] == ["note-plain", "note-thought"]
    assert main(["score", "--input", str(ROOT / "docs" / "example.jsonl")]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["id"] for r in printed] == [r["id"] for r in shown]
    for got, want in zip(printed, shown):
        assert got["n_tokens"] == want["n_tokens"]
        for key in ("mean_logprob", "ppl", "score"):
            assert got[key] == pytest.approx(want[key], rel=1e-3), (got["id"], key)


# --- the tests' own layout ------------------------------------------------------------------

OWN_PATH_RE = re.compile(r"__file__\)*\.(?:resolve\(\)\.)?parent|dirname\([^\n]*__file__")


def _pythonpath(pyproject: Path) -> list[str]:
    """[tool.pytest.ini_options] pythonpath, read from the text (tomllib is Python 3.11+)."""
    m = re.search(r"^pythonpath = \[([^\]]*)\]", pyproject.read_text(encoding="utf-8"), re.M)
    return re.findall(r'"([^"]+)"', m[1]) if m else []


def _test_layout_problems(root: Path) -> list[str]:
    """Why root/tests breaks the layout docs/testing.md describes, one line each ([] when it holds)."""
    tests, problems = root / "tests", []
    files = sorted(tests.rglob("test_*.py"))
    problems += [f"tests/{p.name} sits in tests/ itself: git mv it into the folder of its subject "
                 f"(docs/testing.md lists them)" for p in files if p.parent == tests]
    seen: dict[str, Path] = {}
    for p in files:
        if p.name in seen:
            problems.append(f"{p.relative_to(root)} and {seen[p.name].relative_to(root)} share a name: "
                            f"pytest imports test files by name, rename one")
        seen.setdefault(p.name, p)
    problems += [f"{p.relative_to(root)}: no __init__.py under tests/ (tests/core/ would shadow the core package)"
                 for p in sorted(tests.rglob("__init__.py"))]
    want = [".", "tests", *sorted({str(p.parent.relative_to(root)) for p in files if p.parent != tests})]
    have = _pythonpath(root / "pyproject.toml")
    if have[:1] != ["."]:
        problems.append('pyproject.toml: pythonpath must start with "." (the repository): else tests/core/ is taken '
                        'for the core package where it is installed editable (a bare `pytest`)')
    problems += [f"pyproject.toml: pythonpath lacks {d!r} (test modules import each other by name from any folder)"
                 for d in want if d not in have]
    problems += [f"pyproject.toml: pythonpath names {d!r}, which holds no tests" for d in have if d not in want]
    for p in sorted({*files, *tests.glob("*.py")}):
        text = p.read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines(), 1):  # helpers in tests/ itself stay put (needs.ROOT)
            if p.name.startswith("test_") and OWN_PATH_RE.search(line):
                problems.append(f"{p.relative_to(root)}:{i} computes a path from its own place: `from needs import ROOT`")
        for node in ast.walk(ast.parse(text)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n == "tests" or n.startswith("tests.") for n in names):
                problems.append(f"{p.relative_to(root)}:{node.lineno} imports through tests.: import the helper "
                                f"by name (a second copy of the module otherwise)")
    return problems


def test_tests_sit_in_folders_by_subject_and_import_by_name():
    assert not _test_layout_problems(ROOT), "\n".join(_test_layout_problems(ROOT))


def test_the_tests_layout_check_can_fail(tmp_path):
    """Each way to break the tests' layout is reported: a test left in tests/, two files of one
    name, an __init__.py, pythonpath not starting with the repository or missing a folder, a root
    computed from __file__, tests.X."""
    tests = tmp_path / "tests"
    for folder in ("core/reer", "studio/cli"):
        (tests / folder).mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('pythonpath = ["tests", "tests/core/reer", "tests/gone", "."]\n')
    own_root = "ROOT = Path(__file__)" + ".resolve().parents[1]\n"  # split: this file must not match
    (tests / "needs.py").write_text(own_root)
    (tests / "test_flat.py").write_text("from tests.ui_helpers import client\n")
    (tests / "core" / "reer" / "test_same.py").write_text(own_root)
    (tests / "studio" / "cli" / "test_same.py").write_text("def f():\n    import tests.r2_fakes\n")
    (tests / "studio" / "__init__.py").write_text("")
    got = "\n".join(_test_layout_problems(tmp_path))
    assert "tests/test_flat.py sits in tests/ itself" in got
    assert "tests/test_flat.py:1 imports through tests." in got
    assert "tests/studio/cli/test_same.py:2 imports through tests." in got
    assert "share a name" in got and "tests/studio/__init__.py" in got
    assert "pythonpath lacks 'tests/studio/cli'" in got and "pythonpath names 'tests/gone'" in got
    assert "tests/core/reer/test_same.py:1 computes a path from its own place" in got
    assert 'pythonpath must start with "."' in got
    assert "needs.py" not in got
    assert len(got.splitlines()) == 9, got
