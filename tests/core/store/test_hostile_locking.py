"""Hostile locking: several processes on one store.

- A long import commits in batches: while it runs in another process, a writer with a short
  busy timeout gets the write lock between two batches, and a reader sees the import's rows
  appear batch by batch (it used to be one transaction: 50,000 items held the lock 75 s).
- A SIGKILLed batched import, rerun, stores each record exactly once.
- A lock that stays taken says "busy ... another process ... retry" and names
  PALIMPSEST_BUSY_TIMEOUT, from a write and from an import, never "pass --db".
- Two `reer run` (and two `r2 run`) processes on one store: both exit 0, each item is run once,
  and each reports the other's items as "held by PID n" (they both used to exit 1, RunBusy).

Structural assertions only (locks taken, commits counted, exit statuses, rows), no timings;
`scripted:` models, so no model loads. A few seconds each.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from needs import ROOT

import core.data.imports as imports
from core.data.imports import ImportFailed, import_files
from core.store import StoreBusy, open_store

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def write_jsonl(path: Path, n: int, think: bool = False) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            ref = f"<think>\nplan {i}\n</think>\nAnswer {i}." if think else f"Answer {i}."
            f.write(json.dumps({"query": f"Question {i}?", "reference": ref}) + "\n")
    return path


# A child that imports `file` into `db` in batches of 20, each record made slow (5 ms) so the
# import lasts a few seconds; it prints "go" once its first batch is committed.
SLOW_IMPORT = """
import sys, time
import core.data.imports as io
from core.store import open_store
db, file = sys.argv[1], sys.argv[2]
store = open_store(db)
real, seen = io._store_record, [0]
def slow(*a, **k):
    time.sleep(0.005)
    seen[0] += 1
    if seen[0] == 21:
        print("go", flush=True)
    return real(*a, **k)
io._store_record = slow
report = io.import_files(store, file, batch_rows=20)
print("commits", report.commits, flush=True)
"""


def test_a_writer_gets_the_lock_between_the_batches_of_a_long_import(tmp_path, monkeypatch):
    """While 600 records are imported (several seconds), another process's writer with a 1 s busy
    timeout takes the write lock three times, and a reader counts the rows growing in between.
    Before: one transaction for the whole import, so the writer failed with 'locked'."""
    monkeypatch.setenv("PALIMPSEST_BUSY_TIMEOUT", "1")
    db = tmp_path / "s.db"
    open_store(db).close()
    src = write_jsonl(tmp_path / "many.jsonl", 600)
    child = subprocess.Popen([sys.executable, "-c", SLOW_IMPORT, str(db), str(src)], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "go", child.stderr.read()
        reader = sqlite3.connect(str(db), timeout=0.2, isolation_level=None)
        seen = []
        for _ in range(3):
            store = open_store(db)
            with store.transaction():  # the store's own writer: polls for the lock, 1 s at most here
                store.db.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER)")
                store.db.execute("INSERT INTO probe VALUES (1)")
            store.close()
            seen.append(reader.execute("SELECT count(*) FROM prompts").fetchone()[0])
        assert child.poll() is None, "the import ended before the probes: make it slower"
        assert 0 < seen[0] < 600 and seen[-1] < 600
        reader.close()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert int(out.split()[-1]) >= 30  # 600 records in batches of 20
    with open_store(db) as s:
        assert s.db["prompts"].count == 600 and s.db["probe"].count == 3


@pytest.fixture
def quick_lock(monkeypatch):
    """The store's busy timeout at 0.3 s, through its setting, so a held lock fails fast."""
    monkeypatch.setenv("PALIMPSEST_BUSY_TIMEOUT", "0.3")


def test_an_import_commits_in_batches_of_the_setting(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", 50)
    monkeypatch.setenv("PALIMPSEST_IMPORT_BATCH", "7")
    with open_store(tmp_path / "s.db") as s:
        report = import_files(s, src, batch_seconds=60)
        assert report.commits == 8 and report.stored == 50 and s.db["prompts"].count == 50
    monkeypatch.setenv("PALIMPSEST_IMPORT_BATCH", "none")
    with open_store(tmp_path / "s.db") as s, pytest.raises(Exception, match="PALIMPSEST_IMPORT_BATCH='none'"):
        import_files(s, src)


def test_a_killed_batched_import_rerun_stores_each_record_once(tmp_path):
    """SIGKILL in the fourth batch (of 25 records): three batches stay, the fourth is gone;
    the rerun stores the rest and counts the first 75 as duplicates: 200 prompts, 200 trajectories."""
    db = tmp_path / "s.db"
    open_store(db).close()
    src = write_jsonl(tmp_path / "t.jsonl", 200, think=True)
    code = ("import os, signal, sys\nimport core.data.imports as io\nfrom core.store import open_store\n"
            "s = open_store(sys.argv[1])\nreal, n = io._store_record, [0]\n"
            "def rec(*a, **k):\n    n[0] += 1\n    if n[0] == 90: os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return real(*a, **k)\nio._store_record = rec\nio.import_files(s, sys.argv[2], batch_rows=25)\n")
    res = subprocess.run([sys.executable, "-c", code, str(db), str(src)], cwd=ROOT, env=ENV, timeout=120,
                         capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    with open_store(db) as s:
        assert s.db["prompts"].count == 75 and s.db["trajectories"].count == 75
        assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        report = import_files(s, src, batch_rows=25)
        assert (report.total("prompts"), report.total("trajectories"), report.total("duplicates")) == (125, 125, 75)
        assert s.db["prompts"].count == 200 and s.db["trajectories"].count == 200
        assert s.db.execute("SELECT count(DISTINCT content_hash) FROM prompts").fetchone()[0] == 200
        assert s.db.execute("SELECT count(*) FROM runs WHERE kind = 'import'").fetchone()[0] == 200


def test_a_failure_in_a_later_batch_keeps_the_earlier_ones_and_says_so(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "f.jsonl", 30)
    real, n = imports._store_record, [0]

    def failing(*a, **k):
        n[0] += 1
        if n[0] == 25:
            raise sqlite3.OperationalError("disk I/O error")
        return real(*a, **k)

    with open_store(tmp_path / "s.db") as s:
        monkeypatch.setattr(imports, "_store_record", failing)
        with pytest.raises(ImportFailed) as err:
            import_files(s, src, batch_rows=10)
        msg = str(err.value)
        assert "after 20 record(s) were stored" in msg and "run the same import again" in msg
        assert s.db["prompts"].count == 20
        monkeypatch.undo()
        report = import_files(s, src, batch_rows=10)
        assert report.total("prompts") == 10 and report.total("duplicates") == 20


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    other = sqlite3.connect(str(db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_write_behind_a_held_lock_says_busy_retry_and_the_setting(tmp_path, quick_lock):
    """Before: a raw sqlite3.OperationalError 'database is locked' (a traceback in the CLI)."""
    db = tmp_path / "s.db"
    with open_store(db) as s:
        other = _hold_write_lock(db)
        try:
            with pytest.raises(StoreBusy) as err:
                s.add_prompt("q?", "r.")
        finally:
            other.execute("ROLLBACK")
        msg = str(err.value)
        assert "busy" in msg and "another process" in msg and "retry" in msg
        assert "PALIMPSEST_BUSY_TIMEOUT" in msg and "0.3" in msg and "--db" not in msg
        assert isinstance(err.value, sqlite3.OperationalError)  # callers that catch SQLite errors still do
        s.add_prompt("q?", "r.")  # and once the other writer is gone, it simply works


def test_the_import_cli_behind_a_held_lock_says_retry_in_one_line(tmp_path):
    """`palimpsest import` while another process writes: exit 2 and the busy advice, no traceback,
    no 'pass --db with a writable SQLite file' (wrong for a lock)."""
    db = tmp_path / "s.db"
    open_store(db).close()
    src = write_jsonl(tmp_path / "a.jsonl", 3)
    other = _hold_write_lock(db)
    try:
        res = subprocess.run([sys.executable, "-m", "studio.cli", "import", str(src), "--db", str(db)], cwd=ROOT,
                             env={**ENV, "PALIMPSEST_BUSY_TIMEOUT": "0.3"}, capture_output=True, text=True, timeout=120)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "writable" not in res.stderr
    assert "busy" in res.stderr and "retry" in res.stderr and "PALIMPSEST_BUSY_TIMEOUT" in res.stderr


def test_a_bad_busy_timeout_setting_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PALIMPSEST_BUSY_TIMEOUT", "soon")
    with pytest.raises(Exception, match="PALIMPSEST_BUSY_TIMEOUT='soon'.*seconds"):
        open_store(tmp_path / "s.db")


# ---- two batch processes on one store ---------------------------------------------------------

ITEMS = [{"id": f"it{i}", "query": f"Write a short note about harbour {i} at dawn.",
          "reference": f"Harbour {i} wakes slowly. Boats come in with the tide, and the gulls follow them home."}
         for i in range(4)]


def _cli_args(command: str, src: Path, out: Path, db: Path) -> list[str]:
    if command == "reer":  # ~3 generations of 0.5 s per item
        return ["reer", "run", "--input", str(src), "--out", str(out), "--db", str(db),
                "--model", "scripted:delay=0.5", "--candidates", "2", "--max-steps", "1"]
    return ["r2", "run", "--input", str(src), "--out", str(out), "--db", str(db),
            "--writer", "scripted:delay=0.25", "--judge", "scripted:judge=6,delay=0.25", "--rounds", "1"]


@pytest.mark.parametrize("command", ["reer", "r2"])
def test_two_batch_processes_on_one_store_both_exit_0_and_run_each_item_once(tmp_path, command):
    """The second process starts once the first drives its first item. Each meets items the other
    is driving: it reports them "held by PID <the other>", skips them and exits 0."""
    db, src = tmp_path / "s.db", tmp_path / "items.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    outs = [tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"]
    start = lambda out: subprocess.Popen(  # noqa: E731
        [sys.executable, "-m", "studio.cli", *_cli_args(command, src, out, db)], cwd=ROOT, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = start(outs[0])
    procs = [first]
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until the first process holds a run's lease
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first process never started a run"
            if db.exists():
                try:
                    with sqlite3.connect(str(db), timeout=1) as c:
                        if c.execute("SELECT count(*) FROM runs WHERE lease_owner IS NOT NULL").fetchone()[0]:
                            break
                except sqlite3.OperationalError:
                    pass  # the store is still being created
            time.sleep(0.05)
        procs.append(start(outs[1]))
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    errs = [err for _, err in results]
    assert [p.returncode for p in procs] == [0, 0], errs
    held = [f"held by PID {procs[1 - i].pid}" in errs[i] for i in range(2)]
    assert any(held), errs
    for i in range(2):
        assert "failed" not in errs[i].replace("0 failed", ""), errs[i]
        assert "RunBusy" not in errs[i]
    with open_store(db) as s:
        runs = s.list_runs(kind=command)
        assert sorted(r["prompt_id"] for r in runs) == sorted({r["prompt_id"] for r in runs})  # one run per item
        assert len(runs) == len(ITEMS) and all(r["status"] == "finished" for r in runs)
        started = "run_started" if command == "reer" else "r2_started"
        for r in runs:
            kinds = [e.kind for e in s.events(r["id"])]
            assert kinds.count(started) == 1, kinds  # driven once, never restarted by the other process
    written = [line for out in outs for line in out.read_text().splitlines()]
    held_items = sum(line.startswith("held ") for e in errs for line in e.splitlines())
    assert len(written) + held_items == 2 * len(ITEMS)  # every item is written or reported held, by each process


def test_closing_a_store_under_another_threads_query_does_not_crash_the_process(tmp_path):
    """A run thread outliving its app queried a store being closed: sqlite3 segfaulted (rc -11, the
    whole test session died). close() now waits for the call in progress."""
    script = tmp_path / "race.py"
    script.write_text(
        "import sys, threading, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from core.store import open_store\n"
        "for trial in range(20):\n"
        "    s, stop = open_store(None), []\n"
        "    def loop():\n"
        "        while not stop:\n"
        "            try:\n"
        "                s.get_run('nope')\n"
        "            except Exception:\n"
        "                pass\n"
        "    ts = [threading.Thread(target=loop) for _ in range(2)]\n"
        "    [t.start() for t in ts]\n"
        "    time.sleep(0.01)\n"
        "    s.close()\n"
        "    time.sleep(0.005)\n"
        "    stop.append(1)\n"
        "    [t.join() for t in ts]\n"
        "print('survived')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stderr[-500:])


def test_a_run_whose_driver_pid_is_dead_does_not_read_as_driven_by_another_process(tmp_path):
    """Before: after a studio SIGKILL the run read "running (driven by another process)" though that PID
    was dead (Run resumed it fine)."""
    import socket

    from core.runs.lease import lease_owner
    from studio.views.reer import ReerView, status_html

    store = open_store(tmp_path / "s.db")
    pid, _ = store.add_prompt("Write about fog.", "Fog rolls in.")
    run_id = store.create_run("reer", pid, {"max_steps": 4}, "scripted:")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that no longer runs: the killed studio
    assert store.claim_run(run_id, f"{socket.gethostname()}:{gone.pid}:job-dead", 60)
    text = status_html(store.get_run(run_id), ReerView(), driving=False)
    assert "driven by another process" not in text
    assert f"the process that drove it (PID {gone.pid}) is gone; Run resumes it" in text
    live = lease_owner("job").replace(f":{os.getpid()}:", f":{os.getppid()}:")  # a live process (this one's parent)
    store.db.execute("UPDATE runs SET lease_owner = ?, lease_until = ? WHERE id = ?", [live, time.time() + 60, run_id])
    assert "running (driven by another process)" in status_html(store.get_run(run_id), ReerView(), driving=False)
    store.close()
