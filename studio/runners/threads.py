"""Background runs for the studio's runners: which runs this process drives, and their errors.

Knows: one thread per run id, started by `_launch`; whether it is still alive (`is_driving`,
`wait`); the last error of a run started here; and that a crash inside a thread must be
reported, never lost: it is logged, kept for the page, and appended to the run as a non-fatal
`RunError` event so every tab sees it and the run stays resumable. The engines' shared runner
base (studio.runners.base.EngineRunner, under studio.runners.reer and studio.runners.r2) builds
its commands on this. Does not know any algorithm, Gradio, or rendering.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from core import events as ev
from core.store import Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class Active:
    thread: threading.Thread  # the thread driving the run
    controls: Any  # the run's in-process controls (a core.runs.controls.ControlsBase)
    owner: str = ""  # the lease owner it drives as


class ThreadedRuns:
    """Base of the runners (dataclasses with a `store` field); holds the per-run threads."""

    store: Store  # where runs and events live (shared, thread-safe)

    def __post_init__(self) -> None:
        self._active: dict[str, Active] = {}  # run id -> Active, while its thread lives
        self._errors: dict[str, str] = {}  # run id -> last error message of a run driven here
        self._lock = threading.Lock()  # commands that check, then spawn, hold it

    def is_driving(self, run_id: str) -> bool:
        return self._live(run_id) is not None

    def error(self, run_id: str) -> str | None:
        """The last error of a run started here (lease refused, crash), if any."""
        return self._errors.get(run_id)

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until this process stops driving the run; True when it has."""
        act = self._active.get(run_id)
        if act is not None:
            act.thread.join(timeout)
        return self._live(run_id) is None

    def _live(self, run_id: str) -> Active | None:
        act = self._active.get(run_id)
        if act is not None and not act.thread.is_alive():
            self._active.pop(run_id, None)
            return None
        return act

    def _launch(self, run_id: str, name: str, drive: Callable[[], None], controls: Any, owner: str = "",
                quiet: tuple[type, ...] = (), readable: tuple[type, ...] = ()) -> None:
        """Run `drive()` in a new thread for this run. Exceptions of a `quiet` type are only kept
        for the page (e.g. a lease held elsewhere); any other is reported as described above,
        with its bare message for `readable` types and its class name otherwise."""
        def guarded() -> None:
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

        self._errors.pop(run_id, None)
        t = threading.Thread(target=guarded, daemon=True, name=name)
        self._active[run_id] = Active(t, controls, owner)
        t.start()
