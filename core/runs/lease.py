"""The run lease: two drivers must never append to one run at once.

A driver claims the run's lease (Store.claim_run) before its first event, renews it as events
arrive and from a heartbeat thread while a long generation is under way, and releases it at the
end, on error, or when the consumer drops the generator (core.runs.driver). A lease held by a
live owner is an error (`RunBusy`, naming the run and the owner: "held by PID n"; a batch
reports such an item as held and skips it, core.runs.batch); one whose time ran out, or
whose owner was a process on this host that no longer exists (a crash), is taken over.

Time comes from `CLOCK` (a `Clock`: the wall clock, and the heartbeat's wait between beats);
tests replace it to drive the heartbeat beat by beat instead of sleeping through a short lease.

Knows owners ("host:pid:label-token") and the store's compare-and-set lease calls; does not
know what drives the run.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from core.store import LeaseHeld, Store

LEASE_TTL_S = 60.0  # a lease not renewed for this long is expired (the heartbeat renews every third of it)


class Clock:
    """Real time: `now()` in unix seconds, `wait(stop, seconds)` until `stop` is set or the time
    has passed (True when stopped), as threading.Event.wait."""

    def now(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(seconds)


CLOCK = Clock()  # the clock leases use (module docstring)


class RunBusy(LeaseHeld):
    """The run is being driven by another live owner (process or thread); `owner` is its lease
    owner string and `holder` says it in words ("PID 123", "PID 123 on host h")."""

    def __init__(self, message: str, owner: str = "?"):
        super().__init__(message)
        self.owner = owner
        self.holder = describe_owner(owner)


def lease_owner(label: str = "job") -> str:
    """A unique owner name: host, process id and a random token (two jobs in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{label}-{uuid.uuid4().hex[:8]}"


def describe_owner(owner: str) -> str:
    """A lease owner in words: "PID 123" on this host, "PID 123 on host h" elsewhere, else the string."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if not pid.isdigit():
        return owner
    return f"PID {pid}" if host == socket.gethostname() else f"PID {pid} on host {host}"


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
    left = max(0.0, held.get("until", 0.0) - CLOCK.now())
    raise RunBusy(f"run {run_id} is being driven by {holder}: held by {describe_owner(holder)} (lease for "
                  f"{left:.0f} s more); wait for it to finish or stop it there; a crashed holder's lease expires "
                  "by itself", holder)


def renew(store: Store, run_id: str, owner: str, ttl_s: float = LEASE_TTL_S) -> None:
    """Extend our lease, or raise RunBusy when another owner has taken the run over."""
    if not store.renew_run(run_id, owner, ttl_s):
        holder = (store.run_lease(run_id) or {}).get("owner", "?")
        raise RunBusy(f"run {run_id}: the lease was taken over by {describe_owner(holder)} ({holder}); "
                      "this driver stops", holder)


def release(store: Store, run_id: str, owner: str) -> None:
    """Give the lease back; a store that is closed or busy is ignored (the lease then simply expires)."""
    try:
        store.release_run(run_id, owner)
    except Exception:  # noqa: BLE001  (store closed or busy: the lease then simply expires)
        pass


def is_orphan(store: Store, run_id: str) -> bool:
    """True when nobody drives the run: no lease, an expired one, or one whose owner process is gone."""
    lease = store.run_lease(run_id)
    return lease is None or lease["expired"] or owner_is_dead(lease["owner"])


class Heartbeat:
    """Renews a lease every ttl/3 seconds (by `clock`, default CLOCK) in a daemon thread until stopped."""

    def __init__(self, store: Store, run_id: str, owner: str, ttl_s: float, clock: Clock | None = None):
        self._clock = clock or CLOCK
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, run_id, owner, ttl_s), daemon=True,
                                        name=f"lease-{run_id[:8]}")
        self._thread.start()

    def _beat(self, store, run_id, owner, ttl_s):
        while not self._clock.wait(self._stop, ttl_s / 3):
            try:
                if not store.renew_run(run_id, owner, ttl_s):
                    return
            except Exception:  # noqa: BLE001  (a busy database now and then: the next beat retries)
                continue

    def stop(self) -> None:
        self._stop.set()
