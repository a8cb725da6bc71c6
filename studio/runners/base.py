"""The base both engines' studio runners share: commands on stored runs, each run driven in a thread.

`EngineRunner` (on studio.runners.threads.ThreadedRuns: threads, `is_driving`, `wait`, `error`)
adds what REER's ReerRunner and R2's R2Runner do alike: open a run (core.runs.driver.open_run_for,
so a second tab or process asking at the same moment gets the same run), drive a stored run again
with fresh controls, `pause` and `stop` a run (a paused run, or one whose driver is gone, is
finished by a short thread), and drive every run under its lease as a "studio" owner (a run held
by another live driver is refused quietly: the refusal is the run's `error`, the store untouched).
A fatal `RunError` the engine reports is kept as the run's `error` too. Each runner says which
engine it drives, its Controls and error class, and how to get its events (`_events`).

Runs wait in line when the app drives its cap already (studio.runners.threads.RunSlots): every
thread that drives a run takes a slot, except the short one that finishes a stopped run. Stop on
a run in line takes it out and finishes it as "stopped" (as for a paused run). Each run is driven
within `core.models.lm.stop_when(controls.stopped)`, so Stop also ends a generation between
tokens and the run reads "stopped" within a moment.
While a run is driven here its engine reports TRANSIENT progress to its controls
(core.runs.progress); `progress(run_id)` is the latest report (None when the run is not driven
here: progress lives in this process's memory only, never in the store), and `asked(run_id)`
says whether a Pause or a Stop was asked and not yet reached ("pausing", "stopping"), so a page
acknowledges the click at once. A run about to be driven reports "starting" before its model
loads.
Knows no algorithm, Gradio or rendering.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterator

from core import events as ev
from core.models.lm import stop_when
from core.runs.driver import LIVE, open_run_for
from core.runs.lease import RunBusy, is_orphan, lease_owner
from studio.runners.threads import ThreadedRuns

WAITS = (ev.RunPaused, ev.JudgmentRequested)  # events after which a run waits for a person


class EngineRunner(ThreadedRuns):
    """Base of the engine runners (dataclasses with a `store` field)."""

    kind: ClassVar[str]  # runs.kind of the runs driven ("reer", "r2")
    controls_type: ClassVar[type]  # the engine's Controls (core.runs.controls.ControlsBase)
    error_type: ClassVar[type[Exception]]  # the runner's readable error

    def _events(self, run: dict, controls: Any, owner: str, **how) -> Iterator[ev.Event]:
        """The engine's job on a stored run (called in the run's thread: models load there)."""
        raise NotImplementedError

    # ---- commands ----------------------------------------------------------------------------
    def open(self, prompt_id: str, cfg: Any, model: str) -> str:
        """The unfinished run of this prompt, settings and model, or a new one (not driven yet)."""
        return open_run_for(self.store, self.kind, prompt_id, cfg.as_dict(), model)[0]

    def pause(self, run_id: str) -> bool:
        """Ask the run to pause at its next stopping point; False when it is not driven here."""
        act = self._live(run_id)
        if act is not None:
            act.controls.pause()
        return act is not None

    def stop(self, run_id: str) -> bool:
        """Stop the run for good (it finishes with reason "stopped"; what was written is kept; a
        generation under way ends between tokens). A run waiting in line leaves it; it, a paused
        run, or one whose driver is gone is finished by a short thread. False when there is
        nothing to stop here (a finished run, or one another live driver holds)."""
        with self._lock:
            if self._unqueue(run_id):
                self._again(self.store.get_run(run_id), "stop", lambda c: c.stop(), capped=False)
                return True
            act = self._live(run_id)
            if act is not None:
                act.controls.stop()
                return True
            run = self.store.get_run(run_id)
            if run["status"] != "paused" and not (run["status"] == "running" and is_orphan(self.store, run_id)):
                return False
            self._again(run, "stop", lambda c: c.stop(), capped=False)
            return True

    def progress(self, run_id: str) -> ev.Progress | None:
        """The latest transient progress of a run driven (or waiting) here; None otherwise."""
        act = self._live(run_id)
        return act.controls.progress() if act is not None and not act.queued else None

    def asked(self, run_id: str) -> str | None:
        """"stopping" / "pausing" while a Stop / Pause asked here is not yet reached; else None."""
        act = self._live(run_id)
        return act.controls.asked() if act is not None and not act.queued else None

    # ---- inside ----------------------------------------------------------------------------------
    def _stored(self, run_id: str, what: str, statuses: tuple[str, ...] = LIVE) -> dict:
        """The stored run, or the runner's error when its status does not allow `what`."""
        run = self.store.get_run(run_id)
        if run["status"] not in statuses:
            raise self.error_type(f"run {run_id[:8]} has {run['status']}: {what}")
        return run

    def _again(self, run: dict, what: str, prepare: Callable[[Any], None] = lambda c: None, capped: bool = True,
               **how) -> None:
        """Drive a stored run in a new thread with fresh controls that `prepare` sets up; a `capped`
        one waits in line while the app drives its cap of runs."""
        controls = self.controls_type()
        prepare(controls)
        owner = lease_owner("studio")
        run_id = run["id"]

        controls.report(ev.Progress(run_id, phase=f"starting: loading the model {run.get('model') or ''}".strip(),
                                    stage="loading"))  # seen at once, before the thread runs

        def drive() -> None:
            with stop_when(controls.stopped):  # a Stop also ends a generation under way
                for event in self._events(run, controls, owner, **how):
                    if isinstance(event, WAITS):  # waiting for a person: the last progress line is stale
                        controls.clear_progress()
                    if isinstance(event, ev.RunError) and event.fatal:
                        self._errors[run_id] = f"{event.where or 'model'} error: {event.message}"

        self._launch(run_id, f"{self.kind}-{what}-{run_id[:8]}", drive, controls, owner, quiet=(RunBusy,),
                     readable=(self.error_type,), capped=capped)
