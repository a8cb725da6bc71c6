"""Judging queues: overlap k is never exceeded (also by two connections taking tasks at once),
nobody sees another's scores before submitting, a held task comes back after its timeout or after a
kill, and a submitted judgment survives a reopen of the store. Annotators on review acts."""
from __future__ import annotations

import threading

import pytest
from library_fixtures import REER_ITEMS, add_r2, add_reer

from core.data import curation as cur
from core import annotators as who
from core.judging import queue as jq
from core.store import open_store

RUBRIC = ["clear", "vivid"]


def drafts(store, n: int) -> list[str]:
    """n trajectories of distinct prompts; their refs."""
    refs = []
    for i in range(n):
        q, thinking, answer = REER_ITEMS[i % len(REER_ITEMS)]
        refs.append(f"traj:{add_reer(store, f'{q} (variant {i})', thinking, answer)}")
    return refs


def filled_queue(store, n=6, k=2, timeout=600.0):
    jq.create_queue(store, "q", RUBRIC, overlap=k, task_timeout_s=timeout, created_by="lead")
    new, dup = jq.add_items(store, "q", drafts(store, n))
    assert (len(new), dup) == (n, 0)
    return new


def test_three_annotators_overlap_two_each_item_judged_exactly_twice(store):
    items = filled_queue(store, n=6, k=2)
    judged = {a: [] for a in ("ann", "bob", "cy")}
    for _ in range(20):  # round-robin until nobody gets a task
        got = False
        for a in judged:
            t = jq.next_task(store, "q", a)
            if t is not None:
                assert t.item_id not in judged[a]
                jq.submit(store, t.item_id, a, {"1": 5, "2": 6}, overall=5)
                judged[a].append(t.item_id)
                got = True
        if not got:
            break
    per_item = {i: sum(i in v for v in judged.values()) for i in items}
    assert per_item == {i: 2 for i in items}
    p = jq.progress(store, "q")
    assert (p["judgments"], p["needed"], p["complete"], p["percent"]) == (12, 12, 6, 100.0)
    assert sorted(p["annotators"]) == ["ann", "bob", "cy"] and sum(v["judged"] for v in p["annotators"].values()) == 12


def test_fewest_judgments_first_and_own_task_handed_back(store):
    items = filled_queue(store, n=3, k=2)
    a = jq.next_task(store, "q", "ann")
    assert jq.next_task(store, "q", "ann").item_id == a.item_id  # a reload gets the same task back
    jq.submit(store, a.item_id, "ann", {"clear": 3, "vivid": 4}, overall=3)
    b = jq.next_task(store, "q", "bob")
    assert b.item_id != a.item_id  # items with no judgment come before the one with one
    assert a.item_id == items[0] and b.item_id == items[1]


def test_scores_hidden_until_own_submission(store):
    filled_queue(store, n=1, k=2)
    t = jq.next_task(store, "q", "ann")
    jq.submit(store, t.item_id, "ann", {"1": 8, "2": 7}, overall=8)
    u = jq.next_task(store, "q", "bob")
    assert u.item_id == t.item_id and not hasattr(u, "scores")
    assert not jq.scores_visible(store, t.item_id, "bob") and jq.scores_visible(store, t.item_id, "ann")
    with pytest.raises(jq.ScoresHidden):
        jq.judgments(store, t.item_id, viewer="bob")
    jq.submit(store, t.item_id, "bob", {"1": 4, "2": 5}, overall=4)
    seen = jq.judgments(store, t.item_id, viewer="bob")
    assert [(j["annotator"], j["overall"]) for j in seen] == [("ann", 8), ("bob", 4)]


def test_timeout_gives_the_task_back_and_a_late_submit_is_refused_when_full(store):
    items = filled_queue(store, n=1, k=1, timeout=60)
    t0 = 1_000_000.0
    a = jq.next_task(store, "q", "ann", now_s=t0)
    assert jq.next_task(store, "q", "bob", now_s=t0 + 30) is None  # held: k = 1
    b = jq.next_task(store, "q", "bob", now_s=t0 + 61)  # ann's task expired: back in the queue
    assert b.item_id == a.item_id == items[0]
    with pytest.raises(jq.JudgingError, match="timed out"):
        jq.submit(store, a.item_id, "ann", {"1": 5, "2": 5}, overall=5, now_s=t0 + 62)
    jq.submit(store, b.item_id, "bob", {"1": 5, "2": 5}, overall=5, now_s=t0 + 62)
    assert jq.progress(store, "q", now_s=t0 + 62)["complete"] == 1


def test_double_submit_and_bad_scores_are_refused_naming_the_field(store):
    filled_queue(store, n=1, k=2)
    t = jq.next_task(store, "q", "ann")
    with pytest.raises(jq.JudgingError, match=r"scores\['1'\]: 11 is not a number from 1 to 10"):
        jq.submit(store, t.item_id, "ann", {"1": 11}, overall=5)
    with pytest.raises(jq.JudgingError, match="'tone' is not a criterion"):
        jq.submit(store, t.item_id, "ann", {"tone": 3}, overall=5)
    with pytest.raises(jq.JudgingError, match="overall: missing"):
        jq.submit(store, t.item_id, "ann", {"1": 3})
    assert jq.submit(store, t.item_id, "ann", {"1": 3, "2": 4}) > 0  # overall: the mean of a full set
    assert jq.judgments(store, t.item_id, "ann")[0]["overall"] == 3.5
    with pytest.raises(jq.JudgingError, match="judged it already"):
        jq.submit(store, t.item_id, "ann", {"1": 3, "2": 4}, overall=3)
    with pytest.raises(who.BadAnnotator):
        jq.next_task(store, "q", "model:scripted:")


def test_two_connections_taking_tasks_at_once_never_exceed_k(tmp_path):
    path = tmp_path / "s.db"
    with open_store(path) as s:
        items = filled_queue(s, n=4, k=2)
    stores = [open_store(path) for _ in range(2)]
    handed: list[tuple[str, int]] = []
    lock, barrier = threading.Lock(), threading.Barrier(6)

    def worker(store, name):
        barrier.wait()
        while (t := jq.next_task(store, "q", name)) is not None:
            with lock:
                handed.append((name, t.item_id))
            jq.submit(store, t.item_id, name, {"1": 5, "2": 5}, overall=5)

    threads = [threading.Thread(target=worker, args=(stores[i % 2], f"p{i}")) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s in stores:
        s.close()
    with open_store(path) as s:
        counts = {i: s.db["judging_judgments"].count_where("item_id = ?", [i]) for i in items}
        assert counts == {i: 2 for i in items}
    assert len(handed) == 8 and len(set(handed)) == 8  # nobody was handed the same item twice


def test_judgment_saved_survives_a_reopen_and_an_unsubmitted_task_expires(tmp_path):
    path = tmp_path / "s.db"
    with open_store(path) as s:
        filled_queue(s, n=2, k=1, timeout=5)
        a = jq.next_task(s, "q", "ann", now_s=100.0)
        jq.submit(s, a.item_id, "ann", {"1": 7, "2": 6}, overall=7, now_s=101.0)
        b = jq.next_task(s, "q", "ann", now_s=102.0)  # taken, then the process "dies"
    with open_store(path) as s:
        assert [j["overall"] for j in jq.queue_judgments(s, "q")] == [7]
        assert jq.next_task(s, "q", "bob", now_s=103.0) is None  # ann still holds the other one
        c = jq.next_task(s, "q", "bob", now_s=108.0)  # expired: bob gets it
        assert c.item_id == b.item_id


def test_r2_draft_refs_and_bad_refs(store):
    from core import events as ev

    tid = add_r2(store)
    run = store.get_trajectory(tid)["run_id"]
    store.append_event(ev.R2Drafted(run, plan="", draft="The tide went out."))
    store.append_event(ev.Revised(run, round=1, text="The tide went out and the boats lay on their sides."))
    jq.create_queue(store, "r", RUBRIC, overlap=1)
    new, dup = jq.add_items(store, "r", [f"r2:{run}:0", f"r2:{run}:1", str(tid), f"traj:{tid}"])
    assert (len(new), dup) == (3, 1)  # "7" and "traj:7" are the same draft
    assert [i["text"] for i in jq.items(store, "r")[:2]] == ["The tide went out.",
                                                            "The tide went out and the boats lay on their sides."]
    for bad, msg in ((f"r2:{run}:9", "no text of version 9"), ("traj:999", "no trajectory 999"),
                     ("draft-1", "not a draft reference")):
        with pytest.raises(jq.JudgingError, match=msg):
            jq.add_items(store, "r", [bad])
    with pytest.raises(jq.JudgingError, match="exists already"):
        jq.create_queue(store, "r", RUBRIC)
    with pytest.raises(jq.JudgingError, match="overlap"):
        jq.create_queue(store, "s", RUBRIC, overlap=0)


def test_review_acts_record_their_annotator(store):
    t = add_reer(store, *REER_ITEMS[0])
    cur.accept(store, t, annotator="ann")
    with who.acting_as("bob"):
        cur.rate(store, t, 4)
        cur.note(store, t, "good opening")
    cur.reset(store, t)  # nobody set: recorded as unknown
    v = cur.edit(store, t, answer="A new answer.", annotator="cy")
    row = cur.show(store, t)
    assert [(h["action"], h["annotator"]) for h in row["history"]] == [
        ("accept", "ann"), ("rate", "bob"), ("note", "bob"), ("reset", "unknown"), ("edit", "cy")]
    assert row["annotator"] == "cy" and row["versions"][v - 1]["annotator"] == "cy"
    res = cur.bulk(store, [t], "reject", reason="flat", annotator="dee")
    assert res.changed == 1 and cur.history(store, t)[-1]["annotator"] == "dee"
