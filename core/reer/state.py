"""Rebuilding a REER run from its events: the live state (to resume) and the output record.

`ReerState.apply(event)` folds one event in; `ReerState.from_events(history)` replays a run
(core.runs.engine.Replayed). A step counts as done once its `SegmentDecided` arrives (a person's
edit does not use up a step, but makes the step's waiting candidates stale: `waiting` then has none
until the step's candidates are written again). `record_from_events` turns a run's events into the JSON line
`palimpsest reer run` writes; `trajectory_fields` picks a record's trajectory row. Pure functions
of the events: the store, the CLI and the studio all share them. R2's state module is its mirror.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from core import events as ev
from core.runs.engine import Replayed


@dataclass
class ReerState(Replayed):
    started: bool = False  # ReerStarted seen
    finished: bool = False  # ReerFinished seen
    run: ev.ReerStarted | None = None
    draft: ev.InitialDraft | None = None
    segments: list[str] | None = None  # current trajectory
    score: dict | None = None  # current Score.as_dict()
    steps_done: int = 0  # decided expansions (edits excluded)
    events: list[ev.Event] = field(default_factory=list)

    def apply(self, event: ev.Event) -> None:
        self.events.append(event)
        if isinstance(event, ev.ReerStarted):
            self.started, self.run = True, event
        elif isinstance(event, ev.InitialDraft):
            self.draft, self.segments, self.score = event, list(event.segments), event.score
        elif isinstance(event, ev.SegmentDecided):
            self.segments, self.score = list(event.segments), event.score
            if event.action != "edit":
                self.steps_done += 1
        elif isinstance(event, ev.ReerFinished):
            self.finished = True

    def pending_step(self, step: int, segment: int, k: int) -> dict | None:
        """{candidate: (text, score)} if step `step` was fully generated and scored but not decided."""
        gen, scored, began = {}, {}, False
        for e in self.events:
            if getattr(e, "step", None) != step:
                continue
            if isinstance(e, ev.SegmentStarted) and e.segment == segment:
                began, gen, scored = True, {}, {}
            elif isinstance(e, ev.CandidateGenerated) and began:
                gen[e.index] = e.text
            elif isinstance(e, ev.CandidateScored) and began and e.index >= 0:
                scored[e.index] = e.score
            elif isinstance(e, ev.SegmentDecided) and began:
                began, gen, scored = False, {}, {}  # decided, or an edit made them stale (written again after it?)
        if not began or len(gen) < k or any(t is not None and i not in scored for i, t in gen.items()):
            return None
        return {i: (gen[i], scored[i]) for i in scored}

    def attempt(self, step: int) -> int:
        """How many times step `step`'s candidates were started (2 or more: written again after an edit)."""
        return sum(isinstance(e, ev.SegmentStarted) and e.step == step for e in self.events)

    def waiting(self) -> tuple[int, int, int, dict] | None:
        """(step, segment, attempt, {candidate: (text, score)}) of the candidates awaiting a decision
        now: the current step's, all written and scored, not decided and not made stale by an edit;
        None when none wait."""
        step = self.steps_done + 1
        started = [e for e in self.events if isinstance(e, ev.SegmentStarted) and e.step == step]
        if self.finished or not started:
            return None
        k = int(((self.run.settings if self.run else None) or {}).get("candidates", 1))
        pending = self.pending_step(step, started[-1].segment, k)
        return (step, started[-1].segment, len(started), pending) if pending else None

    def active_seconds(self) -> float:
        """Time spent drafting and expanding: sum of draft and per-step durations (pauses excluded)."""
        total, opened = 0.0, None
        for e in self.events:
            if isinstance(e, (ev.ReerStarted, ev.SegmentStarted)):
                opened = e.t
            elif isinstance(e, (ev.InitialDraft, ev.SegmentDecided)) and opened is not None:
                total += max(0.0, e.t - opened)
                opened = None
        return total


def record_from_events(events: Sequence[ev.Event]) -> dict:
    """The output record of one run (fields of `palimpsest reer run`'s JSON lines)."""
    state = ReerState.from_events(events)
    run, draft = state.run, state.draft
    fin = next((e for e in reversed(events) if isinstance(e, ev.ReerFinished)), None)
    steps: dict[int, dict] = {}
    texts: dict[tuple[int, int], dict] = {}
    draft_seconds = 0.0
    for e in events:
        if isinstance(e, ev.InitialDraft) and run is not None:
            draft_seconds = e.t - run.t
        if isinstance(e, ev.SegmentStarted):
            steps[e.step] = {"step": e.step, "segment": e.segment, "original": e.text, "chosen": e.text,
                             "action": None, "by": None, "candidates": [], "_t": e.t, "seconds": 0.0}
            texts = {}
        elif isinstance(e, ev.CandidateGenerated) and e.step in steps:
            cand = {"text": e.text, "raw": e.raw, "ppl": None, "score": None, "accepted": False, "error": e.error}
            steps[e.step]["candidates"].append(cand)
            texts[(e.step, e.index)] = cand
        elif isinstance(e, ev.CandidateScored) and (e.step, e.index) in texts:
            texts[(e.step, e.index)].update(ppl=e.score["ppl"], score=e.score["score"])
        elif isinstance(e, ev.SegmentDecided):
            st = steps.setdefault(e.step, {"step": e.step, "segment": e.segment, "original": None, "chosen": e.text,
                                           "action": None, "by": None, "candidates": [], "_t": e.t, "seconds": 0.0})
            st.update(chosen=e.text, action=e.action, by=e.by, seconds=round(e.t - st["_t"], 3))
            if e.chosen is not None and e.chosen < len(st["candidates"]):
                st["candidates"][e.chosen]["accepted"] = True
    for st in steps.values():
        st.pop("_t", None)
    final_score = (fin.score if fin else state.score) or {}
    return {
        "id": run.item_id if run else None,
        "run_id": run.run_id if run else None,
        "query": run.query if run else None,
        "reference": run.reference if run else None,
        "initial_thinking": draft.thinking if draft else "",
        "thinking": fin.thinking if fin else "\n\n".join(state.segments or []),
        "initial_ppl": draft.score.get("ppl") if draft else None,
        "final_ppl": final_score.get("ppl"),
        "initial_score": draft.score.get("score") if draft else None,
        "final_score": final_score.get("score"),
        "steps": [steps[k] for k in sorted(steps)],
        "filters": fin.filters if fin else {"passed": False, "reasons": ["the run has not finished"]},
        "finish_reason": fin.reason if fin else None,
        "model": run.model if run else None,
        "scorer": (run.scorer or run.model) if run else None,  # who scored y (the generator when not another)
        "settings": run.settings if run else None,
        "timings": {"draft_seconds": round(draft_seconds, 3), "active_seconds": round(state.active_seconds(), 3),
                    "wall_seconds": round(events[-1].t - events[0].t, 3) if events else 0.0},
    }


def trajectory_fields(rec: dict) -> dict:
    """The trajectory row of a REER record (Store.save_trajectory's fields; the record is its details)."""
    return dict(thinking=rec["thinking"], answer=rec["reference"] or "", initial_score=rec["initial_score"],
                final_score=rec["final_score"], initial_ppl=rec["initial_ppl"], final_ppl=rec["final_ppl"],
                filters=rec["filters"])
