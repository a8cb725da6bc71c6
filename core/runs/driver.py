"""Opening and driving a stored run, for any engine: every event saved as it happens, one driver at a time.

`open_run_for` finds a prompt's unfinished run of one kind, settings and model, or creates one,
in a single write transaction: two callers at once (two processes, two studio tabs) get the same
run. `drive` runs an engine's event generator on a stored run: it claims the run's lease
(core.runs.lease) before anything else, reads the run's history under it (nobody else appends
now), passes it to the engine, renews the lease on every event, appends each event to the store
before passing it on, saves the trajectory when the engine's finish event is stored, and releases
the lease at the end, on error, or when the consumer drops the generator. A kill at any point
leaves the store consistent; driving the run again continues it. A TRANSIENT event
(`core.events.Event.transient`, e.g. `Progress`) is passed on unsaved: the store keeps only
finished work.
Knows the store, the lease and `Engine`; knows nothing of a search, a loop or a model.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from core import events as ev
from core.runs.engine import Engine
from core.runs.lease import LEASE_TTL_S, Heartbeat, claim, lease_owner, release, renew
from core.store import Store, settings_key

LIVE = ("running", "paused")  # statuses of a run that can go on


def open_run_for(store: Store, kind: str, prompt_id: str, settings: dict, model: str) -> tuple[str, list[ev.Event]]:
    """(run id, history): the newest unfinished run of this kind, prompt, settings and model, or a
    new one. Atomic: the look-up and the insert share one immediate write transaction."""
    key = settings_key(settings)
    with store.transaction():
        found = next((r["id"] for r in store.list_runs(kind=kind, prompt_id=prompt_id)
                      if r.get("settings_key") == key and r["status"] in LIVE and r["model"] == model), None)
        if found is None:
            return store.create_run(kind, prompt_id, settings, model), []
    return found, store.events(found)


def drive(store: Store, engine: Engine, run_id: str, events: Callable[[Sequence[ev.Event]], Iterator[ev.Event]],
          owner: str | None = None, lease_ttl_s: float = LEASE_TTL_S) -> Iterator[ev.Event]:
    """Drive one stored run (module docstring): `events(history)` is the engine's generator,
    resumed from the run's stored events. Raises RunBusy before any event when another live owner
    drives the run. `owner` defaults to a fresh `lease_owner(engine.kind)`."""
    owner = owner or lease_owner(engine.kind)
    claim(store, run_id, owner, lease_ttl_s)
    heartbeat = Heartbeat(store, run_id, owner, lease_ttl_s)
    try:
        for event in events(store.events(run_id)):
            renew(store, run_id, owner, lease_ttl_s)
            if event.transient:  # display only: never stored
                yield event
                continue
            store.append_event(event)
            if isinstance(event, engine.finish):
                engine.save_trajectory(store, run_id)
            yield event
    finally:
        heartbeat.stop()
        release(store, run_id, owner)
