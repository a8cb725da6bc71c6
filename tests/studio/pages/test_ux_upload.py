"""Files that belong together upload in one go, and tabs show the store's state.

Point 1: the Library imports several files (or a folder) at once; HelloBench's task file and its
responses file, uploaded together, import with their references; the report counts new, duplicate
and skipped records per file and names file, line (or "whole file") and field. Point 6: the Library's
run counts, the Train page's exports menu and the REER / R2 prompt menus are read again from the store
when their tab is selected. Everything goes through the app's own wiring: the functions Gradio calls
for a button or a tab select (`handlers`), on an app built once for the module with the `scripted:`
model; uploads are given the way Gradio hands them over, each file in a folder of its own.
The real HelloBench files are read where tests/needs.py finds them (copied to tmp_path only).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from needs import hellobench
from ui_helpers import studio_app

from core.data.imports import import_files
from core.data.records import HELLOBENCH_RESPONSES, HELLOBENCH_TASKS
from core.store import open_store
from studio.pages.library import ALL

@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """(app, store): one studio on a file store for the module (building it takes seconds)."""
    store = open_store(tmp_path_factory.mktemp("ux-upload") / "studio.db")
    store.add_prompt("Describe a harbour at dawn.", "Gulls argue over the nets. " * 10, id="p-harbour")
    store.add_prompt("Write a note to a neighbour.", "Your lilacs lean into my yard. " * 10, id="p-lilac")
    app = studio_app("scripted:", store=store)
    yield app, store
    store.close()


def _fn(app, *, api_name: str | None = None, tab: str | None = None, event: str = "select") -> list:
    """The app's functions (gradio BlockFunction) behind an endpoint name, or behind a tab's select."""
    if api_name:
        return [f for f in app.fns.values() if f.api_name == api_name]
    tab_id = next(b._id for b in app.blocks.values() if getattr(b, "elem_id", None) == tab)
    return [f for f in app.fns.values() if f.fn is not None and (tab_id, event) in [tuple(t) for t in f.targets]]


def fire(fns: list, given: dict | None = None) -> dict:
    """Call each function with its inputs (a component's value from `given` by component, else its
    value on the page) and merge what they return, keyed by the output's elem_id (or its block id)."""
    given = given or {}
    out: dict = {}
    for f in fns:
        args = [given.get(c, c.value) for c in f.inputs]
        got = f.fn(*args)
        if not isinstance(got, dict):
            got = dict(zip(f.outputs, got if len(f.outputs) > 1 else [got]))
        out.update({(c.elem_id or c._id): v for c, v in got.items()})
    return out


def _component(app, elem_id: str):
    return next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def _uploaded(tmp_path: Path, files: dict[str, Path | str]) -> list[str]:
    """Each file in a folder of its own, as a browser upload arrives (gradio's cache)."""
    out = []
    for i, (name, src) in enumerate(files.items()):
        d = tmp_path / f"upload-{i}"
        d.mkdir()
        if isinstance(src, Path):
            shutil.copyfile(src, d / name)
        else:
            (d / name).write_text(src, encoding="utf-8")
        out.append(str(d / name))
    return out


def _upload(app, paths: list[str]) -> str:
    """The Library's status after uploading `paths` together (the page's upload handler)."""
    return _call(app, "library_upload", [paths, "", ALL])["library-status"]


def _call(app, api_name: str, args: list) -> dict:
    (f,) = _fn(app, api_name=api_name)
    got = f.fn(*args)
    return {(c.elem_id or c._id): v for c, v in got.items()}


def _tiny_pair(tag: str) -> dict[str, str]:
    """A HelloBench-shaped pair: two tasks with their responses, plus a response line without text."""
    tasks = [{"id": f"{tag}_0", "category": "open_ended_qa", "instruction": f"Explain tides ({tag}).",
              "checklists": ["Names the moon", "Plain words"]},
             {"id": f"{tag}_1", "category": "summarization", "instruction": f"Summarise a storm log ({tag}).",
              "checklists": ["Keeps the order"]},
             {"id": f"{tag}_2", "category": "summarization", "instruction": f"Summarise nothing ({tag})."}]
    responses = [{"id": f"{tag}_0", "instruction": f"Explain tides ({tag}).",
                  "response": "The moon pulls the sea toward it, and the earth turns beneath. " * 3},
                 {"id": f"{tag}_1", "instruction": f"Summarise a storm log ({tag}).",
                  "response": "Wind rose at noon, the mast cracked at four, the crew slept at dawn. " * 3},
                 {"id": f"{tag}_2", "instruction": f"Summarise nothing ({tag}).", "response": ""}]
    return {HELLOBENCH_TASKS: "".join(json.dumps(t) + "\n" for t in tasks),
            HELLOBENCH_RESPONSES: "".join(json.dumps(r) + "\n" for r in responses)}


# ---- point 1: multi-file upload -------------------------------------------------------------------

def test_a_hellobench_pair_uploaded_together_imports_with_references_and_counts_per_file(studio, tmp_path):
    app, store = studio
    pair = _tiny_pair("tiny")
    msg = _upload(app, _uploaded(tmp_path, {**pair, "README.md": "# not data\n"}))
    assert "2 new prompt(s), 0 already in the library; 1 line(s) skipped" in msg
    # per file: new, duplicate and skipped records; the problem names file, line and field
    assert f"{HELLOBENCH_TASKS} + {HELLOBENCH_RESPONSES}: 2 new prompt(s), 0 duplicate(s), 1 skipped" in msg
    assert f"<li>{HELLOBENCH_RESPONSES}:3 field &#x27;response&#x27;" in msg
    assert "not data files, left out: README.md" in msg
    p = store.get_prompt(next(r["id"] for r in store.db.query("SELECT id FROM prompts WHERE query = ?",
                                                             ["Explain tides (tiny)."])))
    assert p["reference"].startswith("The moon pulls the sea") and p["category"] == "open_ended_qa"
    (tmp_path / "again").mkdir()
    again = _upload(app, _uploaded(tmp_path / "again", pair))
    assert "0 new prompt(s), 2 already in the library" in again and "2 duplicate(s), 1 skipped" in again


def test_a_task_file_alone_says_to_upload_its_responses_with_it_and_no_line_zero(studio, tmp_path):
    app, store = studio
    before = store.db["prompts"].count
    msg = _upload(app, _uploaded(tmp_path, {HELLOBENCH_TASKS: _tiny_pair("alone")[HELLOBENCH_TASKS]}))
    assert f"{HELLOBENCH_TASKS} (whole file): HelloBench tasks without their answers; upload " \
           f"{HELLOBENCH_RESPONSES} together with it" in msg
    assert ":0" not in msg and "line(s) skipped" not in msg and "1 file problem(s)" in msg
    assert store.db["prompts"].count == before


def test_a_file_whose_reading_stopped_says_so_in_its_count_line(studio, tmp_path):
    app, _ = studio
    bad = tmp_path / "latin"
    bad.mkdir()
    (bad / "latin.csv").write_bytes("query,reference\nq-stop,fine answer\nq,caf\xe9\n".encode("latin-1"))
    good = _uploaded(tmp_path, {"good.jsonl": json.dumps({"query": "Name a bird of the fen.",
                                                         "reference": "The bittern, booming at dusk."}) + "\n"})
    msg = _upload(app, [str(bad / "latin.csv"), *good])
    assert "latin.csv: 1 new prompt(s), 0 duplicate(s), 1 skipped; reading stopped part way" in msg
    assert "good.jsonl: 1 new prompt(s), 0 duplicate(s), 0 skipped" in msg
    assert "latin.csv (whole file): " in msg and "rest of the file is not imported" in msg


def test_the_real_hellobench_files_uploaded_together_import_every_task_with_its_reference(tmp_path):
    HELLOBENCH = hellobench()
    store = open_store(tmp_path / "hb.db")
    app = studio_app("scripted:", store=store)
    tasks = sum(1 for line in (HELLOBENCH / HELLOBENCH_TASKS).open(encoding="utf-8") if line.strip())
    files = {n: HELLOBENCH / n for n in (HELLOBENCH_TASKS, HELLOBENCH_RESPONSES, "README.md", "LICENSE")}
    msg = _upload(app, _uploaded(tmp_path, files))
    assert f"{tasks} new prompt(s), 0 already in the library" in msg and "skipped" not in msg.split(":")[1]
    rows = list(store.db.query("SELECT reference, category, rubric FROM prompts"))
    assert len(rows) == tasks and all(r["reference"].strip() and r["category"] and r["rubric"] for r in rows)
    store.close()


# ---- point 6: tabs read the store when shown -----------------------------------------------------------

def test_the_library_shows_runs_made_elsewhere_when_its_tab_is_selected(studio):
    app, store = studio
    store.create_run("reer", "p-harbour", {}, "scripted:", "seed-a")
    store.create_run("r2", "p-harbour", {}, "scripted:", "seed-b")
    rows = fire(_fn(app, tab="tab-library"), {})["library-table"]
    assert [r[4] for r in rows if r[0] == "p-harbour"] == [2], rows


def _dropdown(value):
    """(choices' values, value) of a Dropdown update."""
    return [c[1] if isinstance(c, (list, tuple)) else c for c in value.choices], value.value


def test_the_train_menu_lists_an_export_made_on_the_export_page_when_its_tab_is_selected(studio, tmp_path):
    app, store = studio
    src = tmp_path / "done.jsonl"
    src.write_text(json.dumps({"query": "Describe rain on tin.", "answer": "<think>\nDrums, not tears.\n</think>\n"
                               "It drums on the roof all night."}) + "\n", encoding="utf-8")
    (tid,) = import_files(store, src).trajectory_ids
    store.set_status(tid, "accepted")
    done = _call(app, "export_run", ["chat", "accepted", "all", False])
    assert "Wrote <b>" in done["export-result"]
    choices, value = _dropdown(fire(_fn(app, tab="tab-train"), {_component(app, "train-data"): "my/own.jsonl"})
                               ["train-data"])
    export_id = done["export-result"].split('data-export="')[1].split('"')[0]
    (row,) = [r for r in store.db.query("SELECT out FROM exports WHERE id = ?", [int(export_id)])]
    assert [Path(c).parent for c in choices] == [Path(row["out"])], choices
    assert value == "my/own.jsonl"  # what was typed stays


@pytest.mark.parametrize("tab", ["r2", "reer"])
def test_a_run_tab_opens_on_the_prompt_picked_in_the_library(studio, tab):
    app, _ = studio
    (to_reer,) = _fn(app, api_name="library_to_reer")
    selected = to_reer.inputs[0]  # the Library's picked prompt
    got = fire(_fn(app, tab=f"tab-{tab}"), {selected: "p-lilac"})
    assert got[f"{tab}-prompt"].value == "p-lilac"


def test_write_with_r2_opens_the_r2_tab_on_the_picked_prompt(studio):
    app, _ = studio
    got = _call(app, "library_to_r2", ["p-harbour"])
    assert got["r2-prompt"].value == "p-harbour"
    assert any(v.selected == "r2" for k, v in got.items() if k not in ("r2-prompt",) and hasattr(v, "selected"))


@pytest.mark.ui
def test_a_hellobench_pair_uploads_together_through_gradio_client(tmp_path):
    """The multi-file button's endpoint takes a list of files from a client (each lands in its own folder)."""
    from gradio_client import handle_file
    from ui_helpers import client, launched

    store = open_store(tmp_path / "gc.db")
    pair = _uploaded(tmp_path, _tiny_pair("client"))
    with launched(studio_app("scripted:", store=store)) as url:
        _, _, msg = client(url).predict([handle_file(p) for p in pair], "", ALL, api_name="/library_upload")
    assert "2 new prompt(s)" in msg and f"{HELLOBENCH_RESPONSES}:3 field &#x27;response&#x27;" in msg
    refs = [r["reference"] for r in store.db.query("SELECT reference FROM prompts")]
    assert len(refs) == 2 and all(r.strip() for r in refs)
    store.close()


@pytest.mark.parametrize("tab", ["r2", "reer"])
def test_a_run_tab_selected_before_its_menu_is_filled_opens_on_a_prompt_not_an_empty_menu(studio, tab):
    """Opening ?tab=r2 fired the tab's select with an empty menu (racing the page load): R2 showed no prompt."""
    app, _ = studio
    prompt_menu = _component(app, f"{tab}-prompt")
    got = fire(_fn(app, tab=f"tab-{tab}"), {prompt_menu: None})
    assert got[f"{tab}-prompt"].value, got[f"{tab}-prompt"]
