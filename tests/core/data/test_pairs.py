"""Preference pairs (core.pairs): who is chosen in a REER step, the margin filter, a person's
force and edit, a skip making none, R2 and people pairs, and the dpo export holding REER step pairs
of a real (scripted) REER run with the card counting them per source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import events as ev
from core import pairs as pp

Q = "Write about tides."


def sc(x: float) -> dict:
    return {"score": x, "ppl": 1.0, "n_tokens": 3, "mean_logprob": -x, "truncated": 0}


def run_events(decide: ev.SegmentDecided | None = None, extra: list | None = None) -> list:
    """A run with a 3-segment draft (score 0.9) and one step on segment 1: candidates 0.5, 0.8, 0.805."""
    r = "run1"
    es = [ev.ReerStarted(r, item_id="p", query=Q, reference="y", settings={}, model="m"),
          ev.InitialDraft(r, thinking="A\n\nB\n\nC", segments=("A", "B", "C"), score=sc(0.9)),
          *(extra or []),
          ev.SegmentStarted(r, step=1, segment=1, text="B")]
    for i, (t, s) in enumerate([("B1", 0.5), ("B2", 0.8), ("B3", 0.805)]):
        es.append(ev.CandidateGenerated(r, step=1, segment=1, index=i, raw=t, text=t))
    es.append(ev.CandidateGenerated(r, step=1, segment=1, index=3, raw="??", text=None, error="no tag"))
    for i, s in enumerate([0.5, 0.8, 0.805]):
        es.append(ev.CandidateScored(r, step=1, segment=1, index=i, score=sc(s)))
    es.append(decide or ev.SegmentDecided(r, step=1, segment=1, action="accept", by="search", chosen=0, text="B1",
                                          segments=("A", "B1", "C"), score=sc(0.5)))
    return es


def key(p):
    return (p["chosen"][0]["content"].rsplit("\n\n", 1)[-1], p["rejected"][0]["content"].rsplit("\n\n", 1)[-1])


def test_step_pairs_lower_score_chosen_in_the_scored_context_and_near_ties_dropped():
    pairs = pp.reer_pairs(run_events(), min_margin=0.01)
    # texts: B (0.9, the segment before the step), B1 0.5, B2 0.8, B3 0.805; B2-B3 is a near-tie (0.005)
    assert sorted(key(p) for p in pairs) == sorted([("B1", "B2"), ("B1", "B3"), ("B1", "B"), ("B2", "B"), ("B3", "B")])
    p = next(p for p in pairs if key(p) == ("B1", "B"))
    assert p["source"] == "reer-step" and (p["run"], p["step"], p["segment"]) == ("run1", 1, 1)
    assert (p["chosen_score"], p["rejected_score"], p["margin"]) == (0.5, 0.9, 0.4)
    assert p["prompt"] == [{"role": "user", "content": Q}]
    assert p["chosen"] == [{"role": "assistant", "content": "<think>\nA\n\nB1"}]  # the turn up to the segment
    assert p["rejected"] == [{"role": "assistant", "content": "<think>\nA\n\nB"}]
    assert all(x["margin"] >= 0.01 and x["chosen_score"] < x["rejected_score"] for x in pairs)
    assert len(pp.reer_pairs(run_events(), min_margin=0)) == 6  # C(4, 2): the near-tie too
    assert [key(p) for p in pp.reer_pairs(run_events(), min_margin=0.35)] == [("B1", "B")]  # the only gap of 0.4


def test_force_makes_human_pairs_over_every_text_it_beat_and_drops_the_overruled_step_pairs():
    force = ev.SegmentDecided("run1", step=1, segment=1, action="force", by="human", chosen=2, text="B3",
                              segments=("A", "B3", "C"), score=sc(0.805), annotator="ana")
    pairs = pp.reer_pairs(run_events(force))
    human = [p for p in pairs if p["source"] == "reer-human"]
    assert sorted(key(p) for p in human) == sorted([("B3", "B"), ("B3", "B1"), ("B3", "B2")])
    assert all(p["annotator"] == "ana" for p in human)
    over_best = next(p for p in human if key(p) == ("B3", "B1"))
    assert over_best["margin"] == pytest.approx(-0.305)  # the person overruled the scores: kept anyway
    step = [key(p) for p in pairs if p["source"] == "reer-step"]
    assert not any("B3" in k for k in step) and ("B1", "B2") in step


def test_skip_makes_no_pairs_and_edit_prefers_the_persons_text_over_the_one_it_replaced():
    skip = ev.SegmentDecided("run1", step=1, segment=1, action="skip", by="human", chosen=None, text="B",
                             segments=("A", "B", "C"), score=sc(0.9), annotator="bo")
    assert pp.reer_pairs(run_events(skip)) == []
    edit = [ev.CandidateScored("run1", step=1, segment=2, index=-1, score=sc(0.7)),
            ev.SegmentDecided("run1", step=1, segment=2, action="edit", by="human", chosen=None, text="Mine",
                              segments=("A", "B", "Mine"), score=sc(0.7), annotator="bo")]
    pairs = pp.reer_pairs(run_events(extra=edit))
    (h,) = [p for p in pairs if p["source"] == "reer-human"]
    assert h["chosen"][0]["content"] == "<think>\nA\n\nB\n\nMine" and h["rejected"][0]["content"] == "<think>\nA\n\nB\n\nC"
    assert (h["chosen_score"], h["rejected_score"], h["annotator"]) == (0.7, 0.9, "bo")
    # the step after the edit is scored against the edited trajectory's score (0.7): B is now worth 0.7
    b = next(p for p in pairs if p["source"] == "reer-step" and key(p) == ("B1", "B"))
    assert b["rejected_score"] == 0.7


def test_r2_and_people_pairs():
    rounds = [{"round": 1, "draft": "d0", "revision": "d1", "judgment": {"overall": 4}, "reward": {"improvement": 0.2}},
              {"round": 2, "draft": "d1", "revision": "d2", "judgment": {"overall": 6}, "reward": {"improvement": -0.1}}]
    (p,) = pp.r2_pairs("x", Q, rounds, final_overall=5, run="r")
    assert p["source"] == "r2-revision" and (p["chosen_score"], p["rejected_score"], p["margin"]) == (6, 4, 0.2)
    assert p["chosen"][0]["content"] == "<think>\n\n</think>\nd1" and p["rejected"][0]["content"].endswith("d0")
    items = [{"queue": "q", "item_id": i, "ref": f"traj:{i}", "prompt_id": "p", "query": Q, "text": t, "low": 1,
              "high": 10, "people": ppl, "resolution": res}
             for i, t, ppl, res in [(1, "one", [8, 7, 9], None), (2, "two", [5, 6], None), (3, "three", [5, 5], 9.5),
                                    (4, "four", [8, 8], None)]]
    got = {(p["chosen"][0]["content"].split("\n")[-1], p["rejected"][0]["content"].split("\n")[-1]): p
           for p in pp.people_pairs(items, min_margin=0.05)}
    # consensus: one 8, two 5.5, three 9.5 (the lead's resolution wins), four 8 (a tie with one: no pair)
    assert set(got) == {("one", "two"), ("three", "one"), ("three", "two"), ("three", "four"), ("four", "two")}
    assert got[("one", "two")]["margin"] == pytest.approx(2.5 / 9) and got[("one", "two")]["source"] == "people"
    assert [p["chosen_score"] for p in pp.people_pairs(items, min_margin=0.3)] == [9.5]  # only three over two: 4/9


def test_sources_parse():
    assert pp.parse_sources("all") == pp.SOURCES and pp.parse_sources("reer-step,people") == ("reer-step", "people")
    with pytest.raises(ValueError, match="--sources: reer is not a pair source"):
        pp.parse_sources("reer")


def test_dpo_export_holds_reer_step_pairs_of_a_real_run(store, tmp_path):
    from core.export import ExportError, export
    from core.models.load import load_lm
    from core.reer.config import ReerConfig
    from core.reer.jobs import reer_job, save_trajectory

    lm = load_lm("scripted:seed=2")
    pid, _ = store.add_prompt("Explain why the sea has tides, in three short paragraphs.",
                           "The moon pulls the water. The earth turns beneath it. Two bulges make two tides a day.")
    cfg = ReerConfig(candidates=3, max_steps=3, threshold=0.0)
    for e in reer_job(store, lm, pid, cfg):
        last = e
    save_trajectory(store, last.run_id)
    report = export(store, "dpo", tmp_path / "dpo", status="any", min_margin=0)
    rows = [json.loads(x) for x in Path(report.files[0]).read_text().splitlines()]
    steps = [r for r in rows if r["source"] == "reer-step"]
    assert steps and len(steps) <= 3 * 6  # at most S * C(K + 1, 2)
    assert all(r["chosen_score"] <= r["rejected_score"] and r["run"] == last.run_id for r in steps)
    card = (tmp_path / "dpo" / "README.md").read_text()
    assert f"- pairs from reer-step: {len(steps)}" in card and "- pairs from people: 0" in card
    assert all(r["margin"] > 0 for r in steps)  # ties (same score) prefer nothing, even at min margin 0
    mid = export(store, "dpo", tmp_path / "dpo2", status="any", min_margin=0.004)
    kept = [json.loads(x)["id"] for x in Path(mid.files[0]).read_text().splitlines()]
    assert kept == [r["id"] for r in rows if r["margin"] >= 0.004] and 0 < len(kept) < len(rows)
    with pytest.raises(ExportError, match="--sources: r2 is not a pair source"):
        export(store, "dpo", tmp_path / "dpo3", status="any", sources="r2")
    with pytest.raises(ExportError, match="nothing to export as dpo"):
        export(store, "dpo", tmp_path / "dpo4", status="any", sources="r2-revision")


def test_people_pairs_come_from_a_scored_queue_and_a_leads_resolution_wins(store, tmp_path):
    from library_fixtures import filled_store

    from core.export import export
    from core.judging import queue as jq
    from core.judging.agreement import resolve

    ids = filled_store(store)
    pid = store.get_trajectory(ids["r2"])["prompt_id"]
    other = store.save_trajectory(store.create_run("reer", pid, {}, "m"), "A plan.", "Another answer, plainer.")
    jq.create_queue(store, "week-1", overlap=3, open_items=True, created_by="lead")
    draft, revision = jq.add_items(store, "week-1", [f"traj:{other}", f"traj:{ids['r2']}"], added_by="lead")[0]
    for who, a, b in (("ana", 4, 7), ("bo", 5, 8)):
        jq.submit(store, draft, who, overall=a)
        jq.submit(store, revision, who, overall=b)
    rows = [json.loads(x) for x in Path(export(store, "dpo", tmp_path / "p", status="any", sources="people").files[0])
            .read_text().splitlines()]
    (p,) = rows
    assert p["source"] == "people" and (p["chosen_score"], p["rejected_score"]) == (7.5, 4.5)
    assert p["margin"] == pytest.approx(3 / 9) and p["rejected"][0]["content"].endswith(jq.get_item(store, draft)["text"])
    resolve(store, draft, "lead", overall=9)  # the lead resolves the plainer answer as the better one
    (p,) = [json.loads(x) for x in Path(export(store, "dpo", tmp_path / "p", status="any", sources="people").files[0])
            .read_text().splitlines()]
    assert (p["chosen_score"], p["rejected_score"]) == (9, 7.5)
    assert p["chosen"][0]["content"].endswith(jq.get_item(store, draft)["text"])
