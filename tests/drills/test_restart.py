"""A real restart (issue 27, Deliver 8): `palimpsest app` runs as a process of its own, is
SIGKILLed in the middle of a REER run and of an R2 run (the scripted model with a delay per
generation, so the kill lands between decisions), and is started again on the same store. The
runs are still listed, Run with the same prompt and settings resumes each from its last decided
step, and nothing decided before the kill is lost, changed or done twice."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from needs import ROOT
from ui_helpers import client, free_port

from core.store import open_store

pytestmark = pytest.mark.ui

MODEL = "scripted:judge=6,delay=0.5"  # every generation takes 0.5 s: a run lasts several seconds
QUERY = "Write a short note about a lighthouse keeper and the storm at sea."
ANSWER = "The keeper climbed the stairs when the storm broke over the sea and lit the lamp for the boats. " * 3
REER_FORM = ["", 2, 4, 0.0, 120, 60, 0, True]  # model (the app's), K, max steps, threshold, draft, cand, seed, cues
R2_FORM = ["model", 3, 9, 0, False, 60, 40, 60, False, 60]  # mode, rounds, threshold (never met), seed, ...


def _app(db: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "app", "--port", str(port), "--model", MODEL,
                             "--db", str(db)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"the app did not answer: {proc.stdout.read()[-3000:]}")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _events(db: Path, run_id: str) -> list:
    with open_store(db) as store:
        return store.events(run_id)


def _until(cond, what: str, timeout: float = 120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _run_id(status: str) -> str:
    return re.search(r'data-run="([0-9a-f]+)"', status).group(1)


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "studio.db"
    with open_store(path) as store:
        store.add_prompt(QUERY, ANSWER, id="p-light", category="story_writing")
    return path


def _key(e) -> tuple:
    """What an event says, without its time."""
    d = e.to_dict()
    d.pop("t", None)
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


def test_a_reer_run_survives_a_killed_app(db):
    port = free_port()
    proc = _app(db, port)
    try:
        run_id = _run_id(client(f"http://127.0.0.1:{port}/").predict("p-light", *REER_FORM,
                                                                     api_name="/reer_run")[1])
        # kill it once step 1 is decided and step 2 is under way, before the run ends
        _until(lambda: any(e.kind == "segment_decided" for e in _events(db, run_id)), "the first decision")
        _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _events(db, run_id)
    decided = [e.step for e in before if e.kind == "segment_decided"]
    assert decided and before[-1].kind != "run_finished", [e.kind for e in before]
    with open_store(db) as store:
        assert store.get_run(run_id)["status"] == "running"  # the dead app left it running

    proc = _app(db, port)
    try:
        api = client(f"http://127.0.0.1:{port}/")
        with open_store(db) as store:
            assert [r["id"] for r in store.list_runs(kind="reer")] == [run_id]  # listed, nothing new
        shown = api.predict(run_id, "score", api_name="/reer_show")[0]
        assert run_id[:8] in shown and 'data-state="running"' in shown
        again = _run_id(api.predict("p-light", *REER_FORM, api_name="/reer_run")[1])
        assert again == run_id  # Run with the same prompt and settings resumes it
        _until(lambda: _events(db, run_id)[-1].kind == "run_finished", "the resumed run to finish")
    finally:
        proc.kill()
        proc.wait(30)
    after = _events(db, run_id)
    assert [_key(e) for e in after[:len(before)]] == [_key(e) for e in before]  # nothing decided lost or changed
    steps = [e.step for e in after if e.kind == "segment_decided"]
    n_segments = len(next(e for e in after if e.kind == "initial_draft").segments)
    assert steps == list(range(1, min(4, n_segments) + 1))  # every step decided once, in order
    assert len(steps) > len(decided)  # the new app decided the rest
    assert sum(e.kind == "initial_draft" for e in after) == 1 and sum(e.kind == "run_started" for e in after) == 1
    with open_store(db) as store:
        assert store.get_run(run_id)["status"] == "finished"
        assert [r["id"] for r in store.list_runs(kind="reer")] == [run_id]


def test_an_r2_run_survives_a_killed_app(db):
    port = free_port()
    proc = _app(db, port)
    try:
        out = client(f"http://127.0.0.1:{port}/").predict("p-light", "", *R2_FORM, api_name="/r2_run")
        run_id = _run_id(out[1])
        _until(lambda: sum(e.kind == "judgment_given" for e in _events(db, run_id)) >= 1, "the first judgment")
        _kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _events(db, run_id)
    assert before[-1].kind != "r2_finished", [e.kind for e in before]

    proc = _app(db, port)
    try:
        api = client(f"http://127.0.0.1:{port}/")
        with open_store(db) as store:
            assert [r["id"] for r in store.list_runs(kind="r2")] == [run_id]
        again = _run_id(api.predict("p-light", "", *R2_FORM, api_name="/r2_run")[1])
        assert again == run_id
        _until(lambda: _events(db, run_id)[-1].kind == "r2_finished", "the resumed run to finish")
    finally:
        proc.kill()
        proc.wait(30)
    after = _events(db, run_id)
    assert [_key(e) for e in after[:len(before)]] == [_key(e) for e in before]
    kinds = [e.kind for e in after]
    assert kinds.count("r2_started") == 1 and kinds.count("r2_drafted") == 1 and kinds.count("r2_finished") == 1
    rounds = [e.round for e in after if e.kind == "r2_round_finished"]
    assert rounds and rounds == list(range(1, len(rounds) + 1))  # each round once, in order
    for kind in ("r2_reflected", "r2_revised"):
        assert [e.round for e in after if e.kind == kind] == rounds, kind
    assert [e.version for e in after if e.kind == "judgment_given"] == [0, *rounds]  # each text judged once
    assert len(after) > len(before) and any(e.kind == "r2_round_finished" for e in after[len(before):])
    with open_store(db) as store:
        assert store.get_run(run_id)["status"] == "finished"
