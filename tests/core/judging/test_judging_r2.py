"""A paused R2 run's text judged through a queue: listed as waiting, judged by two people, and their
consensus handed to the run as a human judgment that names who fed it and who judged; the run goes
on. Judgment.annotator: set explicitly or by acting_as, kept through to_dict/from_dict, absent in
older dicts."""
from __future__ import annotations

import pytest
from r2_fakes import DRAFT, FakeLM

from core import annotators as who
from core.judging import queue as jq
from core.judging import feed as jr2
from core.r2.config import R2Config
from core.r2.jobs import pending_request, r2_job, run_record
from core.r2.judge import DEFAULT_RUBRIC, Judgment, human_judgment


def test_judgment_carries_its_annotator():
    j = human_judgment(DEFAULT_RUBRIC, 6, "The ending is flat.", annotator="ann")
    assert j.annotator == "ann" and Judgment.from_dict(j.to_dict()).annotator == "ann"
    with who.acting_as("bob"):
        assert human_judgment(DEFAULT_RUBRIC, 6, "The ending is flat.").annotator == "bob"
    old = {k: v for k, v in j.to_dict().items() if k != "annotator"}  # saved before annotators
    assert Judgment.from_dict(old).annotator is None and who.label(None) == "unknown"


def test_waiting_run_judged_through_a_queue_goes_on(store):
    pid, _ = store.add_prompt("Write about a lighthouse keeper.", "ref", rubric=list(DEFAULT_RUBRIC[:2]))
    cfg = R2Config(max_rounds=1, threshold=9, judge_mode="human")
    run_id = list(r2_job(store, FakeLM(), None, pid, cfg))[0].run_id
    refs = jr2.waiting_refs(store)
    assert refs == [f"r2:{run_id}:0"]
    jq.create_queue(store, "r2", list(DEFAULT_RUBRIC[:2]), overlap=2, open_items=True)  # judged by id
    (item,), _ = jq.add_items(store, "r2", refs)
    assert jq.get_item(store, item)["text"] == DRAFT
    with pytest.raises(jq.JudgingError, match="nobody has judged"):
        jr2.feed(store, item, by="lead")
    jq.submit(store, item, "ann", {"1": 4, "2": 6}, overall=5, critique="The keeper never reacts.")
    jq.submit(store, item, "bob", {"1": 2, "2": 4}, overall=3, critique="Show her fear.")
    jr2.feed(store, item, by="lead")
    assert pending_request(store, run_id) is None
    with pytest.raises(jq.JudgingError, match="not waiting"):
        jr2.feed(store, item, by="lead")
    list(r2_job(store, FakeLM(), None, pid, cfg))  # resumed: revises, then waits for version 1
    j = run_record(store, run_id)["rounds"][0]["judgment"]
    assert (j["overall"], j["judge"], j["annotator"]) == (4, "human", "lead")
    assert j["scores"][DEFAULT_RUBRIC[0]] == 3 and "ann, bob" in j["note"]
    assert j["critique"] == "The keeper never reacts. Show her fear."
    assert jr2.waiting_refs(store) == [f"r2:{run_id}:1"]
