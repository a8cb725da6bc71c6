"""Issue 17 on the REER page: typing in the edit box is never overwritten and an unchanged edit is
refused (point 5); the plot's axes fit the data and the step budget, and an accepted step whose
perplexity rose says why (point 9); the heat maps belong to the run on screen (point 6).

Handler-level: the studio is built on the scripted model (core.models.scripted, no model load) and
its REER handlers are called directly (as tests/test_hostile_limits.py does); figures are built
from events written here."""
from __future__ import annotations

import time

import pytest

from core import events as ev

SCRIPTED = "scripted:"
QUERY = "Write a short scene about a lighthouse keeper who finds a letter."
REFERENCE = ("The keeper found the letter wedged in the lamp room door. It was addressed to him, in his own "
             "hand, dated thirty years ahead. He read it twice, then climbed to the lamp and waited for dark.")


def _api_fn(app, name: str):
    return next(f.fn for f in app.fns.values() if f.api_name == name)


def _by_id(out: dict, elem_id: str):
    return next(v for k, v in out.items() if getattr(k, "elem_id", "") == elem_id)


def _state(out: dict):
    return next(v for k, v in out.items() if type(k).__name__ == "State" and isinstance(v, str) and len(v) == 32)


def _until(check, what: str, limit_s: float = 60.0) -> None:
    """Wait until `check()` holds (a bound on a wait, not a timing assertion)."""
    end = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.02)


@pytest.fixture
def paused_run(store):
    """The studio on the scripted model and a REER run paused after one Step: (app, run id)."""
    from studio.app import build_app
    from studio.pages.reer import DEMO, SETTINGS

    app = build_app(SCRIPTED, store=store, samples=[], samples_path=None)
    pid = store.add_prompt(QUERY, REFERENCE)[0]
    out = _api_fn(app, "reer_step")(pid, None, "", *[DEMO.get(k, True) for k in SETTINGS])
    run_id = _state(out)
    _until(lambda: store.get_run(run_id)["status"] in ("paused", "finished"), "the step ended")
    assert store.get_run(run_id)["status"] == "paused", store.get_run(run_id)
    yield app, run_id


def _segments(store, run_id) -> list[str]:
    from studio.views.reer import fold

    return fold(store.events(run_id)).segments


# ---- point 5: typing is never lost; an unchanged edit is no decision --------------------------------

def test_picking_a_segment_keeps_typing_not_yet_rescored(store, paused_run):
    app, run_id = paused_run
    load = _api_fn(app, "reer_load_segment")
    segs = _segments(store, run_id)
    assert len(segs) >= 2

    def box(out):
        return _by_id(out, "reer-edit-text")

    def last(out):
        return next(v for k, v in out.items() if type(k).__name__ == "State")

    out = load(run_id, 2, "", "")  # an empty box: the segment's text is loaded
    assert box(out) == segs[1] and last(out) == segs[1]
    typed = "The keeper's own letter, dated ahead: I should write toward the lamp and the dark."
    kept = load(run_id, 1, typed, segs[1])  # typing, then the number changed: the typing stays
    assert not isinstance(box(kept), str), f"the edit box was overwritten with {box(kept)!r}"
    assert last(kept) == segs[1]
    moved = load(run_id, 1, segs[1], segs[1])  # the box holds only what was loaded: the new segment loads
    assert box(moved) == segs[0]


def test_rescoring_an_unchanged_segment_is_refused_and_records_nothing(store, paused_run):
    app, run_id = paused_run
    edit = _api_fn(app, "reer_edit")
    segs = _segments(store, run_id)
    before = len(store.events(run_id))
    out = edit(run_id, 1, segs[0] + "\n")  # the same text (a trailing newline is no change)
    assert "is the same as segment 1" in _by_id(out, "reer-status")
    assert not [e for e in store.events(run_id) if isinstance(e, ev.SegmentDecided) and e.action == "edit"]
    assert len(store.events(run_id)) == before and store.get_run(run_id)["status"] == "paused"
