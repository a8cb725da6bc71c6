"""REER's decision rule on candidates with known, distinct scores (issue 27, Deliver 1).

On the tiny random model every score clips to 2.0, so decisions there are ties. Here `Weighed`
is an LM double: generation comes from the test's script (core.models.scripted), and scoring
gives every token of y the log-prob -W, where W is the sum of the `[wX.XX]` tags in the scored
thinking. So a trajectory's clipped score is exactly W, and each candidate's score is known
before the search runs. The rule (core/reer/search.py, docs/engines.md): the lowest-scoring
candidate is accepted only when it scores strictly below the current trajectory; a tie with
the current trajectory keeps it; candidates tied with each other go to the lower index; failed
candidates are never scored or chosen; a person's force, skip and edit are recorded as such.
"""
from __future__ import annotations

import re

import pytest

from core import events as ev
from core.models import scripted
from core.models.lm import TokenLogprobs
from core.reer.config import ReerConfig
from core.reer.search import Controls, reer_search

QUERY = "Write a short note about a lighthouse keeper and the storm at sea."
ANSWER = "The keeper climbed the stairs when the storm broke over the sea and lit the lamp for the boats."
DRAFT = "\n\n".join(
    f"Paragraph {i}: I want the keeper to notice the letter slowly, and I keep asking myself what the reader "
    f"needs to feel at this point, before the storm and the boat arrive in the story [w0.30]."
    for i in range(5))  # five segments of weight 0.30
START = 1.50  # the draft's score: 5 x 0.30 (every score here stays inside the clip's [0, 2])
CFG = ReerConfig(candidates=2, max_steps=5, draft_max_new_tokens=200, candidate_max_new_tokens=60, threshold=0.0)
TAG = re.compile(r"\[w(\d+\.\d+)\]")


class Weighed(scripted.ScriptedLM):
    """Scripted generation (one list of replies per call, samples cycling through it); scoring as
    the module docstring says: every token of y gets log-prob -(sum of the thinking's tags)."""

    def __init__(self, script):
        self.script = list(script)
        super().__init__(rules=[scripted.Rule(reply=self._next)], name="weighed")

    def _next(self, ask: scripted.Ask) -> str:
        replies = self.script[ask.nth]  # an IndexError: the test's script ran out
        return replies[ask.sample % len(replies)]

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        out = []
        for r in requests:
            w = sum(float(x) for x in TAG.findall("".join(r.context)))
            toks = scripted.tokenize(r.continuation)
            out.append(TokenLogprobs(toks, [-w] * len(toks), sum(len(scripted.tokenize(p)) for p in r.context)))
        return out


def cand(w: float | None) -> str:
    """A scripted rewrite reply of weight w (None: one that cannot be parsed, a failed candidate)."""
    if w is None:
        return "</rewrite>"
    return f" think the storm should come first, then the letter [w{w:.2f}] and the boat after it.</rewrite>"


def run(script):
    lm = Weighed([[DRAFT]] + [[cand(a), cand(b)] for a, b in script])
    return list(reer_search(lm, "run", "item", QUERY, ANSWER, CFG))


def decisions(events):
    return [(e.step, e.action, e.by, e.chosen, round(e.score["score"], 6))
            for e in events if isinstance(e, ev.SegmentDecided)]


STEPS = [(0.50, 0.10), (0.45, 0.60), (0.30, 0.30), (0.20, 0.20), (None, 0.25)]  # step i rewrites segment i-1


def test_the_double_gives_each_candidate_its_known_score():
    events = run(STEPS)
    draft = next(e for e in events if isinstance(e, ev.InitialDraft))
    assert len(draft.segments) == 5 and draft.score["score"] == pytest.approx(START)
    scored = {(e.step, e.index): round(e.score["score"], 6) for e in events if isinstance(e, ev.CandidateScored)}
    # each candidate replaces a segment of weight 0.30 in the trajectory current at its step
    assert scored == {(1, 0): 1.70, (1, 1): 1.30,  # in 1.50
                      (2, 0): 1.45, (2, 1): 1.60,  # in 1.30 (step 1 accepted 0.10)
                      (3, 0): 1.30, (3, 1): 1.30,  # in 1.30
                      (4, 0): 1.20, (4, 1): 1.20,  # in 1.30
                      (5, 1): 1.15}  # in 1.20 (step 4 accepted 0.20); candidate 0 failed: never scored


def test_the_lowest_candidate_is_accepted_exactly_when_it_beats_the_current_trajectory():
    events = run(STEPS)
    assert decisions(events) == [
        (1, "accept", "search", 1, 1.30),  # 1.70 and 1.30 against 1.50: the lower, which beats it
        (2, "keep", "search", None, 1.30),  # 1.45 and 1.60 against 1.30: neither beats it
        (3, "keep", "search", None, 1.30),  # 1.30 and 1.30 against 1.30: a tie keeps the current segment
        (4, "accept", "search", 0, 1.20),  # 1.20 and 1.20: tied candidates go to the lower index
        (5, "accept", "search", 1, 1.15),  # the failed candidate 0 is ignored; 1.15 beats 1.20
    ]
    segs = next(e for e in reversed(events) if isinstance(e, ev.SegmentDecided)).segments
    assert [TAG.findall(x) for x in segs] == [["0.10"], ["0.30"], ["0.30"], ["0.20"], ["0.25"]]
    fin = events[-1]
    assert fin.kind == "run_finished" and fin.score["score"] == pytest.approx(1.15) and fin.reason == "max_steps"


def test_a_person_forces_a_worse_candidate_edits_and_skips_and_each_is_recorded_as_such():
    controls = Controls()
    events = []
    for e in reer_search(Weighed([[DRAFT]] + [[cand(0.50), cand(0.10)]]), "run", "item", QUERY, ANSWER, CFG,
                         controls=controls):
        events.append(e)
        if isinstance(e, ev.CandidateScored) and e.index == 1:
            controls.pause()  # held before step 1's decision
    assert events[-1].kind == "run_paused"
    controls.force(0, annotator="ana")  # 1.70: worse than the current 1.50, taken because a person chose it
    controls.step(1)
    more = list(reer_search(Weighed([]), "run", "item", QUERY, ANSWER, CFG, controls=controls, history=events))
    controls.edit(3, "My own plan: end on the letter, not the storm, and let the boat come back [w0.05].",
                  annotator="ben")
    controls.skip(annotator="cy")
    controls.step(1)
    more += list(reer_search(Weighed([]), "run", "item", QUERY, ANSWER, CFG, controls=controls,
                             history=events + more))
    got = [(e.step, e.action, e.by, e.annotator, e.chosen, round(e.score["score"], 6))
           for e in more if isinstance(e, ev.SegmentDecided)]
    assert got == [(1, "force", "human", "ana", 0, 1.70),
                   (2, "edit", "human", "ben", None, 1.45),  # 1.70 - 0.30 + 0.05, rescored at once
                   (3, "skip", "human", "cy", None, 1.45)]  # segment 2 left as it is; the edit has its own step
    last = [e for e in more if isinstance(e, ev.SegmentDecided)][-1]
    assert TAG.findall(last.segments[0]) == ["0.50"] and TAG.findall(last.segments[3]) == ["0.05"]
    assert last.text == last.segments[1] == DRAFT.split("\n\n")[1]


# ---- the same rule, as a check on any finished record (used by the CLI, scripted and real-model tests) ----

def check_search_decisions(rec: dict) -> list[str]:
    """Assert that each search decision in a REER record is the one the rule gives for its scored
    candidates (accept the lowest, lower index on ties, exactly when it is strictly below the
    trajectory's score at that step); returns the actions. Human decisions are not checked."""
    current, actions = rec["initial_score"], []
    for st in rec["steps"]:
        scored = [(c["score"], k) for k, c in enumerate(st["candidates"]) if c["score"] is not None]
        best = min(scored, default=None)
        accepted = [k for k, c in enumerate(st["candidates"]) if c["accepted"]]
        if st["by"] == "search":
            if best is not None and best[0] < current:
                assert (st["action"], accepted) == ("accept", [best[1]]), (st["step"], scored, current, st["action"])
            else:
                assert (st["action"], accepted) == ("keep", []), (st["step"], scored, current, st["action"])
        if accepted:
            current = st["candidates"][accepted[0]]["score"]
        actions.append(st["action"])
    assert rec["final_score"] == pytest.approx(current)
    return actions


def test_the_record_check_follows_the_rule_and_fails_a_wrong_decision():
    from core.reer.state import record_from_events

    rec = record_from_events(run(STEPS))
    assert check_search_decisions(rec) == ["accept", "keep", "keep", "accept", "accept"]
    wrong = {**rec, "steps": [dict(rec["steps"][0], action="keep")] + rec["steps"][1:]}
    with pytest.raises(AssertionError):
        check_search_decisions(wrong)
