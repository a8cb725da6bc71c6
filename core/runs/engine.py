"""What the shared machinery needs to know of an engine, and what it derives from that.

An `Engine` names its run kind, the event that finishes a run, how a run's events become its
output record (the engine's `state.record_from_events`) and how a record becomes a trajectory row
(the engine's `state.trajectory_fields`). From those, `run_record` and `save_trajectory` work for
any engine. `Replayed` is the base of an engine's live state: folded from events, one at a time.
Knows the store and the event types; knows no engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from core import events as ev
from core.store import Store


@dataclass(frozen=True)
class Engine:
    kind: str  # runs.kind of the engine's runs ("reer", "r2")
    finish: type[ev.Event]  # the event that ends a run: its trajectory is saved once this is stored
    record: Callable[[Sequence[ev.Event]], dict]  # a run's events -> its output record (the JSON line)
    trajectory: Callable[[dict], dict]  # a record -> Store.save_trajectory's fields (thinking, answer, scores...)


def run_record(store: Store, run_id: str, engine: Engine) -> dict:
    """The output record of a stored run, rebuilt from its events."""
    return engine.record(store.events(run_id))


def save_trajectory(store: Store, run_id: str, engine: Engine) -> int:
    """Write (or refresh) the trajectory row of a finished run; `details` is the whole record."""
    rec = run_record(store, run_id, engine)
    return store.save_trajectory(run_id, details=rec, **engine.trajectory(rec))


class Replayed:
    """Base of an engine's run state: `apply(event)` folds one event in; `from_events` replays a run."""

    @classmethod
    def from_events(cls, history: Sequence[ev.Event]):
        state = cls()
        for event in history:
            state.apply(event)
        return state

    def apply(self, event: ev.Event) -> None:
        raise NotImplementedError
