"""`GatedLM`: the scripted model (core.models.scripted) with generations the test releases.

Each generation shows half of each reply to a watching token sink at once, then waits until the
test hands it a permit (`release(n)`, or `open()` for all that follow): the streamed text and the
progress line stay on screen for as long as the test needs them, with no timing window to catch
on a loaded machine. A Stop (core.models.lm.stop_when) still ends the wait. `held` counts the
generations now waiting, and `wait_held(n)` blocks until that many are.
"""
from __future__ import annotations

import threading

from core.models.lm import TokenProgress, raise_if_stopped
from core.models.scripted import ScriptedLM, tokenize


class GatedLM(ScriptedLM):
    def __init__(self, name: str = "gated", **kw):
        super().__init__(name=name, **kw)
        self._permits = threading.Semaphore(0)
        self._opened = False
        self._cond = threading.Condition()
        self.held = 0  # generations now waiting for a permit
        self.served = 0  # generations that got one

    def release(self, n: int = 1) -> None:
        """Let the next n generations (waiting or to come) finish."""
        for _ in range(n):
            self._permits.release()

    def open(self) -> None:
        """Let every generation through from now on."""
        self._opened = True
        self.release(1000)

    def wait_held(self, n: int = 1, timeout: float = 60) -> None:
        """Block until n generations wait for a permit (AssertionError after `timeout` seconds)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.held >= n, timeout), f"{self.held} held, {n} expected"

    def _wait(self, out, config, sink) -> None:
        if sink is not None:
            part = ["".join(t[:max(1, len(t) // 2)]) for t in (tokenize(g) for g in out)]
            sink(TokenProgress(tuple(part), max((len(tokenize(p)) for p in part), default=0), config.max_new_tokens))
        with self._cond:
            self.held += 1
            self._cond.notify_all()
        try:
            while not self._permits.acquire(timeout=0.02):
                raise_if_stopped()
            with self._cond:
                self.served += 1
        finally:
            with self._cond:
                self.held -= 1
