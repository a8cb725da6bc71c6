"""Skip (issue 26): a task given back unjudged goes back to the queue and is not handed to the same
person again while other tasks wait for them, in the CLI (`judge skip` then `judge next`, each its
own process-like call) and through core.judging.queue as the Judge tab calls it after a reload (no
session memory of the skip)."""
from __future__ import annotations

import json

import pytest
from library_fixtures import reer_db

from core.judging import queue as jq
from core.store import open_store
from studio.cli.main import main


@pytest.fixture
def db(tmp_path):
    return reer_db(tmp_path / "s.db", 3)


def _next(capsys, db, who="ann"):
    assert main(["judge", "next", "w", "--annotator", who, "--db", db]) == 0
    task = json.loads(capsys.readouterr().out)["task"]
    return None if task is None else task["item_id"]


def test_cli_skip_hands_another_task_until_only_skipped_ones_are_left(db, capsys):
    assert main(["judge", "queue", "create", "w", "--criterion", "clear", "--overlap", "2", "--db", db]) == 0
    assert main(["judge", "queue", "add", "w", "1", "2", "3", "--db", db]) == 0
    capsys.readouterr()
    first = _next(capsys, db)
    assert main(["judge", "skip", str(first), "--annotator", "ann", "--db", db]) == 0
    assert "given back" in capsys.readouterr().out
    second = _next(capsys, db)
    assert second != first  # the old code handed the skipped item straight back
    assert main(["judge", "skip", str(second), "--annotator", "ann", "--db", db]) == 0
    capsys.readouterr()
    third = _next(capsys, db)
    assert third not in (first, second)
    # the skipped item went back to the queue: someone else gets it
    assert _next(capsys, db, "bob") == first
    # ann judges the third; only skipped ones are left for her: the oldest skip comes back first
    assert main(["judge", "submit", str(third), "--score", "1=5", "--annotator", "ann", "--db", db]) == 0
    capsys.readouterr()
    assert _next(capsys, db) == first


def test_skip_is_remembered_across_a_reload_of_the_judge_tab(db):
    with open_store(db) as s:
        jq.create_queue(s, "w", ["clear"], overlap=1)
        jq.add_items(s, "w", ["1", "2", "3"])
        t = jq.next_task(s, "w", "ann")
        assert jq.release(s, t.item_id, "ann")
        # the page's own list of skips is gone after a reload: next_task alone must not hand it back
        again = jq.next_task(s, "w", "ann")
        assert again is not None and again.item_id != t.item_id
