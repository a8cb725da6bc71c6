"""Background runs for the studio's runners: which runs this process drives, and their errors.

Knows: one thread per run id, started by `_launch`; whether it is still alive (`is_driving`,
`wait`); the last error of a run started here; and that a crash inside a thread must be
reported, never lost: it is logged, kept for the page, and appended to the run as a non-fatal
`RunError` event so every tab sees it and the run stays resumable. The engines' shared runner
base (studio.runners.base.EngineRunner, under studio.runners.reer and studio.runners.r2) builds
its commands on this. Does not know any algorithm, Gradio, or rendering.

The cap on runs driven at once (`RunSlots`, shared by an app's runners, $PALIMPSEST_MAX_RUNS,
default 1): a capped launch over the cap waits in a first-come line (`is_queued`,
`queue_place`) and starts when a slot frees; `_unqueue` takes it out of the line. The line lives
in memory only: its runs are stored runs (status running, or paused) that nothing drives yet,
so an app that dies loses none of them, and a restarted app starts none by itself.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from core import events as ev
from core.models.env import number_from_env
from core.store import Store, StoreError

log = logging.getLogger(__name__)

MAX_RUNS_ENV = "PALIMPSEST_MAX_RUNS"
DEFAULT_MAX_RUNS = 1  # on a CPU two runs only share its cores (the local model computes one forward at a time)


def max_runs_from_env() -> int:
    """$PALIMPSEST_MAX_RUNS (a whole number, 1 or more), else DEFAULT_MAX_RUNS; LMError names a bad value."""
    return int(number_from_env(MAX_RUNS_ENV, DEFAULT_MAX_RUNS, int, 1, unit="runs driven at once", example="2"))


class RunSlots:
    """At most `limit` runs driven at once by the runners that share this (one app); the others
    wait in line, first come first served. Thread-safe."""

    def __init__(self, limit: int | None = None):
        self.limit = max_runs_from_env() if limit is None else int(limit)  # runs driven at once
        if self.limit < 1:
            raise ValueError(f"RunSlots(limit={limit!r}): allow at least 1 run at a time")
        self._lock = threading.Lock()
        self._holders: list[str] = []  # run ids driven now, oldest first
        self._line: deque[tuple[str, Callable[[], None]]] = deque()  # waiting run ids, and how to start each

    def enter(self, run_id: str, start: Callable[[], None]) -> bool:
        """Call `start()` now when a slot is free (True), else put the run at the end of the line (False)."""
        with self._lock:
            free = len(self._holders) < self.limit and not self._line
            if free:
                self._holders.append(run_id)
            else:
                self._line.append((run_id, start))
        if free:
            start()
        return free

    def leave(self, run_id: str) -> None:
        """The run no longer needs its slot: give it to the first run in line (started here)."""
        with self._lock:
            if run_id in self._holders:
                self._holders.remove(run_id)
            nxt = self._line.popleft() if self._line and len(self._holders) < self.limit else None
            if nxt is not None:
                self._holders.append(nxt[0])
        if nxt is not None:
            nxt[1]()

    def cancel(self, run_id: str) -> bool:
        """Take a waiting run out of the line; False when it is not in line (started, or never queued)."""
        with self._lock:
            for i, (rid, _) in enumerate(self._line):
                if rid == run_id:
                    del self._line[i]
                    return True
        return False

    def place(self, run_id: str) -> tuple[int, list[str]] | None:
        """(its place in line, 1 for next; the run ids driven now) for a waiting run, else None."""
        with self._lock:
            ids = [rid for rid, _ in self._line]
            return (ids.index(run_id) + 1, list(self._holders)) if run_id in ids else None

    def driven(self) -> list[str]:
        """The run ids holding a slot now, oldest first."""
        with self._lock:
            return list(self._holders)


@dataclass
class Active:
    thread: threading.Thread  # the thread driving the run
    controls: Any  # the run's in-process controls (a core.runs.controls.ControlsBase)
    owner: str = ""  # the lease owner it drives as
    queued: bool = False  # waiting in line for a slot (RunSlots): the thread has not started
    done: threading.Event = field(default_factory=threading.Event)  # set when the thread ended or left the line


class ThreadedRuns:
    """Base of the runners (dataclasses with a `store` field); holds the per-run threads."""

    store: Store  # where runs and events live (shared, thread-safe)
    slots: RunSlots | None  # the app's cap on runs driven at once (None: a cap of this runner's own)

    def __post_init__(self) -> None:
        self._active: dict[str, Active] = {}  # run id -> Active, while its thread lives or it waits in line
        self._errors: dict[str, str] = {}  # run id -> last error message of a run driven here
        self._lock = threading.Lock()  # commands that check, then spawn, hold it
        if getattr(self, "slots", None) is None:
            self.slots = RunSlots()

    def is_driving(self, run_id: str) -> bool:
        """True while a thread of this process drives the run (not while it waits in line)."""
        act = self._live(run_id)
        return act is not None and not act.queued

    def is_queued(self, run_id: str) -> bool:
        """True while the run waits in line for a slot (`queue_place` says where)."""
        act = self._live(run_id)
        return act is not None and act.queued

    def queue_place(self, run_id: str) -> tuple[int, list[str]] | None:
        """(place in line, 1 for next; the run ids driven now) while the run waits, else None."""
        return self.slots.place(run_id) if self.is_queued(run_id) else None

    def error(self, run_id: str) -> str | None:
        """The last error of a run started here (lease refused, crash), if any."""
        return self._errors.get(run_id)

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until this process stops driving the run (a queued run: until it has been driven,
        or taken out of the line); True when it has."""
        act = self._active.get(run_id)
        if act is not None and act.done.wait(timeout) and act.thread.ident is not None:
            act.thread.join()  # past `done`, only its slot is being handed on
        return self._live(run_id) is None

    def _live(self, run_id: str) -> Active | None:
        act = self._active.get(run_id)
        if act is not None and not act.queued and not act.thread.is_alive():
            self._active.pop(run_id, None)
            return None
        return act

    def _unqueue(self, run_id: str) -> bool:
        """Take a waiting run out of the line (it is then not driven here); False when it is not waiting."""
        act = self._active.get(run_id)
        if act is None or not act.queued or not self.slots.cancel(run_id):
            return False
        self._active.pop(run_id, None)
        act.done.set()
        return True

    def _launch(self, run_id: str, name: str, drive: Callable[[], None], controls: Any, owner: str = "",
                quiet: tuple[type, ...] = (), readable: tuple[type, ...] = (), capped: bool = False) -> None:
        """Run `drive()` in a new thread for this run; a `capped` one takes a slot of `slots` and
        waits in line while none is free. Exceptions of a `quiet` type are only kept for the page
        (e.g. a lease held elsewhere); any other is reported as described above, with its bare
        message for `readable` types and its class name otherwise."""
        def guarded() -> None:
            try:
                report()
            finally:
                act.done.set()
                if capped:
                    self.slots.leave(run_id)

        def report() -> None:
            try:
                drive()
            except quiet as exc:
                self._errors[run_id] = str(exc)
            except Exception as exc:  # noqa: BLE001  (the thread must report, never die silently)
                log.exception("%s failed", name)
                msg = str(exc) if isinstance(exc, readable) else f"{type(exc).__name__}: {exc}"
                self._errors[run_id] = msg
                try:
                    self.store.append_event(ev.RunError(run_id, message=msg, where="studio", fatal=False))
                except StoreError:
                    pass

        def start() -> None:
            act.thread.start()
            act.queued = False  # after start: `_live` never sees a queued=False thread not yet alive

        self._errors.pop(run_id, None)
        act = Active(threading.Thread(target=guarded, daemon=True, name=name), controls, owner, queued=capped)
        self._active[run_id] = act
        if capped:
            self.slots.enter(run_id, start)
        else:
            start()
