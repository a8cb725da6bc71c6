"""The run lease (migration m007_run_lease, core.runs.lease): one driver per run. The store's
claim / renew / release are compare-and-set; reer_job and r2_job (both through core.runs.driver)
claim before their first event, hold the lease while they run, refuse a run held by a live owner
with a message naming both, release at the end and on error, and take over an expired lease or
one whose owner process is dead. R2 also: two threads on one run (one gets RunBusy), and a batch
whose process is SIGKILLed mid-run, rerun, ends with each item once (tests/r2_fakes.FakeLM)."""
from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from needs import ROOT
from test_reer import DRAFT, S, ScriptedLM, rewrites

from core import events as ev
from core.data.items import Item
from core.r2.config import R2Config
from core.r2.jobs import models_name, r2_items, r2_job
from core.reer.config import ReerConfig
from core.reer.jobs import reer_job
from core.runs import lease
from core.runs.lease import Clock, RunBusy, lease_owner, owner_is_dead
from core.store import BadValue, open_store
from r2_fakes import FakeLM

CFG = ReerConfig(candidates=2, max_steps=2, draft_max_new_tokens=120, candidate_max_new_tokens=60)


def _run(store) -> tuple[str, str]:
    pid, _ = store.add_prompt(S["query"], S["reference"], id=S["id"])
    return pid, store.create_run("reer", pid, CFG.as_dict(), "scripted+tiny-random")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_claim_is_exclusive_renewable_and_released(store):
    _, run = _run(store)
    assert store.run_lease(run) is None
    assert store.claim_run(run, "a", 30)
    assert not store.claim_run(run, "b", 30)  # held by a
    assert store.claim_run(run, "a", 30)  # claiming again as the holder extends it
    lease = store.run_lease(run)
    assert lease["owner"] == "a" and not lease["expired"] and lease["until"] > time.time() + 20
    assert not store.renew_run(run, "b", 30) and store.renew_run(run, "a", 30)
    assert not store.release_run(run, "b") and store.run_lease(run)["owner"] == "a"
    assert store.release_run(run, "a") and store.run_lease(run) is None
    assert store.claim_run(run, "b", 30)


def test_expired_lease_is_taken_over_and_the_old_owner_cannot_renew(store):
    _, run = _run(store)
    assert store.claim_run(run, "crashed", 0.05)
    time.sleep(0.1)
    assert store.run_lease(run)["expired"]
    assert store.claim_run(run, "new", 30)
    assert not store.renew_run(run, "crashed", 30) and store.run_lease(run)["owner"] == "new"


def test_takeover_from_names_the_holder_it_replaces(store):
    _, run = _run(store)
    store.claim_run(run, "x", 30)
    assert not store.claim_run(run, "y", 30, takeover_from="someone-else")
    assert store.claim_run(run, "y", 30, takeover_from="x") and store.run_lease(run)["owner"] == "y"


def test_bad_lease_values_are_named(store):
    _, run = _run(store)
    with pytest.raises(BadValue, match="ttl_s positive"):
        store.claim_run(run, "a", 0)
    with pytest.raises(BadValue, match="owner must be non-empty"):
        store.claim_run(run, "", 10)


def test_owner_is_dead_only_for_a_gone_local_process():
    host = socket.gethostname()
    assert owner_is_dead(f"{host}:{_dead_pid()}:job-1")
    assert not owner_is_dead(lease_owner())  # this very process
    assert not owner_is_dead(f"other-host-{host}:1:job")  # cannot tell: never assumed dead
    assert lease_owner() != lease_owner()  # two jobs of one process are two owners


def test_job_refuses_a_run_held_by_a_live_owner(store, tiny_lm):
    pid, run = _run(store)
    holder = f"{socket.gethostname()}:1:studio-abc"  # pid 1 lives
    assert store.claim_run(run, holder, 600)
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("a a.", "b b."), ("c c.", "d d.")))
    with pytest.raises(RunBusy) as exc:
        next(reer_job(store, lm, pid, CFG, run_id=run))
    assert run in str(exc.value) and holder in str(exc.value)
    assert store.events(run) == [] and lm.calls == []  # refused before any work or event
    assert store.run_lease(run)["owner"] == holder  # the holder keeps it


def test_job_holds_the_lease_while_running_and_releases_at_the_end(store, tiny_lm):
    pid, run = _run(store)
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("a a.", "b b."), ("c c.", "d d.")))
    job = reer_job(store, lm, pid, CFG, run_id=run, owner="me:1:job")
    first = next(job)
    assert first.kind == "run_started" and store.run_lease(run)["owner"] == "me:1:job"
    with pytest.raises(RunBusy, match="me:1:job"):  # a second driver of the same run is refused
        next(reer_job(store, lm, pid, CFG, run_id=run))
    rest = list(job)
    assert rest[-1].kind == "run_finished" and store.run_lease(run) is None
    assert store.get_run(run)["status"] == "finished"


def test_job_releases_on_error_and_on_an_abandoned_generator(store, tiny_lm):
    class Broken(ScriptedLM):
        def generate(self, messages, config, prefix=""):
            raise RuntimeError("disk on fire")

    pid, run = _run(store)
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(reer_job(store, Broken(tiny_lm, []), pid, CFG, run_id=run))
    assert store.run_lease(run) is None
    job = reer_job(store, ScriptedLM(tiny_lm, [[DRAFT]]), pid, CFG, run_id=run)
    next(job)
    assert store.run_lease(run) is not None
    job.close()  # the consumer drops it (a closed tab, a stopped thread)
    assert store.run_lease(run) is None


def test_a_dead_holders_lease_is_taken_over_and_the_run_finishes(store, tiny_lm):
    pid, run = _run(store)
    dead = f"{socket.gethostname()}:{_dead_pid()}:cli-1"
    assert store.claim_run(run, dead, 600)  # a crashed process left a long lease behind
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("a a.", "b b."), ("c c.", "d d.")))
    events = list(reer_job(store, lm, pid, CFG, run_id=run))
    assert isinstance(events[-1], ev.ReerFinished) and store.run_lease(run) is None


class StepClock(Clock):
    """A lease clock the test drives: the heartbeat's wait returns only when the test calls `beat()`."""

    def __init__(self):
        self.cond = threading.Condition()
        self.permits, self.waiting, self.asked = 0, 0, []

    def wait(self, stop, seconds):
        with self.cond:
            self.asked.append(seconds)
            self.waiting += 1
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.permits or stop.is_set())
            self.waiting -= 1
            if stop.is_set():
                return True
            self.permits -= 1
            return False

    def beat(self):
        """Let one wait end, then block until the heartbeat has renewed and waits again."""
        with self.cond:
            n = len(self.asked)
            self.permits += 1
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: len(self.asked) > n, 30), "the heartbeat did not come back"


def test_heartbeat_renews_during_a_long_silence(store, tiny_lm, monkeypatch):
    """A generation that sends no event for as long as the test likes (it waits on `silence`): the
    heartbeat, beat by beat on a clock the test drives, renews the lease each time."""
    clock = StepClock()
    monkeypatch.setattr(lease, "CLOCK", clock)
    silence = threading.Event()

    class Silent(ScriptedLM):
        def generate(self, messages, config, prefix=""):
            assert silence.wait(60), "the test never ended the silence"
            return super().generate(messages, config, prefix)

    pid, run = _run(store)
    renewed = []
    real_renew = store.renew_run
    monkeypatch.setattr(store, "renew_run", lambda *a: renewed.append(threading.current_thread().name)
                        or real_renew(*a))
    lm = Silent(tiny_lm, [[DRAFT]] + rewrites(("a a.", "b b."), ("c c.", "d d.")))
    job = reer_job(store, lm, pid, CFG, run_id=run, owner="me:1:slow", lease_ttl_s=30)
    next(job)  # run_started; next comes the silent draft
    drafted = []
    t = threading.Thread(target=lambda: drafted.append(next(job)))
    t.start()
    seen = []
    try:
        for _ in range(3):
            before = store.run_lease(run)["until"]
            clock.beat()
            seen.append(store.run_lease(run))
            assert seen[-1]["until"] > before  # renewed by this beat
        assert not drafted and all(s["owner"] == "me:1:slow" and not s["expired"] for s in seen)
        beats = [name for name in renewed if name != "MainThread"]  # the driver renews on each event too
        assert beats == [f"lease-{run[:8]}"] * 3 and clock.asked[:4] == [10.0] * 4  # every ttl/3, by the heartbeat
    finally:
        silence.set()
    t.join(60)
    assert drafted and drafted[0].kind == "initial_draft"
    job.close()
    assert store.run_lease(run) is None


# ---- R2 holds the same lease -------------------------------------------------------------------------

R2_CFG = R2Config(max_rounds=2, threshold=9)
R2_ITEMS = [Item(id="keeper", query="Write a short story about a lighthouse keeper who finds a letter.",
                 reference="a reference story", rubric=("Is the story vivid?", "Does the ending land?")),
            Item(id="night", query="Write a short story about a lighthouse keeper's last night on duty.",
                 reference="another reference story")]


def _r2_run(store) -> tuple[str, str]:
    pid, _ = store.add_prompt(R2_ITEMS[0].query, R2_ITEMS[0].reference, id="p1", rubric=list(R2_ITEMS[0].rubric))
    return pid, store.create_run("r2", pid, R2_CFG.as_dict(), models_name("fake", "fake"))


class GatedLM(FakeLM):
    """A FakeLM whose first call waits for `gate`: a driver caught in the middle of a generation."""

    def __init__(self, gate: threading.Event, **kw):
        super().__init__(**kw)
        self.gate, self.entered = gate, threading.Event()

    def generate(self, messages, config, prefix=""):
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().generate(messages, config, prefix)


def test_r2_job_refuses_a_run_held_by_a_live_owner(store):
    pid, run = _r2_run(store)
    holder = f"{socket.gethostname()}:1:studio-abc"  # pid 1 lives
    assert store.claim_run(run, holder, 600)
    lm = FakeLM()
    with pytest.raises(RunBusy) as exc:
        next(r2_job(store, lm, lm, pid, R2_CFG, run_id=run))
    assert run in str(exc.value) and holder in str(exc.value)
    assert store.events(run) == [] and lm.calls == []  # refused before any work or event
    assert store.run_lease(run)["owner"] == holder


def test_r2_job_holds_the_lease_while_running_and_releases_at_the_end_or_on_error(store):
    pid, run = _r2_run(store)
    job = r2_job(store, FakeLM(), FakeLM(), pid, R2_CFG, run_id=run, owner="me:1:r2")
    assert next(job).kind == "r2_started" and store.run_lease(run)["owner"] == "me:1:r2"
    with pytest.raises(RunBusy, match="me:1:r2"):  # a second driver of the same run is refused
        next(r2_job(store, FakeLM(), FakeLM(), pid, R2_CFG, run_id=run))
    rest = list(job)
    assert rest[-1].kind == "r2_finished" and store.run_lease(run) is None
    assert store.get_run(run)["status"] == "finished" and store.trajectory_for_run(run) is not None

    _, other = _r2_run(store)  # the same prompt, a second run
    with pytest.raises(KeyboardInterrupt):
        list(r2_job(store, FakeLM(fail_on=("revise", 1)), FakeLM(), pid, R2_CFG, run_id=other))
    assert store.run_lease(other) is None
    job = r2_job(store, FakeLM(), FakeLM(), pid, R2_CFG, run_id=other)
    next(job)
    assert store.run_lease(other) is not None
    job.close()  # the consumer drops it (a closed tab, a stopped thread)
    assert store.run_lease(other) is None


def test_two_threads_resuming_one_r2_run_one_gets_run_busy(tmp_path):
    db = tmp_path / "two.db"
    with open_store(db) as store:
        pid, run = _r2_run(store)
    gate, outcome = threading.Event(), {}
    first_lm = GatedLM(gate)

    def drive(name, lm):
        with open_store(db) as store:  # each thread its own connection, as two processes have
            try:
                outcome[name] = [e.kind for e in r2_job(store, lm, lm, pid, R2_CFG, run_id=run)]
            except RunBusy as exc:
                outcome[name] = exc

    first = threading.Thread(target=drive, args=("first", first_lm))
    first.start()
    assert first_lm.entered.wait(60)  # the first driver holds the lease and is inside a generation
    second_lm = FakeLM()
    drive("second", second_lm)
    gate.set()
    first.join(60)
    assert isinstance(outcome["second"], RunBusy) and run in str(outcome["second"]) and second_lm.calls == []
    assert outcome["first"][0] == "r2_started" and outcome["first"][-1] == "r2_finished"
    with open_store(db) as store:
        kinds = [e.kind for e in store.events(run)]
        assert kinds.count("r2_started") == 1 and kinds == outcome["first"]  # the refused driver wrote nothing
        assert store.run_lease(run) is None


KILLED_BATCH = """
import json, sys, time
sys.path.insert(0, "tests")  # cwd is the repository: the tests' own fakes (r2_fakes) import by name
from core.item import Item
from core.r2.config import R2Config
from core.r2.jobs import r2_items
from core.store import open_store
from r2_fakes import FakeLM, kind_of

items = [Item(**{**d, "rubric": tuple(d["rubric"])}) for d in json.loads(sys.argv[2])]

revisions = []

class HangsAtTheThirdRevision(FakeLM):  # the second item's first revision: killed there
    def generate(self, messages, config, prefix=""):
        if kind_of(messages) == "revise":
            revisions.append(1)
            if len(revisions) == 3:
                time.sleep(600)
        return super().generate(messages, config, prefix)

lm = HangsAtTheThirdRevision()
for o in r2_items(open_store(sys.argv[1]), items, R2Config(max_rounds=2, threshold=9), "fake", "fake",
                  lambda: (lm, lm)):
    print(o.item.id, o.status, flush=True)
"""


def test_a_killed_r2_batch_resumes_with_each_item_once(tmp_path):
    db = tmp_path / "killed.db"
    items = json.dumps([dataclasses.asdict(i) for i in R2_ITEMS])
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BATCH, str(db), items], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["keeper", "done"], proc.stderr.read()  # the first item finished
        deadline = time.monotonic() + 120
        with open_store(db) as store:
            reflected = lambda: store.db.execute(  # noqa: E731
                "SELECT count(*) FROM events WHERE kind = 'r2_reflected'").fetchone()[0]
            while reflected() < 3:  # item 1 reflected twice; item 2 once, then it hangs in its revision
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the batch never reached the second item's revision"
                time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    with open_store(db) as store:
        night = next(r for r in store.list_runs(kind="r2") if r["prompt_id"] == "night")
        assert night["status"] == "running" and f":{proc.pid}:" in store.run_lease(night["id"])["owner"]
        writer = FakeLM()
        out = list(r2_items(store, R2_ITEMS, R2_CFG, "fake", "fake", lambda: (writer, writer)))
        assert [(o.item.id, o.status) for o in out] == [("keeper", "cached"), ("night", "done")]
        assert writer.calls[0][0] == "revise"  # the dead process's lease taken over; only the lost step redone
        runs = store.list_runs(kind="r2")
        assert len(runs) == 2 and all(r["status"] == "finished" and store.run_lease(r["id"]) is None for r in runs)
        for r in runs:
            rows = list(store.db.query("SELECT seq, kind FROM events WHERE run_id = ? ORDER BY seq", [r["id"]]))
            assert [x["seq"] for x in rows] == list(range(1, len(rows) + 1))
            kinds = [x["kind"] for x in rows]
            assert kinds.count("r2_started") == 1 and kinds.count("r2_finished") == 1
            assert kinds.count("r2_reflected") == kinds.count("r2_revised") == kinds.count("r2_round_finished")

    with open_store(tmp_path / "whole.db") as whole_store:  # the same batch, never interrupted
        lm = FakeLM()
        whole = list(r2_items(whole_store, R2_ITEMS, R2_CFG, "fake", "fake", lambda: (lm, lm)))
    strip = lambda r: {k: v for k, v in r.items() if k not in ("run_id", "seconds")}  # noqa: E731
    assert [strip(o.record) for o in out] == [strip(o.record) for o in whole]
