"""The REER page: typing in the edit box is never overwritten and an unchanged edit is
refused (point 5); the plot's axes fit the data and the step budget, and an accepted step whose
perplexity rose says why (point 9); the heat maps belong to the run on screen (point 6).

Handler-level: the studio is built on the scripted model (core.models.scripted, no model load) and
its REER handlers are called directly (as tests/studio/pages/test_hostile_limits.py does); figures are built
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
    from studio.pages.reer import DEMO, REAL, SETTINGS

    app = build_app(SCRIPTED, store=store, samples=[], samples_path=None)
    pid = store.add_prompt(QUERY, REFERENCE)[0]
    out = _api_fn(app, "reer_step")(pid, None, "", *[DEMO.get(k, getattr(REAL, k)) for k in SETTINGS])
    run_id = _state(out)
    _until(lambda: store.get_run(run_id)["status"] in ("paused", "finished"), "the step ended")
    assert store.get_run(run_id)["status"] == "paused", store.get_run(run_id)
    yield app, run_id


def _segments(store, run_id) -> list[str]:
    from studio.views.reer import fold

    return fold(store.events(run_id)).segments


# ---- point 5: typing is never lost; an unchanged edit is no decision --------------------------------

# picking a segment loads its text in the browser now (studio.pages.reer.LOAD_SEGMENT_JS), so no late reply
# overwrites typing: tests/studio/browser/test_ui_decisions_browser.py drives it in Chromium


def test_rescoring_an_unchanged_segment_is_refused_and_records_nothing(store, paused_run):
    app, run_id = paused_run
    edit = _api_fn(app, "reer_edit")
    segs = _segments(store, run_id)
    before = len(store.events(run_id))
    out = edit(run_id, 1, segs[0] + "\n")  # the same text (a trailing newline is no change)
    assert "is the same as segment 1" in _by_id(out, "reer-edit-note")  # answered at once, under the box
    assert not [e for e in store.events(run_id) if isinstance(e, ev.SegmentDecided) and e.action == "edit"]
    assert len(store.events(run_id)) == before and store.get_run(run_id)["status"] == "paused"


# ---- point 9: the plot's axes mean something; a perplexity rise on an accepted step says why ----------

def _run_events(max_steps: int, steps: list[tuple[float, float, float, float]]) -> list:
    """A REER run's events: the initial draft at (score 1.10, ppl 8.09), then per step two candidates
    with (score, ppl) each, the first accepted by the search."""
    rid = "r" * 32
    out: list = [ev.ReerStarted(rid, item_id="p", query=QUERY, reference=REFERENCE, model=SCRIPTED,
                               settings={"max_steps": max_steps, "threshold": 0.25}),
                 ev.InitialDraft(rid, thinking="a\n\nb", segments=("a", "b"), score={"score": 1.10, "ppl": 8.09})]
    for step, (s0, p0, s1, p1) in enumerate(steps, start=1):
        out.append(ev.SegmentStarted(rid, step=step, segment=0, text="a"))
        for k, (sc, pp) in enumerate(((s0, p0), (s1, p1))):
            out.append(ev.CandidateGenerated(rid, step=step, segment=0, index=k, raw=f"c{k}", text=f"cand {k}"))
            out.append(ev.CandidateScored(rid, step=step, segment=0, index=k, score={"score": sc, "ppl": pp}))
        out.append(ev.SegmentDecided(rid, step=step, segment=0, action="accept", by="search", chosen=0,
                                     text="cand 0", segments=("cand 0", "b"), score={"score": s0, "ppl": p0}))
    return out


def test_the_score_axis_fits_the_points_and_the_step_axis_the_budget():
    from studio.views.plots import empty_figure, reer_figure

    events = _run_events(12, [(1.05, 8.10, 1.20, 9.0)])
    fig = reer_figure(events, "score")
    lo, hi = fig.layout.yaxis.range  # points 1.05..1.20 fill the view; the far threshold is named instead
    assert 0.9 < lo < 1.05 and 1.20 < hi < 1.35, (lo, hi)
    assert any("stop threshold 0.25 (below this view)" in (a.text or "") for a in fig.layout.annotations)
    near = reer_figure(_run_events(12, [(0.30, 1.4, 0.40, 1.5)]), "score").layout.yaxis.range
    assert 0 < near[0] < 0.25 and 1.10 < near[1] < 1.3, near  # a threshold near the points is in view
    low = reer_figure(_run_events(12, [(0.05, 1.05, 0.40, 1.5)]), "score").layout.yaxis.range
    assert low[0] == 0.0, low  # the margin never takes a score (0..2) below 0
    assert tuple(fig.layout.xaxis.range) == (-0.4, 12.4)  # the budget of 12 steps, from step 1
    assert fig.layout.xaxis.dtick == 2  # about ten ticks, not twelve crowded ones
    assert tuple(reer_figure(_run_events(2, [(1.05, 8.10, 1.2, 9.0)]), "score").layout.xaxis.range) == (-0.4, 2.4)
    plo, phi = reer_figure(events, "ppl").layout.yaxis.range
    assert 7.5 < plo < 8.09 and 9.0 < phi < 9.6, (plo, phi)  # perplexity: fitted too, no threshold line
    elo, ehi = empty_figure().layout.yaxis.range  # before any point: the score's own scale
    assert (elo, ehi) == (0.0, 2.0)


def test_an_accepted_step_whose_perplexity_rose_says_it_was_accepted_on_score():
    from studio.views.plots import reer_figure

    events = _run_events(4, [(1.05, 8.10, 1.20, 8.00), (1.00, 8.05, 1.30, 9.0)])
    fig = reer_figure(events, "ppl")
    notes = [a for a in fig.layout.annotations if "accepted on score" in (a.text or "")]
    assert len(notes) == 1 and notes[0].x == 1, [a.text for a in fig.layout.annotations]
    why = notes[0].hovertext
    assert "clipped score fell 1.1000 → 1.0500" in why and "perplexity rose 8.09 → 8.10" in why
    assert "lowest clipped score" in why  # the engine's rule, in words
    accepted = next(t for t in fig.data if t.name == "accepted candidate")
    assert "accepted on score" in accepted.text[0] and "accepted on score" not in accepted.text[1]
    assert not [a for a in reer_figure(events, "score").layout.annotations if "accepted on" in (a.text or "")]


# ---- point 6: the heat maps belong to the run on screen ---------------------------------------------

def test_heat_maps_of_an_earlier_run_are_cleared_when_another_run_is_on_screen(store, paused_run):
    from studio.pages.reer import DEMO, REAL, SETTINGS

    app, first = paused_run
    pid = store.add_prompt(QUERY + " (another)", REFERENCE)[0]
    second = _state(_api_fn(app, "reer_step")(pid, None, "", *[DEMO.get(k, getattr(REAL, k)) for k in SETTINGS]))
    _until(lambda: store.get_run(second)["status"] in ("paused", "finished"), "the second run's step ended")

    heat = _api_fn(app, "reer_heatmap")(first)
    drawn = _by_id(heat, "reer-heat-current")
    assert f'data-run="{first}"' in drawn and "perplexity" in drawn  # the title names the run it scored
    heat_of = next(v for k, v in heat.items() if type(k).__name__ == "State")
    assert heat_of == first

    tick = _api_fn(app, "reer_tick")
    same = tick(first, "", "score", heat_of)  # the same run on screen: the maps stay
    assert not any((getattr(k, "elem_id", None) or "").startswith("reer-heat") for k in same)
    for seen in ("", "unchanged"):  # another run on screen, with news or without: the maps go
        out = tick(second, seen, "score", heat_of)
        assert _by_id(out, "reer-heat-initial") == ""
        assert first not in _by_id(out, "reer-heat-current") and "Press Heat map" in _by_id(out, "reer-heat-current")
        assert next(v for k, v in out.items() if type(k).__name__ == "State" and v is None) is None
