"""Calibration: Spearman and Kendall tau-b against values worked by hand (with and without ties); a
scripted model judge calibrated against people on a queue: its judgments stored as model:<spec>,
never counted towards k, its correlation, bias and n; the trust level the R2 page warns with."""
from __future__ import annotations

import pytest
from library_fixtures import REER_ITEMS, add_reer, add_reer_items

from core.judging import calibration as cal
from core.judging import queue as jq
from core.models.scripted import Rule, ScriptedLM


def test_spearman_and_kendall_without_ties():
    # x = 1..5, y = 2 1 4 3 5: d = -1 1 -1 1 0, sum d² = 4, rho = 1 - 6*4/(5*24) = 0.8;
    # of 10 pairs, (1,2) and (3,4) are discordant: tau = (8 - 2)/10 = 0.6
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert cal.spearman(x, y) == pytest.approx(0.8)
    assert cal.kendall_tau_b(x, y) == pytest.approx(0.6)


def test_spearman_and_kendall_with_ties():
    # x = 1 2 2 3 -> ranks 1 2.5 2.5 4; y = 1 3 2 3 -> ranks 1 3.5 2 3.5 (both mean 2.5)
    # deviations x: -1.5 0 0 1.5, y: -1.5 1 -0.5 1; sum dx*dy = 2.25 + 1.5 = 3.75; sum dx² = sum dy² = 4.5
    # rho = 3.75/4.5 = 5/6
    # pairs: (1,2) C, (1,3) C, (1,4) C, (2,3) tied in x, (2,4) tied in y, (3,4) C: P = 4, Q = 0
    # tau_b = 4 / sqrt((6-1)(6-1)) = 0.8
    x, y = [1, 2, 2, 3], [1, 3, 2, 3]
    assert cal.average_ranks(x) == [1, 2.5, 2.5, 4]
    assert cal.spearman(x, y) == pytest.approx(5 / 6)
    assert cal.kendall_tau_b(x, y) == pytest.approx(0.8)


def test_undefined_correlations_are_none():
    assert cal.spearman([1], [2]) is None and cal.kendall_tau_b([1], [2]) is None
    assert cal.spearman([3, 3, 3], [1, 2, 3]) is None and cal.kendall_tau_b([3, 3, 3], [1, 2, 3]) is None


def _judge_by_text():
    """A scripted judge that gives each draft a fixed score, read from a marker in its text."""
    return ScriptedLM(rules=[Rule(when=(r"grading", rf"marker-{i}\b"), judge=s, name=f"judge{i}")
                             for i, s in enumerate([2, 4, 6, 8])])


def test_calibrate_stores_model_judgments_queues_drafts_and_reports_against_people(store):
    refs = [f"traj:{t}" for t in add_reer_items(store, 4)]
    lm = _judge_by_text()
    steps = list(cal.iter_calibrate(store, lm, "scripted:", "cal", refs, overlap=2, rubric=["clear", "vivid"]))
    assert [s.overall for s in steps] == [2, 4, 6, 8] and steps[-1].done == steps[-1].total == 4
    assert jq.progress(store, "cal")["models"] == {"model:scripted:": 4}
    assert jq.progress(store, "cal")["judgments"] == 0  # a model's judgment never counts towards k
    items = [i["id"] for i in jq.items(store, "cal")]
    # people: ann and bob score the drafts; median consensus = 3 1 5 9 (overall), clear = the same
    for who_, scores in (("ann", [3, 1, 5, 10]), ("bob", [3, 1, 5, 8])):
        for item, s in zip(items, scores):
            assert jq.next_task(store, "cal", who_).item_id == item
            jq.submit(store, item, who_, {"clear": s, "vivid": 5}, overall=s)
    rep = cal.report(store, "cal", "model:scripted:")
    ov = rep["overall"]
    # consensus 3 1 5 9 vs model 2 4 6 8: ranks 2 1 3 4 vs 1 2 3 4 -> d = 1 -1 0 0, rho = 1 - 6*2/(4*15) = 0.8
    # pairs: only (1,2) discordant of 6: tau = (5 - 1)/6 = 2/3; bias = mean(-1, 3, 1, -1) = 0.5
    assert (ov["n"], ov["spearman"], ov["kendall"], ov["bias"]) == (4, pytest.approx(0.8), pytest.approx(2 / 3), 0.5)
    assert sorted(p[1] for p in ov["points"]) == [2, 4, 6, 8]
    clear = rep["criteria"][0]
    assert clear["spearman"] == pytest.approx(0.8) and rep["criteria"][1]["spearman"] is None  # people all gave 5
    assert cal.trust(store, "scripted:")["level"] == "unknown"  # 4 drafts: below TRUST_MIN_N
    assert cal.trust(store, "other:")["level"] == "unknown"


def test_trust_low_and_ok(store, monkeypatch):
    monkeypatch.setattr(cal, "TRUST_MIN_N", 3)
    refs = [f"traj:{add_reer(store, f'{REER_ITEMS[0][0]} ({i})', REER_ITEMS[0][1], f'x marker-{i}')}" for i in range(4)]
    cal.calibrate(store, _judge_by_text(), "scripted:", "t", refs, overlap=1, rubric=["clear"])
    for item, s in zip([i["id"] for i in jq.items(store, "t")], [1, 2, 3, 4]):
        assert jq.next_task(store, "t", "ann").item_id == item  # handed out, then judged
        jq.submit(store, item, "ann", {"clear": s}, overall=s)
    t = cal.trust(store, "scripted:", ["clear"])
    assert t["level"] == "ok" and t["spearman"] == pytest.approx(1.0) and t["n"] == 4
    assert cal.trust(store, "scripted:", ["another rubric"])["level"] == "unknown"
    cal.calibrate(store, ScriptedLM(rules=[Rule(when=(r"grading", rf"marker-{i}\b"), judge=9 - 2 * i)
                                           for i in range(4)]), "scripted:", "t", refs)  # rerun: replaces
    low = cal.trust(store, "scripted:", ["clear"])
    assert low["level"] == "low" and low["spearman"] == pytest.approx(-1.0)


def test_a_long_model_spec_still_names_its_judge():
    """A script's path or a deep model folder makes a spec longer than a name may be: its judge gets a
    name that keeps the spec's end, is stable, and differs from another long spec's (it raised before)."""
    from core.annotators import MAX_CHARS, model_name

    a = "scripted:script=/tmp/" + "a" * 90 + "/judge.json"
    b = "scripted:script=/tmp/" + "b" * 90 + "/judge.json"
    assert len(model_name(a)) <= MAX_CHARS and model_name(a).startswith("model:")
    assert model_name(a).endswith("/judge.json") and model_name(a) == model_name(a) != model_name(b)
    assert model_name("scripted:judge=7") == "model:scripted:judge=7"  # short specs unchanged


def test_intervals_on_the_correlations_and_trust_reads_the_interval(store, monkeypatch):
    """Issue 26: Spearman and Kendall carry a seeded 95% bootstrap interval over drafts (the same on
    a rerun, holding the point, inside [-1, 1], a single point for a perfect order);
    a judge that agrees on 6 drafts but with one swap has a point above TRUST_LOW whose interval
    reaches below it: trust says unknown (too few to tell), where the point alone said ok."""
    monkeypatch.setattr(cal, "TRUST_MIN_N", 3)
    xs, ys = [1, 2, 3, 4, 5, 6], [2, 1, 3, 5, 4, 6]
    lo, hi = cal.bootstrap_ci(xs, ys, cal.spearman)
    assert (lo, hi) == cal.bootstrap_ci(xs, ys, cal.spearman)  # seeded
    assert -1 <= lo < cal.spearman(xs, ys) < hi <= 1 and lo < cal.TRUST_LOW
    assert cal.bootstrap_ci([1, 2, 3, 4], [1, 2, 3, 4], cal.kendall_tau_b) == (1.0, 1.0)
    assert cal.bootstrap_ci([1], [1], cal.spearman) == (None, None)
    refs = [f"traj:{add_reer(store, f'{REER_ITEMS[0][0]} ({i})', REER_ITEMS[0][1], f'x marker-{i}')}" for i in range(6)]
    cal.calibrate(store, ScriptedLM(rules=[Rule(when=(r"grading", rf"marker-{i}\b"), judge=ys[i]) for i in range(6)]),
                  "scripted:", "t", refs, overlap=1, rubric=["clear"])
    for item, s in zip([i["id"] for i in jq.items(store, "t")], xs):
        assert jq.next_task(store, "t", "ann").item_id == item
        jq.submit(store, item, "ann", {"clear": s}, overall=s)
    ov = cal.report(store, "t", "model:scripted:")["overall"]
    assert ov["spearman"] == pytest.approx(cal.spearman(xs, ys)) and ov["spearman_ci"] == (lo, hi)
    assert ov["kendall_ci"][0] < ov["kendall"] < ov["kendall_ci"][1]
    t = cal.trust(store, "scripted:", ["clear"])
    assert t["spearman"] > cal.TRUST_LOW and t["level"] == "unknown" and "too few drafts to tell" in t["message"]
