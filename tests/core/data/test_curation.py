"""Curation: status, rating, tags and notes stick; an edit is a new version and the original is
never overwritten; listings filter on every field they offer; bad values are named."""
from __future__ import annotations

import pytest
from library_fixtures import REER_ITEMS, filled_store

from core.data import curation as cur
from core.store import BadValue, NotFound


def test_review_fields_round_trip(store):
    ids = filled_store(store)
    t = ids["reer"][2]
    cur.accept(store, t)
    cur.rate(store, t, 4)
    assert cur.tag(store, t, "vivid", "short", "vivid") == ["vivid", "short"]
    assert cur.untag(store, t, "short", "absent") == ["vivid"]
    cur.note(store, t, "good opening")
    cur.reject(store, t, reason="copies the answer")
    row = cur.show(store, t)
    assert row["status"] == "rejected" and row["rating"] == 4 and row["tags"] == ["vivid"]
    assert row["notes"] == "good opening\nrejected: copies the answer"
    cur.rate(store, t, None)
    cur.reset(store, t)
    row = cur.show(store, t)
    assert row["rating"] is None and row["status"] == "pending"


def test_edits_are_versions_and_the_original_is_kept(store):
    t = filled_store(store)["reer"][0]
    original = store.get_trajectory(t)
    v1 = cur.edit(store, t, thinking="A better plan.", note="tightened")
    v2 = cur.edit(store, t, answer="A better answer.")
    assert (v1, v2) == (1, 2)
    row = cur.show(store, t)
    assert (row["thinking"], row["answer"], row["version"]) == ("A better plan.", "A better answer.", 2)
    raw = store.get_trajectory(t)
    assert (raw["thinking"], raw["answer"]) == (original["thinking"], original["answer"])
    assert [v["version"] for v in row["versions"]] == [1, 2] and row["versions"][0]["note"] == "tightened"
    assert row["versions"][0]["answer"] == original["answer"]  # v1 changed only the thinking
    v3 = cur.revert(store, t, 0)
    assert cur.current(store, t) == {"version": v3, "thinking": original["thinking"], "answer": original["answer"]}
    assert len(cur.versions(store, t)) == 3


def test_filters(store):
    ids = filled_store(store)
    cur.tag(store, ids["reer"][1], "keep")
    cur.edit(store, ids["reer"][2], thinking="x" * 500)
    f = cur.TrajectoryFilter
    assert [r["id"] for r in cur.list_trajectories(store, f(status="accepted"))] == [ids["reer"][0], ids["reer"][1], ids["r2"]]
    assert [r["id"] for r in cur.list_trajectories(store, f(kind="r2"))] == [ids["r2"]]
    assert [r["id"] for r in cur.list_trajectories(store, f(source="reer", min_score=0.35))] == ids["reer"][1:]
    assert [r["id"] for r in cur.list_trajectories(store, f(max_score=0.35))] == [ids["reer"][0]]
    assert [r["id"] for r in cur.list_trajectories(store, f(min_chars=400))] == [ids["reer"][2]]
    assert [r["id"] for r in cur.list_trajectories(store, f(tags=("keep",)))] == [ids["reer"][1]]
    assert [r["id"] for r in cur.list_trajectories(store, f(search="LIGHTHOUSE"))] == [ids["reer"][1]]
    assert len(cur.list_trajectories(store, f(passed_filters=True))) == 3  # the R2 one has no filters
    assert len(cur.list_trajectories(store, f(limit=2))) == 2


def test_bad_values_are_named(store):
    t = filled_store(store)["reer"][0]
    with pytest.raises(BadValue, match="rating: must be an integer from 1 to 5"):
        cur.rate(store, t, 9)
    with pytest.raises(BadValue, match="not a tag"):
        cur.tag(store, t, "a,b")
    with pytest.raises(BadValue, match="changes nothing"):
        cur.edit(store, t, thinking=REER_ITEMS[0][1])
    with pytest.raises(BadValue, match="versions.answer: must be a non-empty string"):
        cur.edit(store, t, answer="  ")
    with pytest.raises(BadValue, match="has no version 5"):
        cur.revert(store, t, 5)
    with pytest.raises(BadValue, match="status: 'done' is not allowed"):
        cur.list_trajectories(store, cur.TrajectoryFilter(status="done"))
    with pytest.raises(NotFound, match="trajectories: no row with id 999"):
        cur.accept(store, 999)


def test_bulk_changes_all_or_none(store):
    ids = filled_store(store)
    reer = ids["reer"]
    assert cur.bulk(store, [*reer, reer[0]], "tag", tags=["batch"]).changed == len(reer)  # each id once
    assert all(store.get_trajectory(t)["tags"][-1:] == ["batch"] for t in reer)
    before = {t: store.get_trajectory(t)["status"] for t in reer}
    with pytest.raises(NotFound):  # the last id does not exist: the earlier rejections are rolled back
        cur.bulk(store, [*reer, 9999], "reject", reason="batch")
    assert {t: store.get_trajectory(t)["status"] for t in reer} == before
    assert not any("batch" in (store.get_trajectory(t)["notes"] or "") for t in reer)
    with pytest.raises(BadValue, match="no trajectories to change"):
        cur.bulk(store, [], "accept")
    with pytest.raises(BadValue, match="give one or more tags"):
        cur.bulk(store, reer, "untag")
    with pytest.raises(BadValue, match="use one of accept"):
        cur.bulk(store, reer, "delete")
