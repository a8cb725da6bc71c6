"""What the shared machinery needs to know of an engine, and what it derives from that.

An `Engine` names its run kind, the event that finishes a run, how a run's events become its
output record (the engine's `state.record_from_events`) and how a record becomes a trajectory row
(the engine's `state.trajectory_fields`). From those, its `run_record` and `save_trajectory` work
on any stored run of that engine. `consume` is the body of each engine's non-streaming twin
(`run_reer`, `run_r2`). `Replayed` is the base of an engine's live state: folded from events, one at a time.
Knows the store and the event types; knows no engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from core import events as ev
from core.store import Store


@dataclass(frozen=True)
class Engine:
    kind: str  # runs.kind of the engine's runs ("reer", "r2")
    finish: type[ev.Event]  # the event that ends a run: its trajectory is saved once this is stored
    record: Callable[[Sequence[ev.Event]], dict]  # a run's events -> its output record (the JSON line)
    trajectory: Callable[[dict], dict]  # a record -> Store.save_trajectory's fields (thinking, answer, scores...)

    def run_record(self, store: Store, run_id: str) -> dict:
        """The output record of a stored run, rebuilt from its events."""
        return self.record(store.events(run_id))

    def save_trajectory(self, store: Store, run_id: str) -> int:
        """Write (or refresh) the trajectory row of a finished run; `details` is the whole record."""
        rec = self.run_record(store, run_id)
        return store.save_trajectory(run_id, details=rec, **self.trajectory(rec))


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


def consume(events: Iterable[ev.Event], history: Sequence[ev.Event], record: Callable[[Sequence[ev.Event]], dict],
            on_event: Callable[[ev.Event], None] | None = None) -> dict:
    """A non-streaming twin's body: run an engine's generator (resumed from `history`) to its end,
    showing each new event to `on_event`, and return the record of the whole run."""
    seen = list(history)
    for event in events:
        if on_event:
            on_event(event)
        seen.append(event)
    return record(seen)
