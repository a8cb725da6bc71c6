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


def test_targets_are_judged_over_three_measured_steps_only():
    """bench reer's targets: regret <= 1e-3 and the fast scoring path >= 2.5x, judged (True/False) only
    over 3+ measured steps; over fewer they are None, and the summary says 'not judged', never 'met'."""
    from core.bench_replay import regret_summary, scoring_target_met
    from studio.cli.bench import reer_summary

    ok = {"regret": 0.0, "identical": True}
    for n in (0, 1, 2):
        s = regret_summary([ok] * n)
        assert s["regret_steps"] == n and s["regret_target_met"] is None and scoring_target_met(s, 9.0) is None
    three = regret_summary([ok] * 3)
    assert three["regret_target_met"] is True
    assert scoring_target_met(three, 2.5) is True and scoring_target_met(three, 2.4) is False
    bad = regret_summary([ok, ok, {"regret": 2e-3, "identical": False}])
    assert bad["regret_target_met"] is False and scoring_target_met(bad, 9.0) is False
    phases = {f"{p}_{side}": 1.0 for p in ("draft", "candidates", "scoring", "search")
              for side in ("engine_s", "plain_s", "speedup")}
    cache = {f"prompt_cache_{p}_{k}": 1.0 for p in ("draft", "candidates") for k in ("off_s", "on_s", "speedup")}
    result = dict(phases, **cache, engine_s=2.0, plain_s=2.0, speedup=1.0, items=1, skipped=["it9"],
                  load_before=[1.0], load_after=[2.0], scorer="m", model="m", scoring_target="2.5x")
    few = reer_summary(dict(result, **regret_summary([ok] * 2), scoring_target_met=None), False)
    assert "not judged: fewer than 3 measured steps" in few and " met" not in few.replace("not judged", "")
    assert "max regret 0.0e+00 over 2 measured step(s)" in few and "skipped: it9" in few
    none = reer_summary(dict(result, **regret_summary([]), scoring_target_met=None), False)
    assert "regret NOT measured" in none
