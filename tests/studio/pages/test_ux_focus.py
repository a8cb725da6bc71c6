"""Review's focus mode. The queue walk (core.data.curation: progress, next
pending, previous/next), the legend that is also the keymap (studio.views.focus), and the mode's
handlers called through the built Blocks (no server, no model): decisions land in the store as the
table's do, move to the next pending trajectory, and the table shows them.

The browser and gradio_client tests are in tests/studio/browser/test_ux_focus_ui.py."""
from __future__ import annotations

import html
import json
import re

import pytest
from library_fixtures import add_reer, filled_store
from ui_helpers import studio_app

from core.data import curation
from core.store import open_store
from studio.views import focus as fview

OPEN = ["any", "all", "", "", "", "", "any", "", "", "", ""]  # the Review filters, all open


def _rows(*pairs):
    return [{"id": i, "status": s} for i, s in pairs]


def test_progress_counts_the_queue_and_places_the_record():
    rows = _rows((1, "accepted"), (2, "rejected"), (3, "pending"), (4, "pending"), (5, "accepted"))
    p = curation.queue_progress(rows, 3)
    assert (p.position, p.total, p.accepted, p.rejected, p.to_go) == (3, 5, 2, 1, 2)
    assert p.text() == "3 of 5 · 2 accepted · 1 rejected · 2 to go"
    assert curation.queue_progress(rows, 99).text().startswith("– of 5")  # decided and left a "pending" queue


def test_next_pending_skips_decided_ones_and_wraps():
    rows = _rows((1, "pending"), (2, "accepted"), (3, "pending"), (4, "rejected"))
    assert curation.next_pending(rows, 1) == 3
    assert curation.next_pending(rows, 3) == 1  # wraps round
    assert curation.next_pending(rows, None) == 1
    assert curation.next_pending(rows, 2) == 3
    assert curation.next_pending(_rows((1, "pending"), (2, "accepted")), 1) is None  # only itself is left
    assert curation.next_pending(_rows((5, "pending"), (9, "pending")), 7) == 9  # 7 left the queue


def test_step_walks_the_queue_both_ways():
    rows = _rows((2, "pending"), (5, "accepted"), (8, "pending"))
    assert [curation.step_in_queue(rows, 5, s) for s in (1, -1)] == [8, 2]
    assert [curation.step_in_queue(rows, 8, 1), curation.step_in_queue(rows, 2, -1)] == [2, 8]  # wraps
    assert [curation.step_in_queue(rows, 6, s) for s in (1, -1)] == [8, 5]  # 6 is not in the queue
    assert curation.step_in_queue([], 3, 1) is None


def test_the_legend_is_the_keymap():
    """Every shortcut the legend lists is bound, to the element the mode draws, and the other way round."""
    legend = fview.legend_html()
    data = json.loads(html.unescape(re.search(r'data-pk-keys="([^"]*)"', legend).group(1)))
    keys = data["keys"]
    assert set(keys) == {"a", "r", "1", "2", "3", "4", "5", "j", "ArrowRight", "k", "ArrowLeft", "n", "Escape"}
    assert keys["a"] == {"do": "click", "target": "#focus-accept"}
    assert keys["3"]["target"] == '#focus-rating input[value="3"]'
    assert keys["n"]["do"] == "focus" and data["stamp"] == fview.STAMP_SELECTOR
    for label in ("accept", "reject", "rate 1", "next", "previous", "note", "back to the table"):
        assert label in legend
    assert "<kbd>Esc</kbd>" in legend and "<kbd>→</kbd>" in legend


@pytest.fixture
def app_store(tmp_path):
    store = open_store(tmp_path / "s.db")
    ids = filled_store(store)  # reer[0], reer[1], r2 accepted; reer[2] pending
    ids["more"] = [add_reer(store, f"Prompt {i}: write about fog.", f"Thinking {i}.\n\nMore.", f"Answer {i}.")
                   for i in range(3)]
    yield studio_app("scripted:", store=store), store, ids
    store.close()


def _fn(app, name):
    return next(f.fn for f in app.fns.values() if f.api_name == name)


def _by_id(out: dict) -> dict:
    return {getattr(k, "elem_id", None): v for k, v in out.items()}


def test_focus_decisions_land_in_the_store_and_the_table(app_store):
    app, store, ids = app_store
    pending = [ids["reer"][2], *ids["more"]]
    out = _by_id(_fn(app, "focus_open")(None, *OPEN))
    assert out["focus-id"] == pending[0]  # the first pending trajectory, not the first row
    assert "1 of" not in out["focus-progress"]  # the first row (accepted) is not the one open
    assert "4 to go" in out["focus-progress"] and "3 accepted" in out["focus-progress"]
    assert out["review-filters"].visible is False and out["review-focus-mode"].visible is True

    out = _by_id(_fn(app, "focus_accept")(pending[0], "", *OPEN))
    assert store.get_trajectory(pending[0])["status"] == "accepted"
    assert out["focus-id"] == pending[1] and "4 accepted" in out["focus-progress"]

    out = _by_id(_fn(app, "focus_reject")(pending[1], "too vague", *OPEN))
    row = store.get_trajectory(pending[1])
    assert row["status"] == "rejected" and "rejected: too vague" in row["notes"]
    assert out["focus-id"] == pending[2] and out["focus-note"] == ""

    out = _by_id(_fn(app, "focus_rate")(pending[2], "3", *OPEN))
    assert store.get_trajectory(pending[2])["rating"] == 3
    assert out["focus-id"] == pending[2] and out["focus-rating"] == "3"  # a rating stays on the record

    out = _by_id(_fn(app, "focus_next")(pending[2], *OPEN))
    assert out["focus-id"] == pending[3]
    out = _by_id(_fn(app, "focus_prev")(pending[3], *OPEN))
    assert out["focus-id"] == pending[2]

    # one truth: the table (and Back to table) show the same decisions
    table = _by_id(_fn(app, "focus_back")(pending[2], *OPEN))
    status = {r[0]: r[1] for r in table["review-table"]}
    assert (status[pending[0]], status[pending[1]], status[pending[2]]) == ("accepted", "rejected", "pending")
    assert table["review-id"] == pending[2] and table["review-filters"].visible is True


def test_accept_with_a_note_keeps_the_note_and_the_last_decision_says_so(app_store):
    app, store, ids = app_store
    pending = [ids["reer"][2], *ids["more"]]
    for t in pending[:-1]:
        _fn(app, "focus_accept")(t, "", *OPEN)
    out = _by_id(_fn(app, "focus_accept")(pending[-1], "lovely fog", *OPEN))
    assert store.get_trajectory(pending[-1])["notes"] == "lovely fog"
    assert "Nothing left to decide" in out["focus-msg"] and "0 to go" in out["focus-progress"]
    assert out["focus-id"] == pending[-1]


def test_focus_walks_the_filtered_queue(app_store):
    app, store, ids = app_store
    only = ["pending", "all", "", "", "", "", "any", "", "fog", "", ""]  # pending, search "fog"
    out = _by_id(_fn(app, "focus_open")(None, *only))
    assert out["focus-id"] == ids["more"][0] and "1 of 3" in out["focus-progress"]
    assert "search 'fog'" in html.unescape(out["focus-msg"])
    out = _by_id(_fn(app, "focus_accept")(ids["more"][0], "", *only))
    # the accepted one left the "pending" queue: the next is the first of what is left
    assert out["focus-id"] == ids["more"][1] and "1 of 2" in out["focus-progress"]


def test_actions_with_nothing_open_say_so(app_store):
    app, store, _ = app_store
    nothing = ["rejected", "all", "", "", "", "", "any", "", "", "", ""]
    out = _by_id(_fn(app, "focus_open")(None, *nothing))
    assert out["focus-id"] is None and "queue is empty" in out["focus-record"]
    out = _by_id(_fn(app, "focus_accept")(None, "", *nothing))
    assert "Nothing is open" in out["focus-msg"]
