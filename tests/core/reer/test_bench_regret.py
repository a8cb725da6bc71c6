"""The bench's regret replay (core.bench.step_regrets): from a finished search's events, the fp32
score of the candidate the run chose minus the best fp32 score among the step's candidates.
Scripted generation, tiny-model scores without the clip (test_reer.Unclipped: clipped, the tiny
model's scores all tie at 2.0), so the run's decisions are not ties: seconds."""
from __future__ import annotations

import dataclasses

from test_reer import DRAFT, SMALL_UNCLIPPED, S, ScriptedLM, rewrites

from core.bench import step_regrets
from core.reer.search import reer_search


ACTIONS = ["keep", "accept", "accept"]  # what this script's run decides (step 3: one candidate fails)


def _events(tiny_lm):
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(
        ("The storm came first and flooded the whole town by night.", "Zebra quantum xylophone jumps over."),
        ("The keeper reads the letter twice before she believes it.", "Zebra quantum xylophone jumps over."),
        (", , , ,.", "The keeper reads the letter twice before she believes it.")))
    return list(reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL_UNCLIPPED))


def test_a_run_scored_in_fp32_has_no_regret(tiny_lm):
    events = _events(tiny_lm)
    rows = step_regrets(tiny_lm, events, SMALL_UNCLIPPED.scoring())
    assert [r["step"] for r in rows] == [1, 2] and all(r["candidates"] == 2 for r in rows)  # 2+ scored
    assert all(r["gap"] > 1e-6 for r in rows)  # candidates that differ: the choice is not a tie
    assert all(r["identical"] and abs(r["regret"]) < 1e-9 and r["fast_error"] < 1e-6 for r in rows)
    assert [e.action for e in events if e.kind == "segment_decided"] == ACTIONS


def test_a_wrong_choice_costs_the_fp32_gap(tiny_lm):
    """Make the run's own scores prefer the fp32-worse candidate of step 1."""
    scfg = SMALL_UNCLIPPED.scoring()
    events = _events(tiny_lm)
    first = step_regrets(tiny_lm, events, scfg)[0]
    (a_fp32, b_fp32), gap = first["fp32"], abs(first["fp32"][0] - first["fp32"][1])
    assert gap > 0, "the scripted candidates scored the same"
    worse = 0 if a_fp32 > b_fp32 else 1
    fake = [dataclasses.replace(e, score={**e.score, "score": 0.0 if e.index == worse else 1.0})
            if e.kind == "candidate_scored" and e.step == 1 else e for e in events]
    row = step_regrets(tiny_lm, fake, scfg)[0]
    assert row["chosen"] == worse and not row["identical"]
    assert abs(row["regret"] - gap) < 1e-9 and abs(row["gap"] - gap) < 1e-9
