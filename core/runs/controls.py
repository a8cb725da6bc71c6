"""The steering base: what a caller holding a run's generator may ask of it between events.

`ControlsBase` holds a lock, the stop flag and a queue of commands (tuples whose first item names
the command); the engine reads them between events. REER's Controls (core.reer.search) adds
pause, step, edit, force and skip; R2's (core.r2.loop) adds judgments and a hold at the next
judgment point. Thread-safe: the studio's page threads write, the run's thread reads.
The stop flag also reaches inside a generation: the studio's runners drive an engine within
`core.models.lm.stop_when(controls.stopped)`, so a Stop ends a model call between tokens and the
engine finishes the run as "stopped" at once instead of after its current step.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Sequence


class ControlsBase:
    """Stop, pause and a command queue; subclasses name the commands and their pause point."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commands: deque[tuple] = deque()
        self._stop = False

    def stop(self) -> None:
        """End the run at its next step (reason "stopped"); what was done is kept."""
        with self._lock:
            self._stop = True

    def pause(self) -> None:
        """Pause at the next point where a person may act (each engine says where)."""
        raise NotImplementedError

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
