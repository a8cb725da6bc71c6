"""The REER search: its logic with scripted generation, and end to end on the built-in model.

`ScriptedLM` is the package's scripted model (core.models.scripted) answering from a script, so a
test can pin what the search sees (a failed parse, a worse candidate); scoring goes to a real model.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
from needs import ROOT
from test_reer_decision import check_search_decisions

from core import events as ev
from core.data.items import Item
from core.models import scripted
from core.models.scoring import score
from core.reer.config import ReerConfig
from core.reer.jobs import reer_items, reer_job, run_record
from core.reer.search import Controls, parse_rewrite, reer_search, run_reer
from core.reer.state import ReerState, record_from_events
from core.store import open_store

SAMPLES = [json.loads(l) for l in open(ROOT / "data" / "samples.jsonl")]
S = SAMPLES[1]
DRAFT = "\n\n".join(
    f"Paragraph {i}: I want the keeper to notice the letter slowly, and I keep asking myself what the reader "
    f"needs to feel at this point, {word}, before the storm and the boat arrive in the story."
    for i, word in enumerate(["quietly", "with doubt", "with a small joke", "with weight"])
)
SMALL = ReerConfig(candidates=2, max_steps=3, draft_max_new_tokens=120, candidate_max_new_tokens=60)


class Unclipped(ReerConfig):
    """REER settings scored without the clip (clip_min -100): on the tiny random model every
    log-prob is below -2, so clipped scores all tie at 2.0 and every decision is a "keep";
    unclipped they differ (by ~1e-4), so searches on it accept and keep for real."""

    def scoring(self):
        return dataclasses.replace(super().scoring(), clip_min=-100.0)


SMALL_UNCLIPPED = Unclipped(**{f.name: getattr(SMALL, f.name) for f in dataclasses.fields(SMALL)})


class ScriptedLM(scripted.ScriptedLM):
    """Generation from a script (a list of lists of replies, one list per call; a call's samples
    cycle through its list); stop strings, budgets and finish reasons are the scripted model's;
    scoring is the real model's. `configs`: each call's GenerationConfig."""

    def __init__(self, real, script):
        self.real, self.script, self.configs = real, list(script), []
        super().__init__(rules=[scripted.Rule(reply=self._next)], name="scripted+" + real.name,
                         max_length=real.max_length)

    def _next(self, ask: scripted.Ask) -> str:
        if ask.sample == 0:
            self.configs.append(ask.config)
        replies = self.script[ask.nth]  # an IndexError: the test's script ran out
        return replies[ask.sample % len(replies)]

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        return self.real.loglikelihood(requests, precision, truncate)

    def chat_text(self, messages, add_generation_prompt=True):  # scored texts are laid out as the real model's
        return self.real.chat_text(messages, add_generation_prompt)


def rewrites(*texts):
    """Scripted candidate replies; short ones get padded to a real sentence."""
    pad = lambda t: t if len(t.split()) >= 3 else f"{t} then a few more words."
    return [[f" {pad(t)}</rewrite>" for t in pair] for pair in texts]


def run_all(lm, cfg=SMALL, controls=None, history=()):
    return list(reer_search(lm, "run", S["id"], S["query"], S["reference"], cfg, controls=controls, history=history))


# ---- pure parsing -----------------------------------------------------------------------------

def test_parse_rewrite():
    assert parse_rewrite(" the storm first. Hmm, maybe later.", "<rewrite>\nI want", True)[0] == \
        "I want the storm first. Hmm, maybe later."
    assert parse_rewrite("no tags at all", "", True) == (None, "no <rewrite> tag in the output")
    text, err = parse_rewrite(" think a long thought here. And then a cut-off frag", "<rewrite>\nI", False)
    assert text == "I think a long thought here." and err is None  # cut back to the last full sentence
    assert parse_rewrite(" unfinished", "<rewrite>\nI", False)[1].startswith("the rewrite was cut off")
    assert parse_rewrite("<analysis>x</analysis><rewrite>Para one.\n\nPara two is here.</rewrite>", "", True)[0] == \
        "Para one.\nPara two is here."  # one segment stays one segment


# ---- search logic with scripted generation (tiny model scores) -----------------------------

def test_search_records_every_candidate_and_never_gets_worse(tiny_lm):
    """Scored without the clip (Unclipped): clipped, every score here ties at 2.0 and all is "keep"."""
    same = " ".join(DRAFT.split("\n\n")[0].split()[4:])  # a "rewrite" that changes nothing
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("more detail here.", same),
                                                  ("yes, the storm.", "Zebra quantum xylophone jumps over."),
                                                  ("Zebra quantum xylophone jumps over.", "two more.")))
    events = run_all(lm, SMALL_UNCLIPPED)  # scores that differ: the decisions are not ties
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["run_started", "initial_draft"] and kinds[-1] == "run_finished"
    assert kinds.count("candidate_generated") == 6 and kinds.count("segment_decided") == 3
    failed = [e for e in events if isinstance(e, ev.CandidateGenerated) and e.text is None]
    assert len(failed) == 1 and "unchanged" in failed[0].error  # recorded, not scored
    rec = record_from_events(events)
    assert rec["final_score"] <= rec["initial_score"]
    assert [s["step"] for s in rec["steps"]] == [1, 2, 3] and rec["finish_reason"] == "max_steps"
    scores = [e.score["score"] for e in events if isinstance(e, ev.SegmentDecided)]
    assert all(b <= a for a, b in zip([rec["initial_score"]] + scores, scores))
    assert check_search_decisions(rec) == ["keep", "accept", "accept"]  # worse, then two that beat it
    # the prefill kept the segment's opening words
    assert lm.calls[1][2].startswith("<rewrite>\nParagraph 0:")


def test_extend_mode_prefills_the_whole_segment_and_no_repeat_reaches_the_generator(tiny_lm):
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("It adds a detail.", "And another one."),
                                                  ("more.", "most."), ("again.", "anew.")))
    events = run_all(lm, dataclasses.replace(SMALL, keep_opening_words=-1, no_repeat_ngram=3))
    first = DRAFT.split("\n\n")[0]
    assert lm.calls[1][2] == "<rewrite>\n" + " ".join(first.split())  # the whole segment, continued
    assert all(c.no_repeat_ngram == 3 for c in lm.configs)  # draft and rewrites alike
    texts = [e.text for e in events if isinstance(e, ev.CandidateGenerated) and e.step == 1]
    assert texts[0] == " ".join(first.split()) + " It adds a detail."


def test_unparsable_output_is_a_failed_candidate_not_a_crash(tiny_lm):
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + [["</rewrite>", "\u0000 <<garbage"]] * 3)
    events = run_all(lm)
    gens = [e for e in events if isinstance(e, ev.CandidateGenerated)]
    assert gens and all(g.text is None and g.error for g in gens)
    assert not any(isinstance(e, ev.CandidateScored) for e in events)
    assert all(e.action == "keep" for e in events if isinstance(e, ev.SegmentDecided))
    assert events[-1].kind == "run_finished"


def test_pause_then_resume_from_history_equals_an_uninterrupted_run(tiny_lm):
    script = [[DRAFT]] + rewrites(("a.", "b b."), ("c c c.", "d."), ("e e.", "f."))
    whole = run_all(ScriptedLM(tiny_lm, script))
    controls = Controls()
    controls.step(1)  # one expansion, then pause
    first = run_all(ScriptedLM(tiny_lm, script), controls=controls)
    assert first[-1].kind == "run_paused" and sum(e.kind == "segment_decided" for e in first) == 1
    controls.resume()
    rest = run_all(ScriptedLM(tiny_lm, script[:1] + script[2:]), controls=controls, history=first)
    a, b = record_from_events(whole), record_from_events(first + rest)
    assert b["thinking"] == a["thinking"] and b["final_score"] == a["final_score"]
    assert [s["chosen"] for s in b["steps"]] == [s["chosen"] for s in a["steps"]]


def test_human_force_skip_edit_and_stop(tiny_lm):
    controls = Controls()
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("first option.", "second option."), ("x.", "y."), ("z.", "w.")))
    events = []
    for e in reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL, controls=controls):
        events.append(e)
        if isinstance(e, ev.CandidateScored) and e.index == 1:
            controls.pause()  # held before the decision
    assert events[-1].kind == "run_paused"
    controls.force(1)
    controls.step(1)
    more = list(reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL, controls=controls,
                            history=events))
    assert more[-1].kind == "run_paused"
    # an edit, then a skip of the next segment (an edit uses up no step); a force after an edit that made
    # the held candidates stale is refused (tests/core/reer/test_steering_race.py)
    controls.edit(3, "My own plan: end on the letter, not the storm. Hmm, maybe the boat comes back.")
    controls.skip()
    controls.step(1)
    more += list(reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL, controls=controls,
                             history=events + more))
    controls.stop()
    more += list(reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL, controls=controls,
                             history=events + more))
    decided = [e for e in more if isinstance(e, ev.SegmentDecided)]
    assert [d.action for d in decided] == ["force", "edit", "skip"] and all(d.by == "human" for d in decided)
    assert decided[0].chosen == 1 and decided[2].segments[3].startswith("My own plan")
    edit = decided[1]
    assert edit.segments[3].startswith("My own plan")
    exact = score(tiny_lm, S["query"], list(edit.segments), S["reference"], SMALL.scoring())
    assert abs(edit.score["score"] - exact.score) < 1e-6  # rescored at once
    skip = next(e for e in decided if e.action == "skip")
    assert skip.by == "human" and skip.text == skip.segments[skip.segment]
    assert more[-1].kind == "run_finished" and more[-1].reason == "stopped"


def test_draft_that_is_too_short_is_dropped(tiny_lm):
    events = run_all(ScriptedLM(tiny_lm, [["Just one line."]]))
    assert events[-1].reason == "dropped" and not events[-1].filters["passed"]
    assert any("too short" in r for r in events[-1].filters["reasons"])


def test_job_saves_every_event_and_the_trajectory(tiny_lm):
    store = open_store(None)
    pid, _ = store.add_prompt(S["query"], S["reference"], id=S["id"])
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("a.", "b."), ("c.", "d."), ("e.", "f.")))
    seen = list(reer_job(store, lm, pid, SMALL))
    run = store.list_runs(kind="reer")[0]
    assert run["status"] == "finished"
    assert [e.to_dict() | {"t": 0} for e in store.events(run["id"])] == [e.to_dict() | {"t": 0} for e in seen]
    traj = store.trajectory_for_run(run["id"])
    assert traj["thinking"] == seen[-1].thinking and traj["status"] == "pending"
    assert run_record(store, run["id"])["final_score"] == traj["final_score"]


def test_config_roundtrip():
    cfg = ReerConfig(candidates=3, seed=7)
    assert ReerConfig.from_dict(json.loads(json.dumps(cfg.as_dict()))) == cfg
    old = {k: v for k, v in cfg.as_dict().items() if k != "no_repeat_ngram"}  # stored before the ban
    assert ReerConfig.from_dict(old).no_repeat_ngram == 0 and cfg.no_repeat_ngram == 4


# ---- end to end on the built-in model -----------------------------------------------------

@pytest.mark.model
def test_real_search_same_seed_same_trajectory_and_never_worse(builtin_lm):
    cfg = ReerConfig(candidates=2, max_steps=1, draft_max_new_tokens=200, candidate_max_new_tokens=60, seed=0,
                    min_segment_chars=60)
    a = run_reer(builtin_lm, "r1", S["id"], S["query"], S["reference"], cfg)
    b = run_reer(builtin_lm, "r2", S["id"], S["query"], S["reference"], cfg)
    assert a["finish_reason"] == "max_steps", a["filters"]
    # the same text; the score to fp32 rounding (the second run reuses the first run's kept keys/values)
    assert a["thinking"] == b["thinking"] and a["final_score"] == pytest.approx(b["final_score"], rel=1e-6)
    assert a["final_score"] <= a["initial_score"]
    assert len(a["steps"]) == 1 and all(len(s["candidates"]) == 2 for s in a["steps"])
    check_search_decisions(a)  # the step's accept or keep is the one its candidates' scores call for
    for st in a["steps"]:
        for c in st["candidates"]:
            assert (c["text"] is None) == (c["score"] is None)  # failed ones are kept, unscored


@pytest.mark.model
def test_real_human_edit_is_rescored_and_recorded(builtin_lm):
    """The built-in model scores the draft and the edit; the draft is scripted (the generation
    path is the test above's), so no 200-token draft is sampled just to be edited away."""
    store = open_store(None)
    pid, _ = store.add_prompt(S["query"], S["reference"], id=S["id"])
    controls = Controls()
    controls.step(0)  # pause right after the draft
    cfg = ReerConfig(candidates=2, max_steps=1, draft_max_new_tokens=200, candidate_max_new_tokens=60,
                    min_segment_chars=60)
    lm = ScriptedLM(builtin_lm, [[DRAFT]])  # an IndexError if anything but the draft were generated
    lm.chat_text = builtin_lm.chat_text  # scores laid out in the real chat template, as `exact` below
    first = list(reer_job(store, lm, pid, cfg, controls=controls))
    assert first[-1].kind == "run_paused"
    run_id = first[0].run_id
    controls.resume()
    controls.edit(0, S["thinking"].split("\n\n")[0])
    controls.stop()
    list(reer_job(store, lm, pid, cfg, controls=controls, run_id=run_id))
    history = store.events(run_id)
    edit = next(e for e in history if isinstance(e, ev.SegmentDecided) and e.action == "edit")
    assert edit.by == "human"
    exact = score(builtin_lm, S["query"], list(edit.segments), S["reference"], cfg.scoring())
    assert edit.score["ppl"] == pytest.approx(exact.ppl, rel=1e-6)  # kept keys/values: fp32 rounding only
    assert store.get_run(run_id)["status"] == "stopped"
    assert ReerState.from_events(history).finished


# ---- many items (reer_items, what `palimpsest reer run` does) ----------------------------------------

def test_reer_items_records_carry_the_input_id_and_a_second_pass_searches_nothing(store, tiny_lm):
    cfg = ReerConfig(candidates=2, max_steps=2, draft_max_new_tokens=120, candidate_max_new_tokens=60)
    store.add_prompt("Another task entirely.", "Another answer entirely.", id="in-2")  # "in-2" is taken
    items = [Item(id="in-1", query=S["query"], reference=S["reference"]),
             Item(id="in-2", query=SAMPLES[2]["query"], reference=SAMPLES[2]["reference"])]
    script = ([[DRAFT]] + rewrites(("a a.", "b b."), ("c c.", "d d."))) * 2
    lm = ScriptedLM(tiny_lm, script)
    out = list(reer_items(store, items, cfg, lm.name, lambda: lm))
    assert [(o.status, o.record["id"]) for o in out] == [("done", "in-1"), ("done", "in-2")]
    assert out[0].record["prompt_id"] == "in-1" and out[1].record["prompt_id"] not in ("in-1", "in-2")
    assert [o.record["finish_reason"] for o in out] == ["max_steps", "max_steps"]
    assert all(store.trajectory_for_run(o.run_id)["details"]["run_id"] == o.run_id for o in out)

    def no_model():
        raise AssertionError("a finished item loaded the model")

    again = list(reer_items(store, items, cfg, lm.name, no_model))
    assert [o.status for o in again] == ["cached", "cached"] and [o.record for o in again] == [o.record for o in out]
    assert len(store.list_runs(kind="reer")) == 2
