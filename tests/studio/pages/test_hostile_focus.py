"""Hostile texts in Review's focus mode: a trajectory whose query, reference, thinking, answer,
tags and notes carry <script> and <img onerror> is drawn as text, never as markup
(studio.views.focus). The browser check is in tests/studio/browser/test_ux_focus_ui.py."""
from __future__ import annotations

from core.data import curation
from studio.views import focus as fview

SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src=x onerror="window.pwned=2">'


def hostile_row() -> dict:
    return {"id": 7, "status": "pending", "source": "reer", "kind": "reer", "thinking": f"{SCRIPT}\n\n{IMG}",
            "answer": f"answer {IMG}", "tags": [f"t{IMG}"], "notes": SCRIPT, "version": 0, "rating": None,
            "filters": {"passed": False, "reasons": [IMG]}, "run": {"model": f"m{SCRIPT}"},
            "prompt": {"query": f"query {SCRIPT}", "reference": f"ref {IMG}"}, "details": {}}


def test_record_html_escapes_every_text():
    out = fview.record_html(hostile_row())
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in out and "&lt;img src=x onerror=" in out
    assert 'data-id="7"' in out


def test_progress_and_legend_carry_no_markup_from_data():
    p = curation.queue_progress([{"id": 7, "status": "pending"}], 7)
    out = fview.progress_html(p, 3, 7)
    assert 'data-pk-stamp="3"' in out and "1 of 1 · 0 accepted · 0 rejected · 1 to go" in out
    legend = fview.legend_html((fview.Shortcut(("x",), f"do {IMG}", "click", '#b"><script>'),))
    assert "<img" not in legend and "<script>" not in legend
