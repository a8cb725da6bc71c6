"""The kill drills: `palimpsest reer run --concurrency 8` over 8 short
items against a server, killed mid-run, must end with every item done once and nothing lost.

- Against the REAL llama-cpp-python server (BOS-fixed, tests/llama_server.py; marker `server`):
  the batch process is SIGKILLed once while items are in flight, then rerun. Every event stored
  before the kill is unchanged after the rerun, each item has one run with one start and one
  finish, and the output file has all 8 records in input order.
- Against 4 replicas of the latency stand-in (core.serve_standin, 4 processes): one replica is
  SIGKILLed while items are in flight; the run finishes without a rerun, every item once, and the
  dead replica is dropped with its warning while the others carry on.

Budgets are tiny (the real server's echoed log-probs cost about 140 ms per token on 2 cores).
Each test prints its figures (items, seconds, what the rerun resumed): `pytest -s` shows them;
docs/serving.md has the measured ones. Does not test the mechanisms apart (tests/core/runs/test_concurrency.py,
tests/core/models/test_hostile_server.py do).
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
from test_concurrency import _events, kill_mid_run, one_run_each, write_items

from core.data.items import Item
from core.serve_standin import MODEL, stats
from core.store import open_store
from llama_server import SKIP_REASON, LlamaServer, available

SCENES = ("lighthouse", "harbour", "orchard", "station", "bakery", "ferry", "library", "garden")


def drill_items() -> list[Item]:
    """8 short items with distinct content (references of about 40 tokens)."""
    return [Item(id=f"d{i}", query=f"Write three sentences about a {s}.",
                 reference=(f"The {s} was quiet before dawn. Someone had left a lamp burning by the door, and its "
                            f"light fell across the wet stones. By noon the {s} was full of voices again."))
            for i, s in enumerate(SCENES)]


def cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "studio.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def check_each_item_once(db: Path, out: Path, its: list[Item]) -> list[dict]:
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == [i.id for i in its]  # complete, in input order
    with open_store(db) as store:
        runs = one_run_each(store, "reer", "run_started", "run_finished")  # nothing done twice
        assert len(runs) == len(its) and all(r["status"] == "finished" for r in runs)
    return runs


@pytest.mark.server
@pytest.mark.skipif(not available(), reason=SKIP_REASON)
def test_reer_concurrency_8_against_the_real_server_killed_once_then_rerun(tmp_path):
    its = drill_items()
    inp, out, db = write_items(tmp_path / "in.jsonl", its), tmp_path / "out.jsonl", tmp_path / "drill.db"
    srv = LlamaServer(bos_fix=True, log_dir=tmp_path)
    try:
        cmd = ["reer", "run", "--input", str(inp), "--out", str(out), "--db", str(db), "--model", srv.spec(),
               "--concurrency", "8", "--max-steps", "1", "--candidates", "1", "--candidate-max-new-tokens", "8",
               "--draft-max-new-tokens", "16", "--quality-min-tokens", "5", "--template", "none", "--seed", "1"]
        killed_after = kill_mid_run(cli(cmd), db, "reer", timeout_s=900)
        before = _events(db)
        with open_store(db) as store:
            runs = store.list_runs(kind="reer")
            unfinished = [r["id"] for r in runs if r["status"] != "finished"]
        assert unfinished, "the kill came after every item had finished: nothing was tested"
        t1 = time.monotonic()
        rerun = subprocess.run([sys.executable, "-m", "studio.cli", *cmd], cwd=ROOT, capture_output=True,
                               text=True, timeout=900)
        rerun_s = time.monotonic() - t1
    finally:
        srv.stop()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert set(before) <= set(_events(db))  # every event stored before the kill is unchanged
    runs = check_each_item_once(db, out, its)
    resumed = [r for r in runs if r["id"] in unfinished]
    print(f"\nDRILL real: {len(its)} items; killed after {killed_after:.0f} s with {len(runs) - len(unfinished)} "
          f"runs finished and {len(unfinished)} open ({len(before)} events stored); rerun {rerun_s:.0f} s "
          f"resumed {len(resumed)}, the {len(runs) - len(unfinished)} finished ones cached")


def start_replica(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "core.serve_standin", "--delay", str(delay), "--brain",
                             "scripted"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = proc.stdout.readline().split()
    assert first[:1] == ["URL"], f"the stand-in did not start: {first}"
    return proc, first[1]


def runs_open(db: Path) -> int:
    """REER runs opened and not finished in `db` (0 before the store exists)."""
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM runs WHERE kind = 'reer' AND status != 'finished'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def test_reer_concurrency_8_over_4_standin_replicas_one_killed_mid_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PALIMPSEST_SERVER_TIMEOUT", "20")
    its = drill_items()
    inp, out, db = write_items(tmp_path / "in.jsonl", its), tmp_path / "out.jsonl", tmp_path / "drill.db"
    replicas = [start_replica(0.3) for _ in range(4)]
    try:
        spec = ",".join(url for _, url in replicas) + f"#{MODEL}"
        cmd = ["reer", "run", "--input", str(inp), "--out", str(out), "--db", str(db), "--model", spec,
               "--concurrency", "8", "--max-steps", "1", "--candidates", "2"]
        t0 = time.monotonic()
        proc = cli(cmd)
        victim, victim_url = replicas[1]
        while runs_open(db) < 4:  # items in flight (the replicas were probed before any run opened)
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() - t0 < 120, "the batch never had items in flight"
            time.sleep(0.02)
        served = stats(victim_url)["total"]
        os.kill(victim.pid, signal.SIGKILL)
        killed_after = time.monotonic() - t0
        with open_store(db) as store:
            open_runs = sum(1 for r in store.list_runs(kind="reer") if r["status"] != "finished")
        assert open_runs, "the kill came after every item had finished: nothing was tested"
        _, err = proc.communicate(timeout=300)
        total_s = time.monotonic() - t0
        others = [stats(url)["total"] for p, url in replicas if p is not victim]
    finally:
        for p, _ in replicas:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert proc.returncode == 0, err[-3000:]
    assert f"dropping endpoint {victim_url}" in err and "other(s) carry on" in err
    assert served > 0 and all(n > 0 for n in others)  # the victim had served before its death; all carried
    check_each_item_once(db, out, its)
    print(f"\nDRILL stand-in: {len(its)} items over 4 replicas (0.3 s per request); one killed after "
          f"{killed_after:.1f} s having served {served} requests, {open_runs} runs open; the run finished in {total_s:.1f} s, "
          f"the other replicas served {others}")
