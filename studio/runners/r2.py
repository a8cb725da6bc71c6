"""R2Runner: drives R2 writer-judge runs in background threads for the studio (one per app).

What it knows: which R2 runs this process drives now (a thread and a `core.r2.loop.Controls`
each), how to start, resume and stop them through `core.r2.jobs.r2_job` (which saves every
event), how to store a person's judgment (`core.r2.jobs.submit_judgment`) and continue the
run, the judge models it has loaded (by spec, lazily, once each), and the last error of each
run it started. What it does not know: Gradio or rendering. Pages never draw from here: they
poll the store, so a reload, a second tab or another process sees the same run, including one
that waits for a person's judgment (its thread has ended; the judgment restarts it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from core import events as ev
from core.models.lm import LM
from core.models.shelf import default_shelf
from core.r2.config import R2Config
from core.r2.jobs import (
    models_name,
    open_run_for,
    r2_job,
    submit_judgment,
    submit_reflection,
)
from core.r2.judge import Judgment
from core.r2.loop import Controls
from core.store import Store
from studio.runners.threads import ThreadedRuns


class R2RunnerError(Exception):
    """A command the runner cannot carry out; the message says why and what to do."""


@dataclass
class R2Runner(ThreadedRuns):
    store: Store  # where runs and events live (shared, thread-safe)
    get_lm: Callable[[], LM]  # the app's model: the writer, and the judge unless another spec is given
    model_name: str = ""  # the app's model spec (what an empty judge spec means)
    load: Callable[[str], LM] = field(default_factory=lambda: default_shelf().get)  # loads a judge spec other than the app's model
    _judges: dict = field(default_factory=dict)  # judge spec -> loaded LM (loaded on first use)

    # ---- models ----------------------------------------------------------------------------------
    def judge_spec(self, spec: str | None) -> str:
        """The judge's spec as recorded: empty means the app's model."""
        spec = (spec or "").strip()
        return spec or self.model_name

    def judge_lm(self, spec: str | None) -> LM:
        """The judge model for `spec` (the app's model when empty or equal to it), loaded once.
        Raises R2RunnerError with a readable message when it cannot be loaded."""
        spec = self.judge_spec(spec)
        if spec == self.model_name:
            return self.get_lm()
        with self._lock:
            if spec not in self._judges:
                try:
                    self._judges[spec] = self.load(spec)
                except Exception as exc:  # noqa: BLE001  (any loader failure is the user's to read)
                    raise R2RunnerError(f"judge model {spec!r} could not be loaded: {type(exc).__name__}: {exc}; "
                                        "leave the judge field empty to use the app's model") from exc
            return self._judges[spec]

    # ---- commands --------------------------------------------------------------------------------
    def start(self, prompt_id: str, cfg: R2Config, judge: str | None = None) -> str:
        """Start (or resume: same prompt, settings and models, unfinished) a run; returns its id at
        once. The judge model is loaded in the run's thread (an error lands in the store)."""
        judge_spec = self.judge_spec(judge) if cfg.judge_mode != "human" else ""
        run_id, _ = open_run_for(self.store, prompt_id, cfg, models_name(self.model_name, judge_spec))
        self.resume(run_id, judge_spec)
        return run_id

    def resume(self, run_id: str, judge: str | None = None) -> None:
        """Drive a stored, unfinished run again (one waiting for a judgment that has it now, or
        one whose driver died). `judge`: the judge spec (default: the one the run recorded)."""
        with self._lock:
            if self._live(run_id) is not None:
                return
            run = self.store.get_run(run_id)
            if run["status"] not in ("running", "paused"):
                raise R2RunnerError(f"run {run_id[:8]} has {run['status']}: start a new run instead")
            self._spawn(run_id, run["prompt_id"], Controls(), self._recorded_judge(run, judge))

    def stop(self, run_id: str) -> bool:
        """End the run (reason "stopped"; what was written is kept). A run waiting for a judgment
        is finished by a short thread. False when there is nothing to stop."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:
                act.controls.stop()
                return True
            run = self.store.get_run(run_id)
            if run["status"] not in ("running", "paused"):
                return False
            controls = Controls()
            controls.stop()
            self._spawn(run_id, run["prompt_id"], controls, self._recorded_judge(run, None))
            return True

    def judge(self, run_id: str, judgment: Judgment) -> int:
        """Store a person's judgment (or the accepted proposal) for the run's open request, then
        continue the run; returns the event's seq. Raises core.r2.jobs.NoPendingJudgment or
        core.r2.judge.BadJudgment with a message naming the fix."""
        if self.is_driving(run_id):
            raise R2RunnerError(f"run {run_id[:8]} is still writing; wait until it asks for a judgment")
        seq = submit_judgment(self.store, run_id, judgment)
        self.resume(run_id)
        return seq

    def reflect(self, run_id: str, text: str) -> int:
        """Store a person's edit (or approval) of the reflection the run waits on, then continue
        the run (it revises with that text); returns the event's seq."""
        if self.is_driving(run_id):
            raise R2RunnerError(f"run {run_id[:8]} is still writing; wait until it shows its reflection")
        seq = submit_reflection(self.store, run_id, text)
        self.resume(run_id)
        return seq

    # ---- inside ----------------------------------------------------------------------------------
    def _recorded_judge(self, run: dict, judge: str | None) -> str:
        if judge is not None:
            return judge
        model = run.get("model") or ""
        return model.split(";judge=", 1)[1] if ";judge=" in model else ""

    def _spawn(self, run_id: str, prompt_id: str, controls: Controls, judge_spec: str) -> None:
        def drive() -> None:
            writer = self.get_lm()
            cfg = R2Config.from_dict(self.store.get_run(run_id)["settings"])
            judge = None if cfg.judge_mode == "human" or not judge_spec else self.judge_lm(judge_spec)
            for event in r2_job(self.store, writer, judge, prompt_id, controls=controls, run_id=run_id):
                if isinstance(event, ev.RunError):
                    self._errors[run_id] = f"{event.where or 'model'} error: {event.message}"

        self._launch(run_id, f"r2-{run_id[:8]}", drive, controls, readable=(R2RunnerError,))
