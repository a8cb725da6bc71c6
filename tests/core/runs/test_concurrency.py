"""`reer run` / `r2 run` with several items in flight (core.runs.batch, studio/cli/batch.py).

What must hold whatever the concurrency: every item ends once (one run per prompt, one start and
one finish event per run), records are written in input order, two equal items never run at
once, an item whose run another live process holds is "held" (R2 too), a SIGKILL at any moment
then a rerun loses nothing decided (every event stored before the kill is still there, unchanged)
and runs nothing twice. Models: the scripted fake (core.models.scripted) and the latency
stand-in server (core.serve_standin), so nothing loads weights; each test takes seconds.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from needs import ROOT

from core.data.items import Item
from core.models.lm import GenerationConfig
from core.models.scripted import ScriptedLM
from core.r2.config import R2Config
from core.r2.jobs import models_name, r2_items
from core.reer.config import ReerConfig
from core.reer.jobs import reer_items
from core.runs.batch import ItemOutcome
from core.runs.driver import open_run_for
from core.serve_standin import serve
from core.store import open_store
from studio.cli.main import main

CFG = ReerConfig(candidates=2, max_steps=1, draft_max_new_tokens=120, candidate_max_new_tokens=60)
REFS = ("The harbour lights came on one by one while the ferry waited. Nobody on the quay spoke; the gulls did "
        "the talking. A boy counted the ropes twice and lost his place.",
        "My grandmother kept her letters in a biscuit tin. Each had a date on the back in pencil, and a word: "
        "rain, wedding, fever, peace. She never opened them again.")


def items(n: int, dup_at: int | None = None) -> list[Item]:
    """n items with distinct content; with `dup_at`, the item there repeats item 0's content under its own id."""
    out = [Item(id=f"it{i}", query=f"Write a short scene number {i}.", reference=f"{REFS[i % 2]} That was day {i}.")
           for i in range(n)]
    if dup_at is not None:
        out[dup_at] = Item(id=f"it{dup_at}", query=out[0].query, reference=out[0].reference)
    return out


def write_items(path: Path, its: list[Item]) -> Path:
    path.write_text("".join(json.dumps({"id": i.id, "query": i.query, "reference": i.reference}) + "\n" for i in its))
    return path


class Overlap(ScriptedLM):
    """The scripted model, counting how many generate calls run at once."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.now = self.most = 0
        self.gate = threading.Lock()

    def generate(self, messages, config: GenerationConfig, prefix: str = ""):
        with self.gate:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return super().generate(messages, config, prefix)
        finally:
            with self.gate:
                self.now -= 1


def one_run_each(store, kind: str, start: str, finish: str) -> list[dict]:
    """Assert every prompt has exactly one run of `kind`, with one start and one finish event; return the runs."""
    runs = store.list_runs(kind=kind)
    assert len({r["prompt_id"] for r in runs}) == len(runs)
    for r in runs:
        kinds = [x["kind"] for x in store.db.query("SELECT kind FROM events WHERE run_id = ? ORDER BY seq", [r["id"]])]
        assert kinds.count(start) == 1 and kinds.count(finish) == 1, (r["id"], kinds)
    return runs


# ---- the engine's batch ------------------------------------------------------------------------


def test_concurrent_reer_items_each_once_same_records_as_one_at_a_time(tmp_path):
    its = items(9, dup_at=1)  # it1 has it0's content and starts with it: one waits for the other, then is "cached"
    lm = Overlap(delay=0.05)
    with open_store(tmp_path / "c.db") as store:
        out = list(reer_items(store, its, CFG, lm.name, lambda: lm, concurrency=4))
        assert sorted(o.index for o in out) == list(range(len(its)))
        assert all(its[o.index] is o.item for o in out)
        by_id = {o.item.id: o for o in out}
        assert sorted([by_id["it0"].status, by_id["it1"].status]) == ["cached", "done"]
        assert by_id["it1"].run_id == by_id["it0"].run_id and by_id["it0"].record["id"] == "it0"
        assert sorted(o.status for o in out) == ["cached"] + ["done"] * 8
        one_run_each(store, "reer", "run_started", "run_finished")
        assert len(store.list_runs(kind="reer")) == 8
    assert lm.most >= 2  # several items really were in flight at once
    with open_store(tmp_path / "s.db") as store:
        seq_lm = ScriptedLM()
        seq = list(reer_items(store, its, CFG, seq_lm.name, lambda: seq_lm))
    assert [o.index for o in seq] == list(range(len(its)))  # one at a time: input order
    def strip(r: dict) -> dict:  # what timing does not decide
        return {**{k: v for k, v in r.items() if k not in ("run_id", "timings")},
                "steps": [{k: v for k, v in st.items() if k != "seconds"} for st in r["steps"]]}

    assert [strip(by_id[o.item.id].record) for o in seq] == [strip(o.record) for o in seq]


def test_a_repeated_content_takes_the_first_items_id_whatever_the_workers_race(tmp_path):
    """Two items with one content are one prompt, named by the first item of the input, as one at a
    time names it. Item 0's import is held back here: had the workers imported as they went (CI
    once saw it), item 1's would have come first and named the prompt "it1"."""
    its = items(4, dup_at=1)
    with open_store(tmp_path / "c.db") as store:
        add_prompt = store.add_prompt

        def slow_for_it0(*args, **kw):
            if kw.get("id") == "it0":
                time.sleep(0.3)
            return add_prompt(*args, **kw)

        store.add_prompt = slow_for_it0
        lm = ScriptedLM()
        out = list(reer_items(store, its, CFG, lm.name, lambda: lm, concurrency=4))
        by_id = {o.item.id: o for o in out}
        assert by_id["it0"].prompt_id == by_id["it1"].prompt_id == "it0"
        assert by_id["it0"].record["prompt_id"] == by_id["it1"].record["prompt_id"] == "it0"
        assert sorted(p["id"] for p in store.list_prompts()) == ["it0", "it2", "it3"]


def test_models_are_asked_for_one_worker_at_a_time(tmp_path):
    """Six workers need the model at once: `get_lm` (the CLI's loader memoises behind it) is never
    entered by two of them together, so a model loads once."""
    inside, most, gate = [0], [0], threading.Lock()
    lm = ScriptedLM()

    def get_lm():
        with gate:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)  # a slow load: other workers ask meanwhile
        with gate:
            inside[0] -= 1
        return lm

    with open_store(tmp_path / "c.db") as store:
        out = list(reer_items(store, items(6), CFG, lm.name, get_lm, concurrency=6))
    assert [o.status for o in out] == ["done"] * 6 and most[0] == 1


def test_r2_concurrent_with_a_held_item(tmp_path):
    """R2 runs through the same lease: an item whose run a live owner holds is "held", the rest run; after
    the holder lets go, a rerun finishes it and caches the rest."""
    its = items(5)
    cfg = R2Config(max_rounds=1, threshold=9)
    lm = Overlap(judge=7, delay=0.02)
    model = models_name(lm.name, lm.name)
    with open_store(tmp_path / "r2.db") as store:
        pid, _ = store.add_prompt(its[2].query, its[2].reference, id=its[2].id)
        run_id, _ = open_run_for(store, "r2", pid, cfg.as_dict(), model)
        other = f"{socket.gethostname()}:{os.getpid()}:studio-tab"  # a live owner (this very process)
        assert store.claim_run(run_id, other, 60)
        out = list(r2_items(store, its, cfg, lm.name, lm.name, lambda: (lm, lm), concurrency=3))
        status = {o.item.id: o.status for o in out}
        assert status == {"it0": "done", "it1": "done", "it2": "held", "it3": "done", "it4": "done"}
        held = next(o for o in out if o.status == "held")
        assert held.holder == f"PID {os.getpid()}" and held.record is None
        assert store.release_run(run_id, other)
        again = list(r2_items(store, its, cfg, lm.name, lm.name, lambda: (lm, lm), concurrency=3))
        assert {o.item.id: o.status for o in again} == {"it0": "cached", "it1": "cached", "it2": "done",
                                                         "it3": "cached", "it4": "cached"}
        runs = one_run_each(store, "r2", "r2_started", "r2_finished")
        assert len(runs) == 5 and all(r["status"] == "finished" for r in runs)
    assert lm.most >= 2


def test_a_failing_item_does_not_stop_the_others(tmp_path):
    class FailsOnDayThree(ScriptedLM):
        def generate(self, messages, config, prefix=""):
            if "number 3." in json.dumps(messages):
                raise RuntimeError("the model fell over")
            return super().generate(messages, config, prefix)

    lm = FailsOnDayThree()
    with open_store(tmp_path / "c.db") as store:
        out = list(reer_items(store, items(6), CFG, lm.name, lambda: lm, concurrency=3))
    status = {o.item.id: o.status for o in out}
    assert status.pop("it3") == "failed" and set(status.values()) == {"done"}


# ---- the CLI: order of the output file, defaults, the bar ---------------------------------------


def test_cli_writes_input_order_through_the_standin(tmp_path, capsys):
    its = items(8)
    inp = write_items(tmp_path / "in.jsonl", its)
    with serve(delay=0.2, brain="scripted", keep_bodies=False) as s:
        rc = main(["reer", "run", "--input", str(inp), "--out", str(tmp_path / "out.jsonl"), "--db",
                   str(tmp_path / "s.db"), "--model", s.spec, "--max-steps", "1", "--concurrency", "4"])
        stats = s.state.stats()
    assert rc == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == [i.id for i in its]
    assert stats["max_in_flight"] >= 2  # the server saw requests of several items at once
    with open_store(tmp_path / "s.db") as store:
        assert len(one_run_each(store, "reer", "run_started", "run_finished")) == 8


def test_output_file_keeps_input_order_whatever_the_finishing_order(tmp_path):
    from studio.cli.batch import run_batch

    its = items(5)
    rec = lambda i: {"id": its[i].id}  # noqa: E731
    finishing = [ItemOutcome(its[3], "p3", "done", "r3", rec(3), index=3),
                 ItemOutcome(its[1], "p1", "failed", "r1", None, "boom", index=1),
                 ItemOutcome(its[0], "p0", "cached", "r0", rec(0), index=0),
                 ItemOutcome(its[4], "p4", "done", "r4", rec(4), index=4),
                 ItemOutcome(its[2], "p2", "done", "r2", rec(2), index=2)]
    seen = []

    def start(on_event):
        for o in finishing:
            yield o
            seen.append((tmp_path / "out.jsonl.partial").read_text())

    status, counts = run_batch("reer", its, start, out=str(tmp_path / "out.jsonl"), db="db", progress=False,
                               postfix=lambda i, e: {}, line=lambda o: o.item.id, concurrency=4)
    assert status == 1 and counts["done"] == 3 and counts["cached"] == 1 and counts["failed"] == 1
    ids = lambda text: [json.loads(x)["id"] for x in text.splitlines()]  # noqa: E731
    # after each outcome, the partial file holds exactly the finished prefix (it1 failed: no line, no block)
    assert [ids(t) for t in seen[:4]] == [[], [], ["it0"], ["it0"]]
    assert ids((tmp_path / "out.jsonl").read_text()) == ["it0", "it2", "it3", "it4"]


def test_concurrency_defaults_and_the_local_model_warning(capsys):
    from studio.cli.batch import SERVER_CONCURRENCY, concurrency_for
    from studio.cli.common import CLIError

    url = "http://127.0.0.1:8000/v1#m"
    assert concurrency_for(None, [url]) == SERVER_CONCURRENCY == 16
    assert concurrency_for(None, ["scripted:"]) == concurrency_for(None, ["smollm2-135m"]) == 1
    assert concurrency_for(None, [url, "smollm2-135m"]) == 1  # R2 with a local judge: the judge sets the pace
    assert concurrency_for(8, ["scripted:"]) == 8 and capsys.readouterr().err == ""
    assert concurrency_for(4, ["smollm2-135m", "smollm2-135m"]) == 4
    err = capsys.readouterr().err
    assert err.count("warning: --concurrency 4 with the local model smollm2-135m") == 1
    for bad in (0, -3, 100_000):
        with pytest.raises(CLIError, match=f"--concurrency {bad}: must be between 1 and"):
            concurrency_for(bad, [url])


def test_help_says_the_defaults(capsys):
    for cmd in (["reer", "run", "--help"], ["r2", "run", "--help"]):
        with pytest.raises(SystemExit):
            main(cmd)
        text = " ".join(capsys.readouterr().out.split())
        assert "--concurrency N" in text and "default: 16 when every model is a server URL" in text


# ---- a SIGKILL mid-run, then a rerun ------------------------------------------------------------


def _events(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT run_id, seq, kind, payload FROM events ORDER BY run_id, seq").fetchall()
    finally:
        conn.close()


def _mid_run(db: Path, kind: str) -> bool:
    """At least two runs finished and one still under way (not between waves of items)."""
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            done, going = conn.execute("SELECT sum(status = 'finished'), sum(status != 'finished') FROM runs "
                                       "WHERE kind = ?", [kind]).fetchone()
            return (done or 0) >= 2 and (going or 0) >= 1
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return False


def kill_mid_run(proc: subprocess.Popen, db: Path, engine: str, timeout_s: float) -> float:
    """SIGKILL `proc` once some items have finished and another is under way (`_mid_run`); the
    seconds it ran. Shared by the drills (tests/drills/test_drills.py)."""
    t0 = time.monotonic()
    try:
        while not _mid_run(db, engine):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() - t0 < timeout_s, "the batch never finished two items"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - t0


@pytest.mark.parametrize("engine", ["reer", "r2"])
def test_sigkill_mid_run_then_rerun_each_item_once_nothing_lost(tmp_path, engine):
    its = items(10)
    inp, out, db = write_items(tmp_path / "in.jsonl", its), tmp_path / "out.jsonl", tmp_path / "k.db"
    if engine == "reer":
        flags, start, finish = ["--model", "scripted:delay=0.25", "--max-steps", "1"], "run_started", "run_finished"
    else:
        flags, start, finish = (["--writer", "scripted:judge=7,delay=0.15", "--judge", "scripted:judge=7,delay=0.15",
                                 "--rounds", "1", "--threshold", "9"], "r2_started", "r2_finished")
    cmd = [engine, "run", "--input", str(inp), "--out", str(out), "--db", str(db), "--concurrency", "4", *flags]
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    kill_mid_run(proc, db, engine, timeout_s=120)
    before = _events(db)
    with open_store(db) as store:
        unfinished = [r for r in store.list_runs(kind=engine) if r["status"] != "finished"]
    assert unfinished, "the kill came after every item had finished: nothing was tested"
    partial = Path(f"{out}.partial").read_text().splitlines()  # a valid prefix of the input's records
    assert [json.loads(x)["id"] for x in partial] == [i.id for i in its][:len(partial)]

    assert main(cmd) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == [i.id for i in its]
    after = set(_events(db))
    assert set(before) <= after  # nothing decided was lost or rewritten
    with open_store(db) as store:
        runs = one_run_each(store, engine, start, finish)  # nothing was done twice
        assert len(runs) == len(its) and all(r["status"] == "finished" for r in runs)
        # the rerun gave back every lease it took; one left is the killed process's, on a run it finished
        # just before the kill (a finished run is never driven again, and the lease expires by itself)
        leases = [store.run_lease(r["id"]) for r in runs]
        assert all(lease is None or f":{proc.pid}:" in lease["owner"] for lease in leases)
        for r in runs:  # every run's events numbered 1..n without a gap
            seqs = [x["seq"] for x in store.db.query("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", [r["id"]])]
            assert seqs == list(range(1, len(seqs) + 1))
