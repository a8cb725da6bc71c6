"""The run lease (migration m007_run_lease): one driver per run. The store's claim / renew /
release are compare-and-set; reer_job claims before its first event, holds the lease while it
runs, refuses a run held by a live owner with a message naming both, releases at the end and on
error, and takes over an expired lease or one whose owner process is dead."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from test_reer import DRAFT, S, ScriptedLM, rewrites

from core import events as ev
from core.reer.config import ReerConfig
from core.reer.jobs import reer_job
from core.runs.lease import RunBusy, lease_owner, owner_is_dead
from core.store import BadValue

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
    assert isinstance(events[-1], ev.RunFinished) and store.run_lease(run) is None


def test_heartbeat_renews_during_a_long_silence(store, tiny_lm):
    class Slow(ScriptedLM):
        def generate(self, messages, config, prefix=""):
            time.sleep(0.8)  # a long generation: no event for longer than the lease lasts
            return super().generate(messages, config, prefix)

    pid, run = _run(store)
    lm = Slow(tiny_lm, [[DRAFT]] + rewrites(("a a.", "b b."), ("c c.", "d d.")))
    job = reer_job(store, lm, pid, CFG, run_id=run, owner="me:1:slow", lease_ttl_s=0.3)
    next(job)  # run_started; next comes the slow draft
    seen = []

    def watch():
        for _ in range(8):
            time.sleep(0.1)
            seen.append(store.run_lease(run))

    import threading
    t = threading.Thread(target=watch)
    t.start()
    next(job)  # the draft, after 0.8 s with no event
    t.join()
    assert all(s is not None and s["owner"] == "me:1:slow" and not s["expired"] for s in seen)
    job.close()
