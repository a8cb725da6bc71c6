"""The steering race at engine level: a person's force, edit or skip names what they saw
(core.runs.controls.Shown), and the REER search applies it to exactly that or refuses it in words;
it never decides on a text the person never saw.

The race as a curator met it: a run paused with two candidates waiting; the person edited a
segment (rescored at once), then pressed "Accept candidate #1". The old search regenerated the
step's candidates and accepted the new #1. Here the model is the package's scripted one
(core.models.scripted): numbered rewrites, so a new candidate's text always differs from the
shown one's, and its own scoring, so a run takes milliseconds."""
from __future__ import annotations

import pytest
from test_reer import DRAFT, S

from core import events as ev
from core.models.scripted import Rule, ScriptedLM
from core.reer.config import ReerConfig
from core.reer.search import Controls, reer_search
from core.reer.state import ReerState
from core.runs.controls import Shown, text_hash

CFG = ReerConfig(candidates=2, max_steps=3, threshold=0.0, draft_max_new_tokens=120, candidate_max_new_tokens=60)
DRAFT_ASK, REWRITE_ASK = "Write your private thinking", "inside <rewrite></rewrite>"
EDIT = "My own plan: end on the letter, not the storm, and let the keeper read it twice before the boat."


def numbered_lm() -> ScriptedLM:
    """Every candidate ever written is a new text: rewrite number (call * n + sample)."""
    return ScriptedLM(rules=[
        Rule(when=(DRAFT_ASK,), reply=DRAFT, name="draft"),
        Rule(when=(REWRITE_ASK,), name="rewrite",
             reply=lambda ask: f" and I weigh option {ask.nth * ask.config.n + ask.sample} with care, then settle it."
                               "</rewrite>"),
    ], name="scripted:numbered")


def search(lm, controls, history=()):
    return list(reer_search(lm, "run", S["id"], S["query"], S["reference"], CFG, controls=controls,
                            history=history))


def paused_with_candidates(lm):
    """(controls, events) of a run paused before step 1's decision, its two candidates waiting."""
    controls = Controls()
    events = []
    for e in reer_search(lm, "run", S["id"], S["query"], S["reference"], CFG, controls=controls):
        events.append(e)
        if isinstance(e, ev.CandidateScored) and e.index == 1:
            controls.pause()
    assert events[-1].kind == "run_paused"
    waiting = ReerState.from_events(events).waiting()
    assert waiting is not None and sorted(waiting[3]) == [0, 1]
    controls.resume()
    return controls, events


def shown_candidate(events, index: int) -> Shown:
    step, seg, attempt, pending = ReerState.from_events(events).waiting()
    return Shown("run", step, seg, index, attempt, text_hash(pending[index][0]))


def decided(events):
    return [e for e in events if isinstance(e, ev.SegmentDecided)]


@pytest.mark.parametrize("named", [True, False], ids=["force-names-the-candidate", "force-by-number-only"])
def test_force_after_an_edit_is_the_shown_candidate_or_refused_never_a_new_text(named):
    lm = numbered_lm()
    controls, events = paused_with_candidates(lm)
    shown = shown_candidate(events, 0)
    shown_texts = {c.text for c in events if isinstance(c, ev.CandidateGenerated)}
    # the person edits segment 2 while the candidates wait; it is rescored at once and the run pauses again
    controls.edit(1, EDIT)
    controls.pause()
    events += search(lm, controls, events)
    assert [d.action for d in decided(events)] == ["edit"] and events[-1].kind == "run_paused"
    assert ReerState.from_events(events).waiting() is None  # the edit made the waiting candidates stale
    # then "Accept candidate #1", as on the page: the force and one step
    controls = Controls()
    controls.force(0, shown=shown) if named else controls.force(0)
    controls.step(1)
    more = search(lm, controls, events)
    forced = [d for d in decided(more) if d.action == "force"]
    assert all(d.text in shown_texts for d in forced), "a force accepted a candidate the person never saw"
    assert not forced  # the shown one no longer waits: refused, in words, and nothing else was decided
    refusal = [e for e in more if isinstance(e, ev.RunError) and e.where == "force"]
    assert refusal and "refused" in refusal[0].message and "no longer wait" in refusal[0].message
    assert not decided(more) and more[-1].kind == "run_paused"
    assert not any(isinstance(e, ev.CandidateGenerated) for e in more)  # no 45 s spent writing unseen ones


def test_force_of_the_waiting_candidate_it_names_is_applied():
    lm = numbered_lm()
    controls, events = paused_with_candidates(lm)
    shown = shown_candidate(events, 1)
    text = ReerState.from_events(events).waiting()[3][1][0]
    controls.force(1, annotator="ada", shown=shown)
    controls.step(1)
    more = search(lm, controls, events)
    d = decided(more)[0]
    assert (d.action, d.by, d.chosen, d.text, d.annotator) == ("force", "human", 1, text, "ada")


def test_a_force_whose_text_or_writing_differs_is_refused():
    lm = numbered_lm()
    controls, events = paused_with_candidates(lm)
    good = shown_candidate(events, 0)
    for bad, words in ((Shown("run", good.step, good.segment, 0, good.attempt, text_hash("another text")),
                        "not the text you saw"),
                       (Shown("run", good.step, good.segment, 0, good.attempt + 1, good.text_hash),
                        "you saw the candidates of step"),
                       (Shown("other-run", good.step, good.segment, 0, good.attempt, good.text_hash), "not run")):
        c = Controls()
        c.force(0, shown=bad)
        c.step(1)
        more = search(lm, c, events)
        assert not decided(more) and more[-1].kind == "run_paused", bad
        assert words in next(e.message for e in more if isinstance(e, ev.RunError) and e.where == "force")
    # the candidates still wait: the right identity is applied after the refusals
    c = Controls()
    c.force(0, shown=good)
    c.step(1)
    assert decided(search(lm, c, events))[0].chosen == 0


def test_after_an_edit_the_step_is_written_again_and_its_new_candidates_can_be_forced():
    lm = numbered_lm()
    controls, events = paused_with_candidates(lm)
    controls.edit(1, EDIT)
    controls.pause()
    events += search(lm, controls, events)
    # Step writes the step's candidates again, under a step number of their own; pause to hold them
    c = Controls()
    more = []
    for e in reer_search(lm, "run", S["id"], S["query"], S["reference"], CFG, controls=c, history=events):
        more.append(e)
        if isinstance(e, ev.CandidateScored) and e.index == 1:
            c.pause()
    events += more
    step, seg, attempt, pending = ReerState.from_events(events).waiting()
    assert (step, attempt) == (3, 1)  # 1: the stale candidates (undecided), 2: the edit, 3: written again
    c = Controls()
    c.force(0, shown=Shown("run", step, seg, 0, attempt, text_hash(pending[0][0])))
    c.step(1)
    d = decided(search(lm, c, events))[0]
    assert d.action == "force" and d.text == pending[0][0]


def test_skip_and_edit_of_what_is_no_longer_on_screen_are_refused():
    lm = numbered_lm()
    controls, events = paused_with_candidates(lm)
    state = ReerState.from_events(events)
    # a skip for step 2 (the person saw step 2 coming) while step 1 is still undecided
    c = Controls()
    c.skip(shown=Shown("run", 2, 1, None, 0, text_hash(state.segments[1])))
    c.step(1)
    more = search(lm, c, events)
    assert not decided(more) and "Skip refused" in next(e.message for e in more if e.kind == "run_error")
    # an edit of segment 1 as it read before the search rewrote it
    c = Controls()
    c.force(0, shown=shown_candidate(events, 0))
    c.step(1)
    events += search(lm, c, events)
    old = text_hash(state.segments[0])
    assert text_hash(ReerState.from_events(events).segments[0]) != old  # the force rewrote segment 1
    c = Controls()
    c.edit(0, EDIT, shown=Shown("run", 0, 0, None, 0, old))
    c.pause()
    more = search(lm, c, events)
    assert not decided(more)
    assert "not the text you saw" in next(e.message for e in more if e.kind == "run_error" and e.where == "edit")


# ---- R2: a judgment names the version it judged ---------------------------------------------------

def test_r2_judgment_of_a_version_no_longer_waiting_is_refused_never_applied_to_another(store):
    from r2_fakes import FakeLM

    from core.r2.config import R2Config
    from core.r2.jobs import NoPendingJudgment, pending_request, r2_job, submit_judgment
    from core.r2.judge import DEFAULT_RUBRIC, human_judgment

    pid, _ = store.add_prompt("Write about a lighthouse keeper.", "ref", rubric=list(DEFAULT_RUBRIC[:2]))
    cfg = R2Config(max_rounds=2, threshold=10, judge_mode="human")
    run_id = list(r2_job(store, FakeLM(), None, pid, cfg))[0].run_id
    assert pending_request(store, run_id).version == 0
    seen = 0  # the person reads version 0; meanwhile another tab judges it and the run moves on to version 1
    submit_judgment(store, run_id, human_judgment(DEFAULT_RUBRIC[:2], 4, "From the other tab."), version=0)
    list(r2_job(store, FakeLM(), None, pid, cfg))
    assert pending_request(store, run_id).version == 1
    n = len(store.events(run_id))
    with pytest.raises(NoPendingJudgment, match="version 0, which no longer waits"):
        submit_judgment(store, run_id, human_judgment(DEFAULT_RUBRIC[:2], 9, "Judged version 0."), version=seen)
    assert len(store.events(run_id)) == n and pending_request(store, run_id).version == 1  # nothing stored
