"""Rebuilding a REER run from its events: the live state (to resume) and the output record.

`ReerState.apply(event)` folds one event in; `ReerState.from_events(history)` replays a run
(core.runs.engine.Replayed). An expansion counts as done once its `SegmentDecided` arrives (a person's
edit does not use up the step budget, but makes the step's waiting candidates stale: `waiting` then has
none until the candidates are written again, under a new step number).

Step numbers (the `step` of every REER event) number the run's decisions: every decision (an
expansion's accept, keep, force or skip, and a person's edit) has a number of its own, and an
expansion's SegmentStarted, candidates and decision share it. A new number is one above the
highest any event of the run carries (`last_step`), so numbers only grow and are never reused: an
edit takes a fresh one, and candidates an edit made stale keep theirs (undecided; the candidates
written again take the next). `steps_done` counts expansions only (the budget and the segment to
visit). Runs stored before this numbering gave an edit the number of the next expansion; they
replay the same, and a resumed one carries on above its highest number.

`record_from_events` turns a run's events into the JSON line `palimpsest reer run` writes (one
`steps` entry per step number: an edit has its own, and stale candidates keep theirs with action
null); `trajectory_fields` picks a record's trajectory row. Pure functions of the events: the
store, the CLI and the studio all share them. R2's state module is its mirror.
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
    steps_done: int = 0  # decided expansions (edits excluded): what the step budget counts
    last_step: int = 0  # the highest step number any event of the run carries (module docstring)
    open_step: int | None = None  # the step started, not yet decided; None: none (any decision closes it)
    events: list[ev.Event] = field(default_factory=list)

    def apply(self, event: ev.Event) -> None:
        self.events.append(event)
        if isinstance(event, (ev.SegmentStarted, ev.CandidateGenerated, ev.CandidateScored, ev.SegmentDecided)):
            self.last_step = max(self.last_step, event.step)
        if isinstance(event, ev.SegmentStarted):
            self.open_step = event.step
        if isinstance(event, ev.ReerStarted):
            self.started, self.run = True, event
        elif isinstance(event, ev.InitialDraft):
            self.draft, self.segments, self.score = event, list(event.segments), event.score
        elif isinstance(event, ev.SegmentDecided):
            self.segments, self.score, self.open_step = list(event.segments), event.score, None
            if event.action != "edit":
                self.steps_done += 1
        elif isinstance(event, ev.ReerFinished):
            self.finished = True

    def next_step(self) -> int:
        """The step number of the next expansion: the open one's (started, not decided: it is finished
        under its number), else a fresh one."""
        return self.open_step if self.open_step is not None else self.last_step + 1

    def edit_step(self) -> int:
        """The step number of a person's edit arriving now: always a fresh one."""
        return self.last_step + 1

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
        """How many times step `step`'s candidates were started (2 or more: written again, after a
        crash, or after an edit in a run stored before edits took step numbers of their own)."""
        return sum(isinstance(e, ev.SegmentStarted) and e.step == step for e in self.events)

    def waiting(self) -> tuple[int, int, int, dict] | None:
        """(step, segment, attempt, {candidate: (text, score)}) of the candidates awaiting a decision
        now: the open step's, all written and scored, not decided and not made stale by an edit;
        None when none wait."""
        step = self.open_step
        started = [e for e in self.events if isinstance(e, ev.SegmentStarted) and e.step == step]
        if self.finished or step is None or not started:
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
