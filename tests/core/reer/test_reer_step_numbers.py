"""Step numbers of a steered REER run (issue 30, the last low item): a person's edit and the search's
next expansion once got the same step number. Now every decision (an expansion's accept, keep, force
or skip, and an edit) has a number of its own (core.reer.state), the budget still counts expansions,
and runs stored with the old numbering replay, plot and pair the same.

The run here interleaves edits with expansions, one of them while candidates wait (they go stale and
are written again), then a force, a skip and a last edit; the model is the package's scripted one,
so a run takes milliseconds."""
from __future__ import annotations

import dataclasses

from test_reer import S
from test_steering_race import EDIT, numbered_lm

from core import events as ev
from core.pairs import reer_pairs
from core.reer.config import ReerConfig
from core.reer.search import Controls, reer_search
from core.reer.state import ReerState, record_from_events
from core.runs.controls import Shown, text_hash
from studio.views.plots import reer_figure
from studio.views.reer import fold, shown_of

CFG = ReerConfig(candidates=2, max_steps=4, threshold=0.0, draft_max_new_tokens=120, candidate_max_new_tokens=60)
STEPPED = (ev.SegmentStarted, ev.CandidateGenerated, ev.CandidateScored, ev.SegmentDecided)


def search(lm, controls, history, hold=False):
    """The run continued from `history`; `hold`: pause once a step's two candidates are scored."""
    out = []
    for e in reer_search(lm, "run", S["id"], S["query"], S["reference"], CFG, controls=controls, history=history):
        out.append(e)
        if hold and isinstance(e, ev.CandidateScored) and e.index == 1:
            controls.pause()
    return out


def steered_run() -> list[ev.Event]:
    """Expansion; edit; expansion held with its candidates waiting; an edit while they wait (stale);
    the step written again and a candidate forced; an edit; a skip; the last expansion."""
    lm = numbered_lm()
    c = Controls()
    c.step(1)
    events = search(lm, c, [])  # the draft and expansion 1, decided by the search
    c = Controls()
    c.edit(2, EDIT + " One.", annotator="ana")  # no candidates wait: an edit between two expansions
    events += search(lm, c, events, hold=True)  # expansion 2 holds its candidates
    assert events[-1].kind == "run_paused" and ReerState.from_events(events).waiting() is not None
    c = Controls()
    c.edit(0, EDIT + " Two.", annotator="ben")  # while the candidates wait: they go stale
    events += search(lm, c, events, hold=True)  # written again, held
    step, seg, attempt, pending = ReerState.from_events(events).waiting()
    c = Controls()
    c.force(1, annotator="cy", shown=Shown("run", step, seg, 1, attempt, text_hash(pending[1][0])))
    c.step(1)
    events += search(lm, c, events)  # the force
    c = Controls()
    c.edit(3, EDIT + " Three.", annotator="dee")
    c.skip(annotator="eve")  # taken by the next expansion, before its candidates are written
    events += search(lm, c, events)  # the edit, the skip, the last expansion and the finish
    assert events[-1].kind == "run_finished", events[-1]
    return events


def decisions(events):
    return [e for e in events if isinstance(e, ev.SegmentDecided)]


def check_numbers(events, seen: int = 0):
    """No two decisions share a step; a new number is one above the highest so far (a half-written step
    redone after a crash keeps its number); an expansion's candidates and decision carry its number."""
    steps = [d.step for d in decisions(events)]
    assert len(steps) == len(set(steps)), f"two decisions share a step: {steps}"
    assert steps == sorted(steps), steps
    open_, own = None, None  # seen: the highest number before `events`
    for e in events:
        if isinstance(e, ev.SegmentStarted):
            assert e.step in (seen + 1, open_), "a new writing of candidates reused a number"
            open_ = e.step
        elif isinstance(e, (ev.CandidateGenerated, ev.CandidateScored)) and e.index >= 0:
            assert e.step == open_
        elif isinstance(e, ev.CandidateScored):  # a person's edit, scored: a fresh number
            assert e.step == seen + 1
            own = e.step
        elif isinstance(e, ev.SegmentDecided):
            want = {"edit": {own}, "skip": {open_ or seen + 1}}
            assert e.step in want.get(e.action, {open_}), (e.action, e.step, open_, seen)
            open_ = None
        if isinstance(e, STEPPED):
            seen = max(seen, e.step)


def old_numbering(events):
    """The same events as the search numbered them before the change: every event of an expansion, and
    an edit, at (expansions decided so far) + 1, so an edit shares the next expansion's number."""
    out, done = [], 0
    for e in events:
        if isinstance(e, STEPPED):
            e = dataclasses.replace(e, step=done + 1)
        if isinstance(e, ev.SegmentDecided) and e.action != "edit":
            done += 1
        out.append(e)
    return out


def test_no_two_decisions_share_a_step_with_edits_interleaved_and_one_while_candidates_wait():
    events = steered_run()
    check_numbers(events)
    got = [(d.step, d.action, d.annotator) for d in decisions(events)]
    assert got == [(1, "accept", None), (2, "edit", "ana"), (4, "edit", "ben"), (5, "force", "cy"),
                   (6, "edit", "dee"), (7, "skip", "eve"), (8, "keep", None)]  # 3: the stale candidates
    # the budget counts expansions only: four, whatever the edits
    assert sum(d.action != "edit" for d in decisions(events)) == CFG.max_steps
    assert events[-1].reason == "max_steps"
    # each edit's own score event carries the edit's number
    for d in decisions(events):
        if d.action == "edit":
            own = [e for e in events if isinstance(e, ev.CandidateScored) and e.index == -1 and e.step == d.step]
            assert len(own) == 1 and own[0].score == d.score
    # the stale writing keeps its number, undecided; the forced candidate is one of the writing after the edit
    started = [e.step for e in events if isinstance(e, ev.SegmentStarted)]
    undecided = set(started) - {d.step for d in decisions(events)}
    assert len(undecided) == 1
    force = next(d for d in decisions(events) if d.action == "force")
    assert force.step == started[started.index(min(undecided)) + 1]


def test_a_resume_after_a_crash_at_any_event_numbers_on_without_collision():
    events = steered_run()
    lm = numbered_lm()
    first = next(i for i, e in enumerate(events) if isinstance(e, ev.InitialDraft))
    for cut in range(first + 1, len(events)):
        prefix = [e for e in events[:cut] if e.kind not in ("run_paused", "run_finished")]
        check_numbers(prefix + search(lm, Controls(), prefix))
    # a half-written step is finished under its own number, with the same seed: the same candidates
    cut = next(i for i, e in enumerate(events) if isinstance(e, ev.CandidateGenerated)
               and e.step > decisions(events)[1].step) + 1  # inside the first expansion after the first edit
    more = search(numbered_lm(), Controls(), events[:cut])
    assert more[0].kind == "segment_started" and more[0].step == events[cut - 1].step


def test_runs_stored_with_the_old_numbering_replay_resume_plot_and_pair_the_same():
    new = steered_run()
    old = old_numbering(new)
    steps = [d.step for d in decisions(old)]
    assert len(steps) > len(set(steps))  # the old collision, as stores before the change hold it
    # replay: the same trajectory, score and budget
    a, b = ReerState.from_events(new), ReerState.from_events(old)
    assert (a.segments, a.score, a.steps_done) == (b.segments, b.score, b.steps_done)
    # plot: the same points at the same places (x counts expansions; an edit half a step before the next)
    fa, fb = reer_figure(new), reer_figure(old)
    assert [(t.name, list(t.x), list(t.y)) for t in fa.data] == [(t.name, list(t.x), list(t.y)) for t in fb.data]
    path = next(t for t in fb.data if t.name == "trajectory")
    assert list(path.x) == [0, 1, 1.5, 1.5, 2, 2.5, 3, 4]  # the x the old code gave (step, step - 0.5 for an edit)
    assert not any(t.name == "awaiting decision" for t in fa.data)  # the stale candidates wait for nothing
    # pairs: the same pairs, only the step numbers differ
    def key(p):
        return (p["source"], p["chosen"][0]["content"], p["rejected"][0]["content"], p["margin"], p["annotator"])
    pa, pb = reer_pairs(new), reer_pairs(old)
    assert pa and sorted(map(key, pa)) == sorted(map(key, pb))
    assert len({p["id"] for p in pa}) == len(pa)
    # an edit's pair carries the edit's own step; a force's pairs the forced expansion's
    human = {p["step"] for p in pa if p["source"] == "reer-human"}
    assert human == {d.step for d in decisions(new) if d.action in ("edit", "force")}
    # resume: a run stored with the old numbering, cut after an edit, goes on above its highest number
    cut = max(i for i, e in enumerate(old) if isinstance(e, ev.SegmentDecided) and e.action == "edit")
    prefix = [e for e in old[:cut + 1] if e.kind != "run_paused"]
    more = search(numbered_lm(), Controls(), prefix)
    top = max(e.step for e in prefix if isinstance(e, STEPPED))
    assert more and all(e.step > top for e in more if isinstance(e, STEPPED))
    check_numbers(more, top)


def test_the_record_lists_every_decision_once_and_the_page_names_the_number_the_search_uses():
    events = steered_run()
    rec = record_from_events(events)
    by_step = {st["step"]: st for st in rec["steps"]}
    assert len(by_step) == len(rec["steps"])
    for d in decisions(events):
        assert (by_step[d.step]["action"], by_step[d.step]["segment"], by_step[d.step]["chosen"]) == \
            (d.action, d.segment, d.text)
    # the page's identities (a skip names the next step) follow the search's numbering at every point
    for cut in range(1, len(events) + 1):
        v = fold(events[:cut])
        shown = shown_of("run", v)
        if shown is not None:
            assert shown["next"][0] == ReerState.from_events(events[:cut]).next_step(), cut
    # right after the edit that made waiting candidates stale, the cards say so
    stale_edit = next(d for d in decisions(events)[2:] if d.action == "edit")
    v = fold(events[:events.index(stale_edit) + 1])
    assert v.stale_by == stale_edit.segment and {c["state"] for c in v.cards} == {"stale"}


def test_the_page_names_a_step_as_the_status_and_progress_lines_count_it():
    """The candidates' heading said "Step 8" while the progress line said "step 4/4" and the status
    line "3 of 4 steps done": "step" was the record's number in one place and the expansion's
    ordinal in the others. The page now names a step by its ordinal (the plot's x, Max steps), with
    the record's number beside it where the two differ; and the stale candidates' hover named the
    segment of the edit that closed them, not the one they rewrote."""
    from studio.views.plots import reer_figure
    from studio.views.reer import candidates_html, fold

    events = steered_run()
    v = fold(events)
    started = [e for e in events if isinstance(e, ev.SegmentStarted)]
    assert (v.nth, v.step) == (4, started[-1].step) and v.step != 4  # edits and a skip took numbers
    assert f"Step 4 (#{v.step} in the record) · segment {v.step_segment + 1}" in candidates_html(v)
    fig = reer_figure(events)
    hovers = [(t.name, x, text.split("<br>")[0]) for t in fig.data for x, text in zip(t.x, t.text or [])]
    cands = [(x, h) for name, x, h in hovers if name in ("accepted candidate", "rejected candidate")]
    seg_of = {e.step: e.segment for e in started}
    assert cands
    for x, h in cands:
        assert h.startswith(f"step {round(x)}"), h  # the ordinal the candidate sits at on the x axis
        number = int(h.split("(#")[1].split(" ")[0]) if "(#" in h else round(x)  # the record's, when it differs
        assert number != round(x) or "(#" not in h, h
        assert f"segment {seg_of[number] + 1} ·" in h, h  # the segment that step rewrote
    path = next(t for t in fig.data if t.name == "trajectory")
    assert "after step 1: accept (search)" in path.text
    assert any(t.startswith("after your edit of segment") and "in the record" in t for t in path.text)
