"""Calibrations of a model judge run from the studio: each in a thread of its own, so the page stays
responsive and polls its progress.

Knows: core.judging.calibration.iter_calibrate (a generator of Calibrated events, one per draft,
each judgment stored as soon as it is read, so a stop or a crash keeps what was judged), how a
calibration is asked for (CalibrationRequest), and each job's latest progress, error and end.
Stop ends a generation between tokens (core.models.lm.stop_when) and the job between drafts.
Progress lives in this process's memory only; the judgments themselves are in the store.

Does not know: Gradio, rendering, or which model a page may load (the page hands in `load`, the
studio's model policy).
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from core.judging import calibration as cal
from core.models.lm import GenerationStopped, stop_when


@dataclass(frozen=True)
class CalibrationRequest:
    queue: str  # the queue whose drafts the model judges (created when absent, with `refs`)
    spec: str  # the model judge's spec ("" = the app's model)
    refs: tuple[str, ...]  # the drafts to judge (traj:ID / r2:RUN:VERSION)
    method: str = "generate"  # core.r2.judge.JudgeConfig.method
    seed: int = 0  # the judge's sampling seed
    by: str | None = None  # who asked (recorded on items the calibration adds)


@dataclass
class CalibrationJob:
    id: str  # "cal-N", unique in this process
    request: CalibrationRequest
    model: str  # the judge's name as stored ("model:<spec>")
    done: int = 0  # drafts judged so far
    total: int = 0  # drafts to judge (0 until the model is loaded and the drafts are queued)
    last: str = "loading the model..."  # what happened last, in words
    error: str | None = None  # why the job ended early
    finished: bool = False  # the thread has ended (done, stopped or failed)
    stop: threading.Event = field(default_factory=threading.Event)


class CalibrationRunner:
    """Starts calibrations in threads and keeps their progress (one runner per app)."""

    def __init__(self, store, load: Callable[[str], object]):
        self.store = store
        self.load = load  # spec -> LM (the page's model policy decides what may load)
        self.jobs: dict[str, CalibrationJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, req: CalibrationRequest, name: str) -> CalibrationJob:
        """A new job judging `req.refs` with the model; returns at once."""
        from core.r2.judge import JudgeConfig

        job = CalibrationJob(id=f"cal-{next(self._ids)}", request=req, model=name)
        with self._lock:
            self.jobs[job.id] = job

        def run() -> None:
            try:
                lm = self.load(req.spec)
                known = {q["name"]: q for q in cal.jq.list_queues(self.store)}
                low, high = (known[req.queue]["low"], known[req.queue]["high"]) if req.queue in known else (1, 5)
                cfg = JudgeConfig(low=low, high=high, method=req.method)
                job.total, job.last = len(req.refs), "judging the first draft..."
                with stop_when(job.stop.is_set):
                    for step in cal.iter_calibrate(self.store, lm, name.removeprefix("model:"), req.queue,
                                                   list(req.refs), cfg=cfg, seed=req.seed, by=req.by):
                        job.done, job.total = step.done, step.total
                        job.last = (f"{step.ref}: overall {step.overall:g}" if step.overall is not None
                                    else f"{step.ref}: unparsed ({step.error})")
                        if job.stop.is_set():
                            job.error = f"stopped after {step.done} of {step.total} drafts"
                            break
            except GenerationStopped:
                job.error = f"stopped after {job.done} of {job.total} drafts"
            except Exception as e:  # the page shows why; the judgments stored so far stay
                job.error = f"{type(e).__name__}: {e}"
            finally:
                job.finished = True

        threading.Thread(target=run, name=f"palimpsest-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str | None) -> CalibrationJob | None:
        with self._lock:
            return self.jobs.get(job_id or "")

    def stop(self, job_id: str | None) -> bool:
        job = self.get(job_id)
        if job is None or job.finished:
            return False
        job.stop.set()
        return True

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Wait for the job's end (tests); True when it finished."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while job is not None and not job.finished:
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True
