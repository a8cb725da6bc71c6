"""JobRunner: drives REER runs in background threads for the studio, one runner per app.

What it knows: which runs this process is driving now (a thread and a `core.reer.search.Controls`
each), how to start, pause, step, stop, edit, force, skip and resume them through `core.reer.jobs.reer_job`
(which saves every event and holds the run's lease), and the last error of each run it
started. What it does not know: Gradio or rendering. Pages never read state from here to draw
a run: they poll the store, so a reload, a second tab or another process shows the same thing;
the runner only answers "is this process driving that run now?".

A paused run's thread has ended (the search yields `RunPaused` and returns); Run or Step start
a new thread that resumes it from its stored events. An edit on a paused run is applied by a
short thread that rescores it and pauses again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.models.lm import LM
from core.reer.config import ReerConfig
from core.reer.jobs import RunBusy, lease_owner, open_run_for, reer_job
from core.reer.search import Controls
from core.store import Store
from core.models.shelf import ModelChoice
from studio.runners.threads import ThreadedRuns


class RunnerError(Exception):
    """A command the runner cannot carry out; the message says why and what to do."""


@dataclass
class JobRunner(ThreadedRuns):
    store: Store  # where runs, events and leases live (shared, thread-safe)
    get_lm: Callable[[], LM]  # the app's model, loaded on first use
    models: ModelChoice | None = None  # other models by spec (a run's recorded model); None: get_lm only

    # ---- commands ----------------------------------------------------------------------------
    def start(self, prompt_id: str, cfg: ReerConfig, model: str, steps: int | None = None) -> str:
        """Start (or resume: same prompt, settings and model, unfinished) a run; returns its id
        at once, before the model is loaded. `steps`: pause after that many expansions."""
        run_id, _ = open_run_for(self.store, prompt_id, cfg, model)
        self.resume(run_id, steps)
        return run_id

    def resume(self, run_id: str, steps: int | None = None) -> None:
        """Drive a stored, unfinished run again (a paused one, or one whose driver died)."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:  # already driven here: just change its pace
                act.controls.resume() if steps is None else act.controls.step(steps)
                return
            run = self.store.get_run(run_id)
            if run["status"] not in ("running", "paused"):
                raise RunnerError(f"run {run_id[:8]} has {run['status']}: start a new run instead")
            controls = Controls()
            if steps is not None:
                controls.step(steps)
            self._spawn(run_id, run["prompt_id"], controls)

    def pause(self, run_id: str) -> bool:
        """Ask the run to pause after the current event; False when it is not driven here."""
        act = self._live(run_id)
        if act is not None:
            act.controls.pause()
        return act is not None

    def stop(self, run_id: str) -> bool:
        """Stop the run for good (it finishes with reason "stopped"). A paused run is finished
        by a short thread. False when there is nothing to stop."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:
                act.controls.stop()
                return True
            run = self.store.get_run(run_id)
            if run["status"] != "paused" and not (run["status"] == "running" and self._orphan(run_id)):
                return False
            controls = Controls()
            controls.stop()
            self._spawn(run_id, run["prompt_id"], controls)
            return True

    def edit(self, run_id: str, segment: int, text: str) -> None:
        """Replace segment `segment` (0-based) by a person's text; the search rescores it at once.
        On a paused run the edit is applied by a short thread that pauses again."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:
                act.controls.edit(segment, text)
                return
            run = self.store.get_run(run_id)
            if run["status"] != "paused":
                raise RunnerError(f"run {run_id[:8]} has {run['status']}: edits apply to a running or paused run")
            controls = Controls()
            controls.edit(segment, text)
            controls.pause()
            self._spawn(run_id, run["prompt_id"], controls)

    def force(self, run_id: str, candidate: int) -> None:
        """Accept candidate `candidate` (0-based) of the step awaiting its decision, whatever its score."""
        self._decide(run_id, "force", lambda c: c.force(candidate))

    def skip(self, run_id: str) -> None:
        """Keep the segment under work (or the next one) as it is and move on."""
        self._decide(run_id, "skip", lambda c: c.skip())

    def _decide(self, run_id: str, what: str, queue: Callable[[Controls], None]) -> None:
        """A person's decision: queued on a driven run (taken at its next decision); a paused run
        is driven for that one step by a short thread, then pauses again."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:
                queue(act.controls)
                return
            run = self.store.get_run(run_id)
            if run["status"] != "paused":
                raise RunnerError(f"run {run_id[:8]} has {run['status']}: {what} applies to a running or paused run")
            controls = Controls()
            queue(controls)
            controls.step(1)
            self._spawn(run_id, run["prompt_id"], controls)

    # ---- inside ----------------------------------------------------------------------------------
    def _orphan(self, run_id: str) -> bool:
        lease = self.store.run_lease(run_id)
        return lease is None or lease["expired"]

    def lm_for(self, spec: str | None) -> LM:
        """The model a run recorded (loaded once); RunnerError with the fix when it cannot load."""
        if self.models is None:
            return self.get_lm()
        try:
            return self.models.lm(spec)
        except Exception as exc:  # noqa: BLE001  (any loader failure is the user's to read)
            raise RunnerError(f"model {spec!r} could not be loaded: {exc}; leave the model field empty to use "
                              f"the app's model ({self.models.default})") from exc

    def _spawn(self, run_id: str, prompt_id: str, controls: Controls) -> None:
        owner = lease_owner("studio")
        spec = self.store.get_run(run_id).get("model")

        def drive() -> None:
            lm = self.lm_for(spec)
            for _ in reer_job(self.store, lm, prompt_id, controls=controls, run_id=run_id, owner=owner):
                pass

        self._launch(run_id, f"reer-{run_id[:8]}", drive, controls, owner, quiet=(RunBusy,), readable=(RunnerError,))
