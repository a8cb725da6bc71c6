"""The steering base: what a caller holding a run's generator may ask of it between events.

`ControlsBase` holds a lock, the stop flag and a queue of commands (tuples whose first item names
the command); the engine reads them between events. REER's Controls (core.reer.search) adds
pause, step, edit, force and skip; R2's (core.r2.loop) adds judgments and a hold at the next
judgment point. Thread-safe: the studio's page threads write, the run's thread reads.
The stop flag also reaches inside a generation: the studio's runners drive an engine within
`core.models.lm.stop_when(controls.stopped)`, so a Stop ends a model call between tokens and the
engine finishes the run as "stopped" at once instead of after its current step.

The other way, while it works the engine `report`s its latest TRANSIENT `core.events.Progress`
(held here in memory, never stored) for the page to read (`progress`), and `asked` tells a page
what a person has asked that the engine has not yet done ("stopping", "pausing"), so Pause and
Stop are acknowledged at once.

A person's command carries who asked (`person`: the annotator given, else the one the caller's
thread acts as, core.annotators), read when it is queued, since the engine's thread runs
as nobody; the engine records it on the event the command makes.

A person's decision also names WHAT they saw (`Shown`: the run, step, segment, candidate index,
which writing of the step's candidates, and a hash of the text), so an engine can refuse a
command whose object is no longer the one waiting (core.reer.search: a force of candidates an
edit made stale, a skip of a segment the search already left) instead of applying it to another.
"""
from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass
from typing import Sequence

from core import events as ev


def text_hash(text: str | None) -> str:
    """A short, stable hash of a text a person saw (sha256 of its stripped UTF-8, 16 hex digits)."""
    return hashlib.sha256((text or "").strip().encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Shown:
    """The identity of what a person decided on, as it was shown to them; an engine compares it with
    what waits now and refuses the command when they differ (it never applies it to something else)."""

    run_id: str  # the run on screen
    step: int  # the step the decision is for (1-based)
    segment: int  # the segment (0-based)
    index: int | None = None  # the candidate forced (0-based); None for an edit or a skip
    attempt: int = 1  # which writing of the step's candidates (2: written again under its number, after a crash)
    text_hash: str = ""  # text_hash of the candidate's text (force) or of the segment's text (edit, skip); "": unchecked

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "step": self.step, "segment": self.segment, "index": self.index,
                "attempt": self.attempt, "text_hash": self.text_hash}


class ControlsBase:
    """Stop, pause and a command queue; subclasses name the commands and their pause point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commands: deque[tuple] = deque()
        self._stop = False
        self._progress: ev.Progress | None = None  # the engine's latest report (display only)

    def stop(self) -> None:
        """End the run at its next step (reason "stopped"); what was done is kept."""
        with self._lock:
            self._stop = True

    def pause(self) -> None:
        """Pause at the next point where a person may act (each engine says where)."""
        raise NotImplementedError

    def pause_asked(self) -> bool:
        """True while a pause is asked and not yet reached (each engine says what that is)."""
        return False

    def asked(self) -> str | None:
        """"stopping" or "pausing" while a Stop or a Pause is asked and the run still goes; else None."""
        if self.stopped():
            return "stopping"
        return "pausing" if self.pause_asked() else None

    def report(self, progress: ev.Progress) -> None:
        """The engine's latest progress (core.runs.progress.ProgressMeter publishes here)."""
        with self._lock:
            self._progress = progress

    def clear_progress(self) -> None:
        """Forget the last report: the run now waits for a person (a pause, a judgment), so no
        progress line is shown until the engine reports again."""
        with self._lock:
            self._progress = None

    def progress(self) -> ev.Progress | None:
        """The latest progress the engine reported (None before any)."""
        with self._lock:
            return self._progress

    @staticmethod
    def person(annotator: str | None = None) -> str | None:
        """Who asks for a command: `annotator` (checked), else core.annotators's current person
        (set by the caller's `acting_as`, read in the caller's thread: the engine's thread has none),
        else None. The engine records it on the event the command makes."""
        from core.annotators import resolve

        return resolve(annotator)

    def _queue(self, *command) -> None:
        with self._lock:
            self._commands.append(command)

    # ---- read by the engine ----
    def stopped(self) -> bool:
        with self._lock:
            return self._stop

    def take(self, kinds: Sequence[str]) -> tuple | None:
        """The oldest queued command of one of these kinds, removed from the queue; None if none."""
        with self._lock:
            for i, cmd in enumerate(self._commands):
                if cmd[0] in kinds:
                    del self._commands[i]
                    return cmd
        return None
