"""Unit tests of what the Review and Export pages compute without a browser: the filter built
from the page's controls, the escaped HTML blocks, the summary figure and the export folder
naming. The store is seeded directly (tests/library_fixtures.py)."""
from __future__ import annotations

import json

import pytest
from library_fixtures import add_reer, filled_store

from core.data import curation
from core.store import BadValue, open_store
from studio.pages.export import export_folder, export_root, page_words
from studio.pages.review import flags_match, make_filter, source_choices
from studio.views import review as view

STORE_FILE = "s.db"  # the `store` fixture (tests/conftest.py) opens a file of this name

HOSTILE = '<script>alert("x")</script> & <u>'


def test_make_filter_reads_the_controls_and_names_bad_ones():
    f = make_filter("accepted", "import: handmade", "0.2", " 0.5 ", "10", "", "passed", "gold, short ,", "  fog ")
    assert (f.status, f.kind, f.source, f.min_score, f.max_score, f.min_chars, f.max_chars) == \
        ("accepted", "import", "handmade", 0.2, 0.5, 10, None)
    assert f.passed_filters is True and f.tags == ("gold", "short") and f.search == "fog"
    g = make_filter("any", "r2", None, None, None, None, "failed", "", "")
    assert g.status is None and g.kind == "r2" and g.passed_filters is None  # failed: checked by flags_match
    for args, words in [(("any", "all", "x", "", "", "", "any", "", ""), "score from must be a number"),
                        (("any", "all", "", "", "1.5", "", "any", "", ""), "whole number of characters"),
                        (("any", "all", "", "", "-2", "", "any", "", ""), "whole number of characters"),
                        (("any", "all", "", "", "50", "10", "any", "", ""), "length from 50 is above length to 10"),
                        (("any", "nowhere", "", "", "", "", "any", "", ""), "source 'nowhere' is not known"),
                        (("done", "all", "", "", "", "", "any", "", ""), "status 'done'")]:
        with pytest.raises(BadValue, match=words):
            make_filter(*args)


def test_flags_match_tells_failed_from_not_run():
    ran_ok, ran_bad, none = {"filters": {"passed": True, "reasons": []}}, {"filters": {"passed": False}}, {"filters": None}
    assert [flags_match(r, "failed") for r in (ran_ok, ran_bad, none)] == [False, True, False]
    assert [flags_match(r, "not run") for r in (ran_ok, ran_bad, none)] == [False, False, True]
    assert all(flags_match(r, "any") for r in (ran_ok, ran_bad, none))


def test_blocks_escape_every_text_from_models_files_and_people(store):
    tid = add_reer(store, "Query " + HOSTILE, "Think " + HOSTILE, "Answer " + HOSTILE)
    store.db["trajectories"].update(tid, {"filters": json.dumps({"passed": False, "reasons": ["bad " + HOSTILE]})})
    curation.tag(store, tid, "tag<s>")
    curation.note(store, tid, "note " + HOSTILE)
    curation.edit(store, tid, thinking="Edited " + HOSTILE, note="why " + HOSTILE)
    t = curation.show(store, tid)
    blocks = view.header_html(t) + view.reference_html(t) + view.versions_html(t)
    assert "<script>" not in blocks and "<u>" not in blocks and "<s>" not in blocks
    assert blocks.count("&lt;script&gt;") == 5  # query, reference, failed reason, note, v1's note
    assert "tag&lt;s&gt;" in view.header_html(t)
    assert 'data-version="1"' in view.header_html(t) and "filters</em> failed" in view.header_html(t)
    assert view.versions_html(t).count("<li") == 2 and 'class="current" data-version="1"' in view.versions_html(t)
    cells = view.row_cells(curation.list_trajectories(store)[0], t["prompt"]["query"])
    assert cells[0] == tid and cells[-1] == 1 and cells[view.HEADERS.index("tags")] == "tag<s>"  # plain cells: Gradio escapes them


def test_summary_figure_counts_what_it_is_given(store):
    ids = filled_store(store)
    store.set_status(ids["reer"][2], "rejected")
    rows = curation.list_trajectories(store)
    fig = view.summary_figure(rows)
    bar = [t for t in fig.data if t.type == "bar"][0]
    assert dict(zip(bar.x, bar.y)) == {"pending": 0, "accepted": 3, "rejected": 1}
    hist = {key: sorted(x for t in fig.data if t.type == "histogram" and t.meta["scale"] == key for x in t.x)
            for key in ("reer_score", "judge_score")}
    assert hist["reer_score"] == sorted(r["final_score"] for r in rows if r["kind"] == "reer")
    assert hist["judge_score"] == [6.0]  # the R2 row's answer (round 1's revision) was judged 6 in round 2
    pts = [t for t in fig.data if t.type == "scatter" and t.mode == "markers"]
    assert sum(len(t.x) for t in pts) == sum(r["initial_ppl"] is not None for r in rows) == 3
    empty = view.summary_figure([])
    assert {a.text for a in empty.layout.annotations} >= {"no REER scores yet", "no judge scores yet",
                                                          "no perplexities yet"}
    # each message sits over its own panel (axis-domain refs drew all three inside the status panel)
    where = {a.text: a for a in empty.layout.annotations}
    for text, axis in (("no REER scores yet", "xaxis"), ("no judge scores yet", "xaxis2"), ("no perplexities yet", "xaxis4")):
        x0, x1 = empty.layout[axis].domain
        assert where[text].xref == "paper" and x0 < where[text].x < x1


def test_source_menu_and_export_folders(store, tmp_path):
    filled_store(store)
    assert source_choices(store) == ["all", "reer", "r2", "import (any file)"]
    root = export_root(store)
    assert root == (tmp_path / "exports").resolve()
    a = export_folder(root, "chat", "accepted", "all")
    a.mkdir(parents=True)
    b = export_folder(root, "chat", "accepted", "all")
    assert b != a and not b.exists() and b.name.startswith(a.name)
    mem = open_store(None)
    assert export_root(mem).is_dir() and export_root(mem) != export_root(mem)  # a fresh temp folder each app
    assert page_words("try --status any or --source all") == 'try Status "any" or Source "all"'


def test_export_preview_is_what_export_writes(store, tmp_path):
    from core.export import ExportError, export, preview

    filled_store(store)
    for fmt, status, source in (("chat", "accepted", "all"), ("dpo", "any", "all"), ("alpaca", "any", "reer")):
        rows, total, skipped = preview(store, fmt, status, source, n=2)
        report = export(store, fmt, tmp_path / fmt, status, source)
        lines = [json.loads(x) for x in open(report.files[0])] if report.files[0].endswith(".jsonl") \
            else json.load(open(report.files[0]))
        assert total == report.count == len(lines) and rows == lines[:2] and skipped == report.skipped
    with pytest.raises(ExportError, match="'csv' is not a format"):
        preview(store, "csv")
