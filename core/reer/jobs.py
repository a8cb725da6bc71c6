"""Running REER over stored prompts: every event saved as it happens, unfinished runs resumed.

`reer_job` is what the CLI and the studio call: it finds this prompt's unfinished run with
the same settings (or creates one), replays its history, continues the search, appends each
event to the store before passing it on, and saves the trajectory when the run finishes.
A kill at any point leaves the store consistent; calling `reer_job` again continues.

Run lease: two drivers must never append to one run at once. `reer_job` claims the run's lease
(Store.claim_run) before its first event, renews it as events arrive and from a heartbeat thread
while a long generation is under way, and releases it at the end, on error, or when the consumer
drops the generator. A lease held by a live owner is an error (`RunBusy`, naming the run and the
owner); one whose time ran out, or whose owner was a process on this host that no longer exists
(a crash), is taken over.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Iterator

from core import events as ev
from core.models.lm import LM
from core.reer.config import ReerConfig
from core.reer.search import Controls, reer_search
from core.reer.state import record_from_events
from core.store import LeaseHeld, Store, settings_key

LEASE_TTL_S = 60.0  # a lease not renewed for this long is expired (the heartbeat renews every third of it)


class RunBusy(LeaseHeld):
    """The run is being driven by another live owner (process or thread)."""


def lease_owner(label: str = "job") -> str:
    """A unique owner name: host, process id and a random token (two jobs in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{label}-{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when `owner` names a process on this host that no longer runs (it crashed or was killed)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim(store: Store, run_id: str, owner: str, ttl_s: float = LEASE_TTL_S) -> None:
    """Claim the run's lease or raise RunBusy naming the run and its holder."""
    if store.claim_run(run_id, owner, ttl_s):
        return
    held = store.run_lease(run_id) or {}
    holder = held.get("owner", "?")
    if owner_is_dead(holder) and store.claim_run(run_id, owner, ttl_s, takeover_from=holder):
        return
    left = max(0.0, held.get("until", 0.0) - time.time())
    raise RunBusy(f"run {run_id} is being driven by {holder} (lease for {left:.0f} s more); wait for it to "
                  "finish or stop it there; a crashed holder's lease expires by itself")


class _Heartbeat:
    """Renews a lease every ttl/3 seconds in a daemon thread until stopped."""

    def __init__(self, store: Store, run_id: str, owner: str, ttl_s: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, run_id, owner, ttl_s), daemon=True,
                                        name=f"lease-{run_id[:8]}")
        self._thread.start()

    def _beat(self, store, run_id, owner, ttl_s):
        while not self._stop.wait(ttl_s / 3):
            try:
                if not store.renew_run(run_id, owner, ttl_s):
                    return
            except Exception:  # noqa: BLE001  (a busy database now and then: the next beat retries)
                continue

    def stop(self) -> None:
        self._stop.set()


def open_run_for(store: Store, prompt_id: str, cfg: ReerConfig, model: str) -> tuple[str, list[ev.Event]]:
    """(run id, history): the newest unfinished REER run of this prompt and settings, or a new one."""
    key = settings_key(cfg.as_dict())
    for run in store.list_runs(kind="reer", prompt_id=prompt_id):
        if run.get("settings_key") == key and run["status"] in ("running", "paused") and run["model"] == model:
            return run["id"], store.events(run["id"])
    return store.create_run("reer", prompt_id, cfg.as_dict(), model), []


def reer_job(store: Store, lm: LM, prompt_id: str, cfg: ReerConfig = ReerConfig(),
             controls: Controls | None = None, run_id: str | None = None, owner: str | None = None,
             lease_ttl_s: float = LEASE_TTL_S) -> Iterator[ev.Event]:
    """Run or resume REER on a stored prompt; yields each event after it is saved.

    Holds the run's lease while it runs (module docstring): raises RunBusy before any event when
    another live owner drives the run. `owner` defaults to a fresh `lease_owner()`."""
    prompt = store.get_prompt(prompt_id)
    model = lm.name
    owner = owner or lease_owner()
    if run_id is None:
        run_id, _ = open_run_for(store, prompt_id, cfg, model)
    else:
        cfg = ReerConfig.from_dict(store.get_run(run_id)["settings"])
    claim(store, run_id, owner, lease_ttl_s)
    heartbeat = _Heartbeat(store, run_id, owner, lease_ttl_s)
    try:
        history = store.events(run_id)  # read under the lease: nobody else appends now
        for event in reer_search(lm, run_id, prompt_id, prompt["query"], prompt["reference"], cfg,
                                 controls=controls, history=history):
            if not store.renew_run(run_id, owner, lease_ttl_s):
                raise RunBusy(f"run {run_id}: the lease was taken over by "
                              f"{(store.run_lease(run_id) or {}).get('owner', '?')}; this driver stops")
            store.append_event(event)
            if isinstance(event, ev.RunFinished):
                save_trajectory(store, run_id)
            yield event
    finally:
        heartbeat.stop()
        try:
            store.release_run(run_id, owner)
        except Exception:  # noqa: BLE001  (store closed or busy: the lease then simply expires)
            pass


def save_trajectory(store: Store, run_id: str) -> int:
    """Write (or refresh) the trajectory row of a finished run from its events."""
    rec = record_from_events(store.events(run_id))
    return store.save_trajectory(run_id, thinking=rec["thinking"], answer=rec["reference"] or "",
                                 initial_score=rec["initial_score"], final_score=rec["final_score"],
                                 initial_ppl=rec["initial_ppl"], final_ppl=rec["final_ppl"], filters=rec["filters"],
                                 details=rec)


def run_record(store: Store, run_id: str) -> dict:
    """The output record of a stored run (see core.reer.state.record_from_events)."""
    return record_from_events(store.events(run_id))
