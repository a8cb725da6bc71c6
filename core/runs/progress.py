"""Live progress of a run, for display: phases, tokens as they are written, elapsed time, a rough estimate.

`ProgressMeter` is what an engine (core.reer.search, core.r2.loop) holds while it works. It
announces each phase (`phase`), watches each generation through `core.models.lm.on_tokens`
(`generating`: the backend reports partial texts as tokens come) and turns what it sees into
TRANSIENT `core.events.Progress` events handed to `publish` (a run's Controls keep the latest for
the page; nothing stores them).

The estimate of time left is measured, never guessed: the generation rate is the tokens written
by this run's generations after their first report divided by the seconds since those reports
(the wait for a first token holds a model's one-time warm-up, and a rate of it would be absurd;
a generation with a single report counts whole). Until there is such a rate `left_s` stays None:
"estimating…". Time left = the tokens still allowed in the call under way plus the budgets of
the phases still to come (the engine says how many tokens those may write and how many scoring
passes they need), at that rate, plus the scoring passes at their measured mean duration.
Budgets are upper bounds, so the estimate errs long.

Knows the event and the token hook; knows no engine, store or page.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator

from core import events as ev
from core.models.lm import TokenProgress, on_tokens

Publish = Callable[[ev.Progress], None]


class ProgressMeter:
    """Phases and generations of one run, published as `Progress` events (module docstring)."""

    def __init__(self, run_id: str, publish: Publish | None, offset_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.run_id = run_id
        self.publish = publish  # where events go (None: nobody watches; the meter only measures)
        self.clock = clock
        self.started = clock() - max(0.0, offset_s)  # offset: seconds the run worked in earlier sessions
        self._lock = threading.Lock()
        self._gen_tokens = 0  # tokens written by the finished generations of this run
        self._gen_seconds = 0.0  # seconds those took
        self._other: dict[str, list[float]] = {}  # stage -> durations of finished non-writing phases
        self._phase = ("", "", 0.0)  # (words, stage, start) of the phase under way
        self._writing: tuple[float, int] | None = None  # (start, tokens so far) of the generation under way
        self._first: tuple[float, int] | None = None  # (time, tokens) of its first report that carried tokens
        self._budget = 0
        self._later_tokens = 0  # token budgets of the phases still to come
        self._later_scorings = 0  # scoring passes still to come

    # ---- what the engine calls -----------------------------------------------------------------
    def phase(self, words: str, stage: str, later_tokens: int = 0, later_scorings: int = 0) -> None:
        """A phase that writes no tokens (scoring, loading) begins."""
        self._begin(words, stage, 0, later_tokens, later_scorings)
        self._emit(tokens=0)

    @contextlib.contextmanager
    def generating(self, words: str, stage: str, budget: int, later_tokens: int = 0,
                   later_scorings: int = 0) -> Iterator[None]:
        """A phase that writes up to `budget` tokens: the generations inside report to this meter."""
        self._begin(words, stage, budget, later_tokens, later_scorings)
        with self._lock:
            self._writing, self._first = (self.clock(), 0), None
        self._emit(tokens=0)
        try:
            with on_tokens(self.on_tokens):
                yield
        finally:
            with self._lock:
                if self._writing is not None:
                    start, tokens = self._writing
                    if self._first is not None and tokens > self._first[1]:  # from the first report on
                        start, tokens = self._first[0], tokens - self._first[1]
                    self._gen_tokens += tokens
                    self._gen_seconds += max(0.0, self.clock() - start)
                    self._writing = None

    def on_tokens(self, p: TokenProgress) -> None:
        """The backend's report (core.models.lm.TokenProgress): partial texts and tokens so far."""
        with self._lock:
            if self._writing is not None:
                self._writing = (self._writing[0], max(self._writing[1], p.tokens))
                if self._first is None and p.tokens > 0:
                    self._first = (self.clock(), p.tokens)
        self._emit(tokens=p.tokens, texts=tuple(p.texts), budget=p.budget or self._budget, done=p.done)

    def finish_phase(self) -> None:
        """Close the phase under way (its duration counts for the estimate of later ones)."""
        self._begin("", "", 0, self._later_tokens, self._later_scorings)

    # ---- measured ------------------------------------------------------------------------------
    def rate(self) -> float | None:
        """Tokens per second written in this run so far (None before any token was reported)."""
        with self._lock:
            tokens, seconds = self._gen_tokens, self._gen_seconds
            if self._writing is not None and self._first is not None:
                tokens += self._writing[1] - self._first[1]
                seconds += self.clock() - self._first[0]
        return tokens / seconds if tokens > 0 and seconds > 0 else None

    def left(self, tokens: int = 0) -> float | None:
        """Rough seconds left (module docstring); None while there is no measured rate."""
        rate = self.rate()
        if rate is None:
            return None
        with self._lock:
            scorings = [d for d in self._other.get("scoring", [])]
            now_left = max(0, self._budget - tokens) if self._writing is not None else 0
            later_tokens, later_scorings = self._later_tokens, self._later_scorings
        per_scoring = sum(scorings) / len(scorings) if scorings else 0.0
        return (now_left + later_tokens) / rate + later_scorings * per_scoring

    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.started)

    # ---- inside --------------------------------------------------------------------------------
    def _begin(self, words: str, stage: str, budget: int, later_tokens: int, later_scorings: int) -> None:
        now = self.clock()
        with self._lock:
            _, old_stage, start = self._phase
            if old_stage and self._writing is None:  # a finished phase that wrote nothing: keep its duration
                self._other.setdefault(old_stage, []).append(max(0.0, now - start))
            self._phase = (words, stage, now)
            self._budget = budget
            self._later_tokens, self._later_scorings = max(0, later_tokens), max(0, later_scorings)

    def _emit(self, tokens: int, texts: tuple[str, ...] = (), budget: int | None = None, done: bool = False) -> None:
        if self.publish is None:
            return
        words, stage, start = self._phase
        self.publish(ev.Progress(
            self.run_id, phase=words, stage=stage, tokens=tokens, budget=self._budget if budget is None else budget,
            elapsed_s=round(self.elapsed(), 2), phase_s=round(max(0.0, self.clock() - start), 2), texts=texts,
            tokens_per_s=self.rate(), left_s=self.left(tokens), done=done))


def duration_words(seconds: float | None) -> str:
    """"38 s", "2 min", "1 h 5 min" (a rough figure for people); "" for None."""
    if seconds is None:
        return ""
    s = max(0, int(round(seconds)))
    if s < 90:
        return f"{s} s"
    m = int(round(s / 60))
    return f"{m} min" if m < 60 else f"{m // 60} h {m % 60} min"
