"""R2Runner: drives R2 writer-judge runs in background threads for the studio (one per app).

What it knows: R2's commands beyond the shared ones (studio.runners.base.EngineRunner: open,
pause, stop, threads, leases, errors): start and resume a run with a judge model, store a
person's judgment (`core.r2.jobs.submit_judgment`) or reflection and continue the run, each
through a `core.r2.loop.Controls` and `core.r2.jobs.r2_job` (which saves every event and holds
the run's lease); and the judge models it has loaded (by spec, lazily, once each). What it does
not know: Gradio or rendering. Pages never draw from here: they poll the store, so a reload, a
second tab or another process sees the same run, including one that waits for a person's
judgment (its thread has ended; the judgment restarts it). The mirror of studio.runners.reer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

from core import events as ev
from core.models.lm import LM
from core.models.shelf import default_shelf
from core.r2.config import R2Config
from core.r2.jobs import models_name, r2_job, submit_judgment, submit_reflection
from core.r2.judge import Judgment
from core.r2.loop import Controls
from core.store import Store
from studio.runners.base import EngineRunner
from studio.runners.threads import RunSlots


class R2RunnerError(Exception):
    """A command the runner cannot carry out; the message says why and what to do."""


@dataclass
class R2Runner(EngineRunner):
    store: Store  # where runs, events and leases live (shared, thread-safe)
    get_lm: Callable[[], LM]  # the app's model: the writer, and the judge unless another spec is given
    model_name: str = ""  # the app's model spec (what an empty judge spec means)
    load: Callable[[str], LM] = field(default_factory=lambda: default_shelf().get)  # loads a judge spec other than the app's model
    slots: RunSlots | None = None  # the app's cap on runs driven at once (the REER runner's; None: a new one)

    kind: ClassVar[str] = "r2"
    controls_type: ClassVar[type] = Controls
    error_type: ClassVar[type[Exception]] = R2RunnerError

    # ---- models ----------------------------------------------------------------------------------
    def judge_spec(self, spec: str | None) -> str:
        """The judge's spec as recorded: empty means the app's model."""
        spec = (spec or "").strip()
        return spec or self.model_name

    def judge_lm(self, spec: str | None) -> LM:
        """The judge model for `spec` (the app's model when empty or equal to it), from the model shelf.
        Raises R2RunnerError with a readable message when it cannot be loaded."""
        spec = self.judge_spec(spec)
        if spec == self.model_name:
            return self.get_lm()
        try:  # the shelf keeps it (one load per spec, bounded by PALIMPSEST_MAX_MODELS), not this runner
            return self.load(spec)
        except Exception as exc:  # noqa: BLE001  (any loader failure is the user's to read)
            raise R2RunnerError(f"judge model {spec!r} could not be loaded: {type(exc).__name__}: {exc}; "
                                "leave the judge field empty to use the app's model") from exc

    # ---- commands --------------------------------------------------------------------------------
    def start(self, prompt_id: str, cfg: R2Config, judge: str | None = None) -> str:
        """Start (or resume: same prompt, settings and models, unfinished) a run; returns its id at
        once. The judge model is loaded in the run's thread (an error lands in the store)."""
        judge_spec = self.judge_spec(judge) if cfg.judge_mode != "human" else ""
        run_id = self.open(prompt_id, cfg, models_name(self.model_name, judge_spec))
        self.resume(run_id, judge_spec)
        return run_id

    def resume(self, run_id: str, judge: str | None = None) -> None:
        """Drive a stored, unfinished run again (one waiting for a judgment that has it now, or
        one whose driver died). `judge`: the judge spec (default: the one the run recorded)."""
        with self._lock:
            if self._live(run_id) is not None:
                return
            self._again(self._stored(run_id, "start a new run instead"), "run", judge=judge)

    def judge(self, run_id: str, judgment: Judgment, version: int | None = None) -> int:
        """Store a person's judgment (or the accepted proposal) for the run's open request, then
        continue the run; returns the event's seq. `version`: the version the person judged (refused
        when another waits). Raises core.r2.jobs.NoPendingJudgment or core.r2.judge.BadJudgment with
        a message naming the fix."""
        if self.is_driving(run_id):
            raise R2RunnerError(f"run {run_id[:8]} is still writing; wait until it asks for a judgment")
        seq = submit_judgment(self.store, run_id, judgment, version)
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

    def _events(self, run: dict, controls: Controls, owner: str, judge: str | None = None) -> Iterator[ev.Event]:
        judge_spec = self._recorded_judge(run, judge)
        writer = self.get_lm()
        cfg = R2Config.from_dict(run["settings"])
        judge_lm = None if cfg.judge_mode == "human" or not judge_spec else self.judge_lm(judge_spec)
        return r2_job(self.store, writer, judge_lm, run["prompt_id"], controls=controls, run_id=run["id"], owner=owner)
