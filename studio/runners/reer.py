"""ReerRunner: drives REER runs in background threads for the studio, one runner per app.

What it knows: REER's commands beyond the shared ones (studio.runners.base.EngineRunner: open,
pause, stop, threads, leases, errors): start and resume at a pace (`steps`), edit, force and skip,
each through a `core.reer.search.Controls` and `core.reer.jobs.reer_job` (which saves every event
and holds the run's lease); and which models a run recorded, the writer and its scorer (loaded once
through the shelf, the app's allow-list applying to both). What
it does not know: Gradio or rendering. Pages never read state from here to draw a run: they poll
the store, so a reload, a second tab or another process shows the same thing; the runner only
answers "is this process driving that run now?". The mirror of studio.runners.r2.

A paused run's thread has ended (the search yields `RunPaused` and returns); Run or Step start
a new thread that resumes it from its stored events. An edit on a paused run is applied by a
short thread that rescores it and pauses again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

from core import events as ev
from core.models.lm import LM
from core.models.shelf import ModelChoice
from core.reer.config import ReerConfig
from core.reer.jobs import reer_job
from core.reer.search import Controls
from core.runs.controls import Shown
from core.store import Store
from studio.runners.base import EngineRunner
from studio.runners.threads import RunSlots


class RunnerError(Exception):
    """A command the runner cannot carry out; the message says why and what to do."""


@dataclass
class ReerRunner(EngineRunner):
    store: Store  # where runs, events and leases live (shared, thread-safe)
    get_lm: Callable[[], LM]  # the app's model, loaded on first use
    models: ModelChoice | None = None  # other models by spec (a run's recorded model); None: get_lm only
    slots: RunSlots | None = None  # the app's cap on runs driven at once, shared with its R2 runner (None: a new one)

    kind: ClassVar[str] = "reer"
    controls_type: ClassVar[type] = Controls
    error_type: ClassVar[type[Exception]] = RunnerError

    # ---- commands ----------------------------------------------------------------------------
    def start(self, prompt_id: str, cfg: ReerConfig, model: str, steps: int | None = None) -> str:
        """Start (or resume: same prompt, settings and model, unfinished) a run; returns its id
        at once, before the model is loaded. `steps`: pause after that many expansions."""
        run_id = self.open(prompt_id, cfg, model)
        self.resume(run_id, steps)
        return run_id

    def resume(self, run_id: str, steps: int | None = None) -> None:
        """Drive a stored, unfinished run again (a paused one, or one whose driver died)."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:  # already driven here: just change its pace
                act.controls.resume() if steps is None else act.controls.step(steps)
                return
            run = self._stored(run_id, "start a new run instead")
            self._again(run, "run", lambda c: steps is not None and c.step(steps))

    def edit(self, run_id: str, segment: int, text: str, shown: Shown | None = None) -> None:
        """Replace segment `segment` (0-based) by a person's text; the search rescores it at once.
        On a paused run the edit is applied by a short thread that pauses again. `shown`: the segment
        as the person saw it (refused if it changed since; core.reer.search)."""
        self._person(run_id, "edit", "edits apply", lambda c: c.edit(segment, text, shown=shown), lambda c: c.pause())

    def force(self, run_id: str, candidate: int, shown: Shown | None = None) -> None:
        """Accept candidate `candidate` (0-based) of the step awaiting its decision, whatever its score.
        `shown`: the candidate as the person saw it; the search refuses the force unless it still waits."""
        self._person(run_id, "force", "force applies", lambda c: c.force(candidate, shown=shown), lambda c: c.step(1))

    def skip(self, run_id: str, shown: Shown | None = None) -> None:
        """Keep the segment under work (or the next one) as it is and move on; `shown`: the step and
        segment the person saw (refused if the run moved on)."""
        self._person(run_id, "skip", "skip applies", lambda c: c.skip(shown=shown), lambda c: c.step(1))

    def _person(self, run_id: str, what: str, applies: str, queue: Callable[[Controls], None],
                then: Callable[[Controls], None]) -> None:
        """A person's command: queued on a driven run (taken at its next decision); a paused run is
        driven by a short thread that carries it out (`then`: how far it goes), then pauses again."""
        with self._lock:
            act = self._live(run_id)
            if act is not None:
                queue(act.controls)
                return
            run = self._stored(run_id, f"{applies} to a running or paused run", ("paused",))
            self._again(run, what, lambda c: (queue(c), then(c)))

    def editing(self, run_id: str) -> int | None:
        """The segment of a person's edit asked here and not yet scored (None: none)."""
        act = self._live(run_id)
        return act.controls.editing() if act is not None else None

    # ---- inside ----------------------------------------------------------------------------------
    def lm_for(self, spec: str | None) -> LM:
        """The model a run recorded (loaded once); RunnerError with the fix when it cannot load."""
        if self.models is None:
            return self.get_lm()
        try:
            return self.models.lm(spec)
        except Exception as exc:  # noqa: BLE001  (any loader failure is the user's to read)
            raise RunnerError(f"model {spec!r} could not be loaded: {exc}; leave the model field empty to use "
                              f"the app's model ({self.models.default})") from exc

    def scorer_for(self, run: dict) -> LM:
        """The model that scores a run: its settings' `scorer`, else the model that writes it."""
        spec = str((run.get("settings") or {}).get("scorer") or "").strip()
        return self.lm_for(spec or run.get("model"))

    def _events(self, run: dict, controls: Controls, owner: str) -> Iterator[ev.Event]:
        scorer = self.scorer_for(run)  # first: a scorer that cannot score the layout is refused before the writer loads
        return reer_job(self.store, self.lm_for(run.get("model")), run["prompt_id"], controls=controls,
                        run_id=run["id"], owner=owner, scorer=scorer)
