"""Pairwise queues and their Bradley-Terry ranking (issue 26), through the CLI: three annotators
judge every pair of 5 drafts, and `judge ranking --json` orders them as an independent maximum
likelihood fit (scipy, written here, not choix) on the same comparisons, with an interval around
every strength; the order a pair is shown in is drawn per hand-out and stored; no peeking."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from library_fixtures import REER_ITEMS, add_reer, reer_db
from scipy.optimize import minimize

from core.judging import pairwise as pw
from core.judging import queue as jq
from core.store import open_store
from studio.cli.main import main

TRUE = {"traj:3": 2.0, "traj:1": 1.0, "traj:5": 0.0, "traj:2": -1.0, "traj:4": -2.0}  # hidden quality


@pytest.fixture
def db(tmp_path):
    return reer_db(tmp_path / "p.db", 5)


def cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def choose(name: str, first: str, second: str) -> str:
    """A simulated annotator: prefers the truly better draft, except cy flips one pair and bob calls
    one a tie (so every draft wins and loses and the unregularised MLE exists)."""
    pair = {first, second}
    if name == "cy" and pair in ({"traj:3", "traj:1"}, {"traj:2", "traj:4"}, {"traj:5", "traj:1"}):
        return "first" if TRUE[first] < TRUE[second] else "second"
    if name == "bob" and pair == {"traj:5", "traj:2"}:
        return "tie"
    return "first" if TRUE[first] > TRUE[second] else "second"


def mle(keys, comps):
    """Bradley-Terry maximum likelihood by scipy (ties half a win each), mean 0."""
    idx = {k: i for i, k in enumerate(keys)}

    def nll(s):
        out = 0.0
        for a, b, y in comps:
            d = s[idx[a]] - s[idx[b]]
            out -= y * -np.logaddexp(0, -d) + (1 - y) * -np.logaddexp(0, d)
        return out
    s = minimize(nll, np.zeros(len(keys)), method="BFGS").x
    return s - s.mean()


def test_three_annotators_judge_every_pair_of_five_and_the_ranking_matches_an_independent_fit(db, capsys):
    assert cli(capsys, "judge", "queue", "create", "duel", "--pairwise", "--criterion", "Which is better?",
               "--overlap", "3", "--seed", "7", "--db", db)[0] == 0
    code, out, _ = cli(capsys, "judge", "queue", "add", "duel", "--all-pairs", *TRUE, "--db", db)
    assert code == 0 and "10 pair(s) added" in out
    code, out, _ = cli(capsys, "judge", "queue", "add", "duel", "--pairs", "traj:1,traj:3", "--db", db)
    assert "0 pair(s) added, 1 already there" in out  # a pair is one item whichever way it is named
    comps, firsts = [], []
    for _ in range(10):
        for name in ("ann", "bob", "cy"):
            code, out, _ = cli(capsys, "judge", "next", "duel", "--annotator", name, "--db", db)
            task = json.loads(out)["task"]
            assert task["kind"] == "pairwise" and task["criterion"] == "Which is better?"
            f, s = task["first"]["ref"], task["second"]["ref"]
            assert {f, s} <= set(TRUE) and f != s and "marker-" in task["first"]["text"]
            # no peeking: nobody's choice is readable before one's own
            assert cli(capsys, "judge", "show", str(task["item_id"]), "--annotator", name, "--db", db)[0] == 2
            pick = choose(name, f, s)
            code, out, _ = cli(capsys, "judge", "submit", str(task["item_id"]), "--prefer", pick, "--annotator", name,
                               "--db", db)
            assert code == 0 and json.loads(out)["prefer"] == pick
            firsts.append(f)
            a, b = sorted((f, s))
            y = 0.5 if pick == "tie" else float((pick == "first") == (f == a))
            comps.append((a, b, y))
    assert json.loads(cli(capsys, "judge", "next", "duel", "--annotator", "ann", "--db", db)[1])["task"] is None
    # the order is drawn per hand-out: both orders occur
    with open_store(db) as s:
        rows = list(s.db.query("SELECT swapped FROM judging_judgments WHERE queue = 'duel'"))
    assert {r["swapped"] for r in rows} == {0, 1}
    code, out, _ = cli(capsys, "judge", "ranking", "duel", "--json", "--resamples", "100", "--db", db)
    rep = json.loads(out)
    assert rep["judgments"] == 30 and rep["resamples"] == 100
    keys = sorted(TRUE)
    ref = dict(zip(keys, mle(keys, comps)))
    assert [r["key"] for r in rep["rows"]] == sorted(keys, key=lambda k: -ref[k])
    for r in rep["rows"]:
        assert math.isclose(r["strength"], ref[r["key"]], abs_tol=0.1), (r, ref[r["key"]])
        assert r["low"] < r["strength"] < r["high"]
        assert r["judgments"] == 12 and r["wins"] + r["losses"] + r["ties"] == 12
    top = rep["rows"][0]
    assert (top["key"], top["wins"], top["losses"]) == ("traj:3", 11, 1)
    # seeded: the same call gives the same intervals
    assert json.loads(cli(capsys, "judge", "ranking", "duel", "--json", "--resamples", "100", "--db", db)[1]) == rep
    code, out, _ = cli(capsys, "judge", "ranking", "duel", "--by", "source", "--json", "--db", db)
    assert json.loads(out)["rows"] == []  # every draft is REER's: no comparison between sources


def test_pairwise_rules(db):
    with open_store(db) as s:
        pw.create_pairwise_queue(s, "d", overlap=1, seed=1)
        jq.create_queue(s, "sc", ["clear"])
        with pytest.raises(jq.JudgingError, match="compared with itself"):
            pw.add_pairs(s, "d", [("traj:1", "1")])
        with pytest.raises(jq.JudgingError, match="--pairwise"):
            pw.add_pairs(s, "sc", [("traj:1", "traj:2")])
        pw.add_pairs(s, "d", pw.all_pairs(["1", "2", "3"]))
        t = pw.next_pair(s, "d", "ann")
        again = pw.next_pair(s, "d", "ann")  # a reload shows the same pair in the same order
        assert (again.item_id, again.first, again.swapped) == (t.item_id, t.first, t.swapped)
        with pytest.raises(jq.JudgingError, match="never handed"):
            pw.submit_pair(s, t.item_id + 1, "ann", "first")
        with pytest.raises(jq.JudgingError, match="first, second or tie"):
            pw.submit_pair(s, t.item_id, "ann", "left")
        with pytest.raises(jq.JudgingError, match="pairwise"):
            jq.submit(s, t.item_id, "ann", {"clear": 5})
        pw.submit_pair(s, t.item_id, "ann", "first")
        j = jq.judgments(s, t.item_id, "ann")[0]
        assert j["prefer"] == ("b" if t.swapped else "a")  # stored in the item's terms
        with pytest.raises(jq.JudgingError, match="judged it already"):
            pw.submit_pair(s, t.item_id, "ann", "second")


def test_uncertain_policy_hands_out_the_pair_the_fit_is_least_sure_of(db):
    """Every pair judged twice: traj:1 beat 2, 3 and 4 each time, 2 and 3 split. The fit is sure of
    every pair but 2 against 3 (equal strengths: a coin toss), which the uncertain policy hands out
    next; fewest-first hands the oldest pair (all have two judgments)."""
    with open_store(db) as s:
        ids = {}
        for q, policy in (("u", "uncertain"), ("f", "fewest")):
            pw.create_pairwise_queue(s, q, overlap=5, policy=policy, seed=0)
            pw.add_pairs(s, q, [("1", "2"), ("1", "3"), ("1", "4"), ("2", "3")])
            ids[q] = {it["ref"]: it["id"] for it in jq.items(s, q)}
            for who in ("ann", "bob"):
                for ref, winner in (("traj:1 vs traj:2", "traj:1"), ("traj:1 vs traj:3", "traj:1"),
                                    ("traj:1 vs traj:4", "traj:1"),
                                    ("traj:2 vs traj:3", "traj:2" if who == "ann" else "traj:3")):
                    t = pw.next_pair(s, q, who, exclude=[i for r, i in ids[q].items() if r != ref])
                    assert t.item_id == ids[q][ref]
                    pw.submit_pair(s, t.item_id, who, "first" if t.first["ref"] == winner else "second")
        assert pw.next_pair(s, "u", "dee").item_id == ids["u"]["traj:2 vs traj:3"]
        assert pw.next_pair(s, "f", "dee").item_id == ids["f"]["traj:1 vs traj:2"]


def test_simulation_is_seeded_and_the_cli_prints_the_curve(capsys):
    from core.judging.simulate import SimConfig, simulate

    cfg = SimConfig(items=4, overlap=3, runs=2, checkpoints=(6, 18))
    a, b = simulate(cfg), simulate(cfg)
    assert a == b and set(a["policies"]) == {"fewest", "uncertain"}
    for v in a["policies"].values():
        assert [c["judgments"] for c in v["curve"]] == [6, 18] and all(-1 <= c["tau"] <= 1 for c in v["curve"])
    assert main(["judge", "simulate", "--items", "4", "--overlap", "2", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "fewest" in out and "uncertain" in out and "median judgments" in out


class ChooserLM:
    """A stand-in model judge read through log-probs: `by_text` prefers the response with the lower
    marker number wherever it is shown; otherwise it always answers "1" (pure position bias)."""

    def __init__(self, by_text: bool):
        self.by_text = by_text

    def chat_text(self, messages, add_generation_prompt=True):
        return messages[-1]["content"]

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        from types import SimpleNamespace

        out = []
        for r in requests:
            ctx = "".join(r.context)
            one, two = (int(x) for x in re.findall(r"marker-(\d)", ctx.split("Response 1:")[1])[:2])
            better = ("1" if one < two else "2") if self.by_text else "1"
            out.append(SimpleNamespace(logprobs=[-0.1 if r.continuation == better else -3.0]))
        return out


def test_model_judge_on_pairs_both_orders_against_the_people_and_their_ceiling(db):
    from core.judging import pairwise_judge as pj
    from core.annotators import model_name

    with open_store(db) as s:
        pw.create_pairwise_queue(s, "m", overlap=3, seed=2)
        pw.add_pairs(s, "m", pw.all_pairs(["1", "2", "3", "4"]))  # marker-(n-1) is traj:n
        for who in ("ann", "bob", "cy"):
            while (t := pw.next_pair(s, "m", who)) is not None:
                lower = min((t.first, t.second), key=lambda d: d["ref"])  # people prefer the lower id...
                pick = "first" if t.first is lower else "second"
                if who == "cy" and t.first["ref"] == "traj:1":  # ...but cy always prefers traj:1's rival
                    pick = "second"
                pw.submit_pair(s, t.item_id, who, pick)
        steps = list(pj.iter_calibrate_pairs(s, ChooserLM(True), "fake:text", "m"))
        assert len(steps) == 6 and all(st.prefer == "a" and {st.a_first, st.b_first} == {"first", "second"}
                                       for st in steps)  # the lower ref sorts first: a
        rep = pj.report_pairs(s, "m", model_name("fake:text"), resamples=200)
        assert rep["pairs"] == 6 and rep["agreement"] == 1.0 and rep["consistent_share"] == 1.0
        assert rep["model_first_share"] == 0.5  # both orders asked: no position bias can show
        # the ceiling: couples of people on a pair who chose alike; on a pair cy flipped, 1 of 3 couples
        flips = sum(1 for j in jq.queue_judgments(s, "m") if j["annotator"] == "cy" and j["prefer"] == "b")
        assert 0 < flips < 6 and rep["ceiling_pairs"] == 6
        assert rep["ceiling"] == pytest.approx((3 * 6 - 2 * flips) / 18, abs=1e-4)
        assert rep["model_vs_people"] == pytest.approx((18 - flips) / 18, abs=1e-4)
        lo, hi = rep["ceiling_ci"]
        assert lo <= rep["ceiling"] <= hi
        biased = pj.report_pairs(s, "m", model_name("fake:pos"))
        assert biased["pairs"] == 0
        list(pj.iter_calibrate_pairs(s, ChooserLM(False), "fake:pos", "m"))
        biased = pj.report_pairs(s, "m", model_name("fake:pos"))
        assert biased["model_first_share"] == 1.0 and biased["consistent_share"] == 0.0  # every pair a tie
        assert biased["agreement"] == 0.0
        # the model's choices never count towards the overlap
        assert jq.progress(s, "m")["judgments"] == 18


def three_drafts_of_one_prompt(s) -> str:
    """Trajectories 1-3: one query's answer ending v0, v1, v2, made drafts of one prompt (the fixture
    makes a prompt per reference answer); returns the query."""
    q, thinking, answer = REER_ITEMS[0]
    for i in range(3):
        add_reer(s, q, thinking, f"{answer} v{i}")
    s.db.execute("UPDATE trajectories SET prompt_id = (SELECT prompt_id FROM trajectories WHERE id = 1)")
    s.db.conn.commit()
    return q


def test_people_settled_pairs_for_the_preference_export(tmp_path):
    """Pairs of drafts of one prompt whose majority chose a side become chosen/rejected with source
    "people"; a split (or tie-majority) pair is left out."""
    with open_store(tmp_path / "x.db") as s:
        q = three_drafts_of_one_prompt(s)
        pw.create_pairwise_queue(s, "x", overlap=2, seed=0)
        pw.add_pairs(s, "x", pw.all_pairs(["1", "2", "3"]))
        for who in ("ann", "bob"):
            while (t := pw.next_pair(s, "x", who)) is not None:
                refs = {t.first["ref"], t.second["ref"]}
                if refs == {"traj:2", "traj:3"}:  # they split on this one
                    pick = "first" if (who == "ann") == (t.first["ref"] == "traj:2") else "second"
                else:  # traj:1 wins
                    pick = "first" if t.first["ref"] == "traj:1" else "second"
                pw.submit_pair(s, t.item_id, who, pick)
        got = pw.preference_pairs(s, "x")
    assert sorted((g["chosen_ref"], g["rejected_ref"]) for g in got) == [("traj:1", "traj:2"), ("traj:1", "traj:3")]
    assert all(g["source"] == "people" and g["chosen"].endswith("v0") and g["prompt"] == q for g in got)


def test_source_pairs_and_bad_input_from_the_shell(db, capsys):
    """--source-pairs pairs, per prompt, drafts of different sources only; bad flags get one line."""
    with open_store(db) as s:
        s.db.execute("UPDATE trajectories SET prompt_id = (SELECT prompt_id FROM trajectories WHERE id = 1) "
                     "WHERE id IN (2, 3)")
        s.db.execute("UPDATE trajectories SET kind = 'r2' WHERE id = 3")
        s.db.conn.commit()
    assert cli(capsys, "judge", "queue", "create", "src", "--pairwise", "--db", db)[0] == 0
    code, out, _ = cli(capsys, "judge", "queue", "add", "src", "--source-pairs", "--db", db)
    assert code == 0 and "2 pair(s) added" in out  # traj:3 (r2) with traj:1 and traj:2 (reer); not 1 with 2
    with open_store(db) as s:
        assert sorted(i["ref"] for i in jq.items(s, "src")) == ["traj:1 vs traj:3", "traj:2 vs traj:3"]
        assert {(i["source"], i["source_b"]) for i in jq.items(s, "src")} == {("reer", "r2")}
    code, _, err = cli(capsys, "judge", "queue", "add", "src", "--pairs", "traj:1", "--db", db)
    assert code == 2 and "--pairs 'traj:1'" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "judge", "queue", "create", "sc", "--next", "uncertain", "--db", db)
    assert code == 2 and "only for a --pairwise queue" in err
    code, _, err = cli(capsys, "judge", "ranking", "nope", "--db", db)
    assert code == 2 and "does not exist" in err
    assert cli(capsys, "judge", "queue", "create", "sc", "--db", db)[0] == 0
    code, _, err = cli(capsys, "judge", "ranking", "sc", "--db", db)
    assert code == 2 and "pairwise queue" in err


def test_a_pairwise_queues_settled_pairs_reach_the_dpo_export(tmp_path):
    """`export --format dpo` carries the pairs people settled side by side (source "people", the
    votes as scores, the margin the winner's votes less the loser's over all votes)."""
    from pathlib import Path

    from core.export import export

    with open_store(tmp_path / "x.db") as s:
        q = three_drafts_of_one_prompt(s)
        pw.create_pairwise_queue(s, "x", overlap=3, seed=0)
        pw.add_pairs(s, "x", pw.all_pairs(["1", "2", "3"]))
        for who in ("ann", "bob", "cy"):
            while (t := pw.next_pair(s, "x", who)) is not None:
                refs = {t.first["ref"], t.second["ref"]}
                if refs == {"traj:2", "traj:3"}:  # ann and bob prefer traj:2, cy calls a tie
                    pick = "tie" if who == "cy" else ("first" if t.first["ref"] == "traj:2" else "second")
                else:  # traj:1 wins, unanimously
                    pick = "first" if t.first["ref"] == "traj:1" else "second"
                pw.submit_pair(s, t.item_id, who, pick)
        rows = [json.loads(x) for x in Path(export(s, "dpo", tmp_path / "p", status="any", sources="people")
                                             .files[0]).read_text().splitlines()]
    got = {(r["chosen"][0]["content"][-2:], r["rejected"][0]["content"][-2:]): r for r in rows}
    assert set(got) == {("v0", "v1"), ("v0", "v2"), ("v1", "v2")}
    assert all(r["source"] == "people" and r["scale"] == "votes" for r in rows)
    assert got[("v0", "v1")]["margin"] == 1.0 and got[("v1", "v2")]["margin"] == pytest.approx(2 / 3)
    assert got[("v1", "v2")]["prompt"][0]["content"] == q
