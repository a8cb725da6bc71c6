"""Rebuilding an R2 run from its events: the live state (to resume) and the output record.

`R2State.apply(event)` folds one event in; `R2State.from_events(history)` replays a run
(core.runs.engine.Replayed), so a second process, a page reload or a restart after a kill sees
exactly what was saved.
`record_from_events` builds the JSON line `palimpsest r2 run` writes (and the trajectory's
`details`): {id, query, rounds: [{round, draft, judgment, reflection, revision,
revision_judgment, kept, reward}], thinking, final, ...}. `assemble_thinking` lays out the
trajectory: plan, first draft, then each round's reflection and revision; the final draft is
left out when it is the last text written (it is the answer), and kept in its place when a
later, discarded revision follows it. `trajectory_fields` picks a record's trajectory row (with
`trajectory_filters`). Pure functions of the events; no model, no store. REER's state module is its mirror.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from core import events as ev
from core.quality import leftovers
from core.runs.engine import Replayed

SET_ASIDE = "Rereading it, this version is weaker than the one before, so I keep the earlier one."


@dataclass
class R2State(Replayed):
    started: ev.R2Started | None = None
    drafted: ev.R2Drafted | None = None
    texts: dict[int, str] = field(default_factory=dict)  # version -> text (0: first draft, r: revision r)
    judgments: dict[int, dict] = field(default_factory=dict)  # version -> Judgment.to_dict()
    requests: dict[int, ev.JudgmentRequested] = field(default_factory=dict)  # version -> open or answered request
    reflections: dict[int, ev.Reflected] = field(default_factory=dict)  # round -> reflection
    rounds: dict[int, ev.RoundFinished] = field(default_factory=dict)  # round -> its closing event
    current: int = 0  # the version the next round revises
    finished: ev.R2Finished | None = None
    last: ev.Event | None = None  # the latest event
    seconds: float = 0.0  # active time summed over sessions (gaps longer than a pause are not counted)
    _t: float | None = None

    def apply(self, event: ev.Event) -> None:
        if self._t is not None and not isinstance(self.last, ev.RunPaused):
            self.seconds += max(0.0, min(event.t - self._t, 3600.0))
        self._t, self.last = event.t, event
        if isinstance(event, ev.R2Started):
            self.started = event
        elif isinstance(event, ev.R2Drafted):
            self.drafted, self.texts[0] = event, event.draft
        elif isinstance(event, ev.JudgmentRequested):
            self.requests[event.version] = event
        elif isinstance(event, ev.JudgmentGiven):
            self.judgments[event.version] = event.judgment
        elif isinstance(event, ev.Reflected):
            self.reflections[event.round] = event
        elif isinstance(event, ev.Revised):
            self.texts[event.round] = event.text
        elif isinstance(event, ev.RoundFinished):
            self.rounds[event.round] = event
            if event.kept:
                self.current = event.round
        elif isinstance(event, ev.R2Finished):
            self.finished = event

    @property
    def rounds_done(self) -> int:
        return len(self.rounds)

    def pending_request(self) -> ev.JudgmentRequested | None:
        """The request still waiting for a judgment, if any (none once the run has finished: a
        run stopped while it waited takes no more judgments)."""
        if self.finished is not None:
            return None
        return next((r for v, r in sorted(self.requests.items()) if v not in self.judgments), None)

    def pending_reflection(self) -> ev.Reflected | None:
        """The reflection waiting for a person's edit or approval (R2Config.review_reflections), if any."""
        if self.finished is not None or self.started is None or not self.started.settings.get("review_reflections"):
            return None
        r = self.rounds_done + 1
        refl = self.reflections.get(r)
        if refl is None or refl.by == "human" or r in self.texts or self.pending_request() is not None:
            return None
        return refl

    def active_seconds(self) -> float:
        return self.seconds + (max(0.0, time.time() - self._t) if self._t is not None else 0.0)


def _excerpt(text: str, keep: str, chars: int) -> str | None:
    if keep == "none":
        return None
    if keep == "excerpt" and len(text) > chars:
        return text[:chars].rstrip() + " [...]"
    return text


def assemble_thinking(plan: str, texts: dict[int, str], reflections: dict[int, str], kept: dict[int, bool],
                      final_version: int, keep: str = "full", chars: int = 400) -> str:
    """The trajectory inside <think> (module docstring); `keep` is full, excerpt or none."""
    parts = []
    omit = final_version if final_version == max(texts, default=0) else None  # the answer, said once
    if plan.strip():
        parts.append(plan.strip())
    first = _excerpt(texts.get(0, ""), keep, chars) if omit != 0 else None
    if first:
        parts.append("My first draft:\n" + first)
    for r in sorted(reflections):
        parts.append(reflections[r].strip())
        if r in texts and r != omit:
            body = _excerpt(texts[r], keep, chars)
            if body:
                parts.append("My revised draft:\n" + body)
            if not kept.get(r, True):
                parts.append(SET_ASIDE)
    return "\n\n".join(p for p in parts if p)


def record_from_events(events: Sequence[ev.Event]) -> dict:
    """The output record of a run (module docstring); works on unfinished runs too (final: current draft)."""
    s = R2State.from_events(events)
    if s.started is None:
        raise ValueError("no r2_started event: this is not an R2 run's history")
    settings = s.started.settings
    rounds = []
    for r in sorted(set(s.reflections) | set(s.rounds)):
        end = s.rounds.get(r)
        before = max((v for v in s.texts if v < r and (v == 0 or s.rounds.get(v) and s.rounds[v].kept)), default=0)
        rounds.append({
            "round": r, "draft": s.texts.get(before, ""), "draft_version": before,
            "judgment": s.judgments.get(before),
            "reflection": s.reflections[r].text if r in s.reflections else "",
            "revision": s.texts.get(r, ""), "revision_judgment": s.judgments.get(r),
            "kept": end.kept if end else None, "reward": end.reward if end else None,
        })
    final_version = s.finished.final_version if s.finished else s.current
    kept = {r: e.kept for r, e in s.rounds.items()}
    thinking = s.finished.thinking if s.finished else assemble_thinking(
        s.drafted.plan if s.drafted else "", s.texts, {r: e.text for r, e in s.reflections.items()}, kept,
        final_version, settings.get("keep_drafts", "full"), settings.get("excerpt_chars", 400))
    first = s.judgments.get(0)
    final_j = s.judgments.get(final_version)
    return {
        "id": s.started.item_id, "query": s.started.query, "rubric": list(s.started.rubric),
        "plan": s.drafted.plan if s.drafted else "", "first_judgment": first, "rounds": rounds,
        "thinking": thinking, "final": s.texts.get(final_version, ""), "final_version": final_version,
        "initial_overall": first.get("overall") if first else None,
        "final_overall": final_j.get("overall") if final_j else None,
        "finish_reason": s.finished.reason if s.finished else None,
        "writer": s.started.writer, "judge": s.started.judge, "run_id": s.started.run_id,
        "settings": settings, "seconds": round(s.finished.seconds if s.finished else s.active_seconds(), 2),
    }


def trajectory_filters(rec: dict) -> dict:
    """{"passed", "reasons"} of an R2 record: it needs a clean final draft (core.quality.leftovers:
    no template marker, leaked instruction or cut ending) and at least one reflection (a first
    draft already at the threshold teaches little: docs/design.md, R2 step 6)."""
    reasons = []
    if not rec["final"]:
        reasons.append("no final draft")
    reasons += leftovers(rec["final"], openings=False) if rec["final"] else []
    if not rec["rounds"]:
        reasons.append("no reflection: the first draft already met the threshold" if
                       rec["finish_reason"] == "threshold" else "no reflection")
    return {"passed": not reasons, "reasons": reasons}


def trajectory_fields(rec: dict) -> dict:
    """The trajectory row of an R2 record (Store.save_trajectory's fields; the record is its details)."""
    return dict(thinking=rec["thinking"], answer=rec["final"], initial_score=rec["initial_overall"],
                final_score=rec["final_overall"], filters=trajectory_filters(rec))
