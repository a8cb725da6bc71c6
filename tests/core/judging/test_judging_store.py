"""The store side of judging: an older store is upgraded on open and its rows read "unknown" for
annotator; a judgment submitted by a process killed right after is kept, and the task that process
held goes back to the queue after its timeout."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

from library_fixtures import REER_ITEMS, add_reer
from needs import ROOT

from core.data import curation as cur
from core.judging import queue as jq
from core.schema import m008_annotators
from core.store import MIGRATIONS, migrate, open_store, sqlite_utils


def test_a_store_from_before_annotators_is_upgraded_and_reads_unknown(tmp_path):
    path = tmp_path / "old.db"
    older = MIGRATIONS[:MIGRATIONS.index(m008_annotators)]  # every migration before the annotators
    db = sqlite_utils.Database(sqlite3.connect(path))
    migrate(db, older)  # the schema as it was before annotators
    db.execute("INSERT INTO prompts (id, query, reference, content_hash, created_at) VALUES ('p', 'q', 'r', 'h', 't')")
    db.execute("INSERT INTO runs (id, kind, prompt_id, status) VALUES ('r', 'reer', 'p', 'finished')")
    db.execute("INSERT INTO trajectories (id, run_id, prompt_id, kind, thinking, answer, status) "
               "VALUES (1, 'r', 'p', 'reer', 'z', 'y', 'accepted')")
    db.execute("INSERT INTO versions (trajectory_id, version, thinking, answer, author, created_at) "
               "VALUES (1, 1, 'z2', 'y2', 'human', 't')")
    db.conn.commit()
    assert "annotator" not in db["trajectories"].columns_dict and not db["review_log"].exists()
    db.close()
    with open_store(path) as s:  # upgraded on open
        t = 1
        names = {r["name"] for r in s.db.query("SELECT name FROM _migrations")}
        assert {"m008_annotators", "m009_judging"} <= names
        row = cur.show(s, t)
        assert row["annotator"] == "unknown" and row["versions"][0]["annotator"] == "unknown"
        cur.accept(s, t, annotator="ann")
        assert cur.show(s, t)["annotator"] == "ann"


def test_a_killed_judge_loses_no_saved_judgment_and_its_task_comes_back(tmp_path):
    path = tmp_path / "k.db"
    with open_store(path) as s:
        for i in range(2):
            add_reer(s, f"{REER_ITEMS[i][0]} ({i})", *REER_ITEMS[i][1:])
        jq.create_queue(s, "q", ["clear"], overlap=1, task_timeout_s=60)
        jq.add_items(s, "q", ["traj:1", "traj:2"])
    script = textwrap.dedent(f"""
        import os, signal
        from core.judging import queue as jq
        from core.store import open_store
        s = open_store({str(path)!r})
        t = jq.next_task(s, "q", "ann", now_s=1000.0)
        jq.submit(s, t.item_id, "ann", {{"clear": 7}}, overall=7, now_s=1001.0)
        jq.next_task(s, "q", "ann", now_s=1002.0)  # held when the process dies
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    with open_store(path) as s:
        assert [(j["annotator"], j["overall"]) for j in jq.queue_judgments(s, "q")] == [("ann", 7)]
        assert jq.next_task(s, "q", "bob", now_s=1030.0) is None  # still held by the dead process
        back = jq.next_task(s, "q", "bob", now_s=1063.0)  # its timeout passed: back in the queue
        assert back is not None and back.item_id == 2
