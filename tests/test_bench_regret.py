"""The bench's regret replay (core.bench.step_regrets): from a finished search's events, the fp32
score of the candidate the run chose minus the best fp32 score among the step's candidates.
Scripted generation, tiny-model scores: seconds."""
from __future__ import annotations

import dataclasses

from test_reer import DRAFT, SMALL, S, ScriptedLM, rewrites

from core.bench import step_regrets
from core.reer.search import reer_search


def _events(tiny_lm):
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(
        ("The storm came first and flooded the whole town by night.", "Zebra quantum xylophone jumps over."),
        ("c.", "d."), ("e.", "f.")))
    return list(reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL))


def test_a_run_scored_in_fp32_has_no_regret(tiny_lm):
    rows = step_regrets(tiny_lm, _events(tiny_lm), SMALL.scoring())
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["candidates"] == 2 for r in rows)
    assert all(r["identical"] and abs(r["regret"]) < 1e-9 and r["fast_error"] < 1e-6 for r in rows)


def test_a_wrong_choice_costs_the_fp32_gap(tiny_lm):
    """A random model's log-probs all clip at -2 (every score 2.0): score unclipped here, then make
    the run's own scores prefer the fp32-worse candidate of step 1."""
    scfg = dataclasses.replace(SMALL.scoring(), clip_min=-100.0)
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
