"""HTML for the REER page, built from a run's stored events and its runs row.

What it knows: how to show a run's status line, its current trajectory as numbered segments
(the one under work highlighted, changed ones marked), and the candidate cards of the latest
step with their perplexity change (candidates an edit made stale marked so at once), and `shown_of`:
the identity of what the page shows (the waiting candidates, the trajectory's segments, the next
step), so a person's force, edit or skip names exactly what they saw (core.runs.controls.Shown).
What it does not know: Gradio, the store API or the search.
Every piece of model output and user text goes through `html.escape`.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

from core import events as ev
from core.runs.controls import Shown, text_hash

# a run's finish_reason in words (menus, the status line); never the raw code
REASONS = {"threshold": "reached the stop threshold", "max_steps": "used all its steps",
           "segments_done": "every segment was visited", "stopped": "stopped by you",
           "dropped": "dropped: the draft was too short or one segment"}


@dataclass
class ReerView:
    """What the page shows of a run, folded from its events."""

    query: str = ""
    reference: str = ""
    settings: dict = field(default_factory=dict)
    initial: list[str] = field(default_factory=list)  # z0's segments
    segments: list[str] = field(default_factory=list)  # the current trajectory
    initial_score: dict | None = None
    score: dict | None = None  # current
    steps_done: int = 0
    working: int | None = None  # segment index under expansion now (None: none)
    step: int | None = None  # the latest step that produced candidates (its number in the record)
    nth: int | None = None  # that step's ordinal among the expansions: what "step 3/4" and Max steps count
    step_segment: int | None = None
    before: dict | None = None  # the trajectory's score when that step began
    cards: list[dict] = field(default_factory=list)  # {index, text, error, score, state}
    finished: ev.ReerFinished | None = None
    errors: list[str] = field(default_factory=list)
    n_events: int = 0
    changed: set = field(default_factory=set)  # segment indices that differ from z0
    attempt: int = 0  # which writing of the latest step's candidates (2: written again under its number)
    stale_by: int | None = None  # the segment whose edit made the latest step's candidates stale (None: not stale)
    kept: list = field(default_factory=list)  # (step, best candidate score or None, score before) of steps kept
    accepted: int = 0  # steps that took a candidate (by the search or a person)
    unusable: int = 0  # candidates that could not be parsed
    last_step: int = 0  # the highest step number of the run's events (core.reer.state: numbers only grow)
    open_step: int | None = None  # the step started and not yet decided (None: none, or an edit closed it)


def step_label(nth: int | None, number: int) -> str:
    """How the page names a step: "step 3", its ordinal among the run's expansions (what the status
    line, the progress line, the plot's x axis and Max steps count), with the number it has in the
    run's record and exports when that differs: "step 3 (#5 in the record)" (an edit or a skip takes
    a number of its own, core.reer.state)."""
    if nth is None or nth == number:
        return f"step {number}"
    return f"step {nth} (#{number} in the record)"


STEERING = ("force", "skip", "edit")  # a person's command refused: shown until the next decision


def fold(events: Sequence[ev.Event]) -> ReerView:
    v = ReerView(n_events=len(events))
    cards: dict[int, dict] = {}
    steering: list[str] = []  # refusals of a person's commands since the last decision
    for e in events:
        if isinstance(e, (ev.SegmentStarted, ev.CandidateGenerated, ev.CandidateScored, ev.SegmentDecided)):
            v.last_step = max(v.last_step, e.step)
        if isinstance(e, ev.ReerStarted):
            v.query, v.reference, v.settings = e.query, e.reference, dict(e.settings or {})
        elif isinstance(e, ev.InitialDraft):
            v.initial, v.segments, v.initial_score, v.score = list(e.segments), list(e.segments), e.score, e.score
        elif isinstance(e, ev.SegmentStarted):
            v.attempt = v.attempt + 1 if e.step == v.step else 1
            v.working, v.step, v.step_segment, v.before, cards = e.segment, e.step, e.segment, v.score, {}
            v.nth = v.steps_done + 1
            v.stale_by, v.open_step = None, e.step
        elif isinstance(e, ev.CandidateGenerated) and e.step == v.step:
            cards[e.index] = {"index": e.index, "text": e.text, "error": e.error, "score": None, "state": "pending"}
        elif isinstance(e, ev.CandidateScored) and e.step == v.step and e.index in cards:
            cards[e.index]["score"] = e.score
        elif isinstance(e, ev.SegmentDecided):
            v.segments, v.score = list(e.segments), e.score
            steering, v.open_step = [], None
            if e.action == "edit" and any(c["state"] == "pending" for c in cards.values()):
                v.stale_by = e.segment  # scored against the old text: never decided on (core.reer.search)
                for c in cards.values():
                    c["state"] = "stale" if c["state"] == "pending" else c["state"]
            if e.action != "edit":
                if e.action == "keep" and e.step == v.step:
                    scored = [c["score"]["score"] for c in cards.values() if c["score"] is not None]
                    v.kept.append((e.step, min(scored) if scored else None, (v.before or {}).get("score")))
                v.accepted += e.action in ("accept", "force")
                v.unusable += sum(c["text"] is None for c in cards.values()) if e.step == v.step else 0
                v.steps_done += 1
                v.working = None
                if e.step == v.step:
                    for k, c in cards.items():
                        c["state"] = "accepted" if (e.chosen == k and e.action in ("accept", "force")) else (
                            "failed" if c["text"] is None else "rejected")
        elif isinstance(e, ev.ReerFinished):
            v.finished, v.working = e, None
            if e.segments:
                v.segments, v.score = list(e.segments), e.score or v.score
        elif isinstance(e, ev.RunError) and e.where in STEERING and not e.fatal:
            steering.append(e.message)  # already in words for the person
        elif isinstance(e, ev.RunError):
            v.errors.append(f"{e.where or 'error'}: {e.message}")
    v.errors += steering
    for c in cards.values():
        if c["state"] == "pending" and c["text"] is None:
            c["state"] = "failed"
    v.cards = [cards[k] for k in sorted(cards)]
    v.changed = {i for i, s in enumerate(v.segments) if i >= len(v.initial) or s != v.initial[i]}
    return v


def _ppl(x) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "?"
    return f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"


def _steps(n: int) -> str:
    return f"{n} step{'' if n == 1 else 's'}"


def end_text(reason: str, v: ReerView | None) -> str:
    """Why a run ended, in words, with the steps it took ("ended after 3 of 6 steps: every segment
    was visited (3 segments, 1 pass)"), so a run that stops short of its step budget says why."""
    if v is None:
        return f"finished: {REASONS.get(reason, reason)}"
    n, budget = v.steps_done, v.settings.get("max_steps")
    of = f"{n} of {budget} steps" if isinstance(budget, int) and n < budget else _steps(n)
    if reason == "segments_done":
        passes = v.settings.get("passes", 1)
        segs = len(v.segments)
        return (f"ended after {of}: every segment was visited ({segs} segment{'' if segs == 1 else 's'}, "
                f"{passes} pass{'' if passes == 1 else 'es'}; each step works on one segment)")
    if reason == "max_steps":
        return f"ended after {_steps(n)}: the step budget (Max steps) was used"
    if reason == "threshold":
        return f"ended after {of}: the score fell below the stop threshold"
    if reason == "stopped":
        return f"stopped by you after {_steps(n)}"
    if reason == "dropped":
        why = "; ".join(((v.finished.filters or {}).get("reasons") or [])[:2]) if v.finished else ""
        return "dropped before any step: " + (why or "the draft was too short or one segment")
    return f"finished: {REASONS.get(reason, reason)}"


def driver_gone(run: dict) -> str | None:
    """Why a run stored as running has no live driver, in words (its lease's owner is a process of
    this host that no longer runs, e.g. a studio killed with SIGKILL; or its lease ran out), or None
    when one may still be driving it."""
    import time

    from core.runs.lease import describe_owner, owner_is_dead

    owner, until = run.get("lease_owner"), run.get("lease_until")
    if not owner:
        return "interrupted: no process drives it; Run resumes it"
    if owner_is_dead(owner):
        return f"interrupted: the process that drove it ({describe_owner(owner)}) is gone; Run resumes it"
    if isinstance(until, (int, float)) and until < time.time():
        return f"interrupted: its driver ({describe_owner(owner)}) stopped answering; Run resumes it"
    return None


def status_html(run: dict | None, v: ReerView | None, driving: bool, error: str | None = None,
                model: str = "", scorer: str = "") -> str:
    """One line: run id, state, step, current vs initial perplexity, the model (as "writer X · scorer Y"
    when another model scores), and any error."""
    if run is None:
        return ('<div class="reer-status idle" data-state="idle">No run yet: pick a prompt, check the settings '
                "and press <b>Run</b> (or <b>Step</b> for one expansion at a time).</div>")
    state = run["status"]
    if state == "running" and not driving and v is not None and not v.finished:
        state_txt = "interrupted" if error else (driver_gone(run) or "running (driven by another process)")
    elif state == "running" and v is not None and v.initial_score is None:
        state_txt = "writing the initial draft…"
    elif state == "running":
        state_txt = (f"expanding segment {v.working + 1}…" if v and v.working is not None else "running…")
    elif state == "paused" and v is not None and v.working is not None and any(
            c["state"] == "pending" and c["score"] is not None for c in v.cards):
        state_txt = ("paused: the candidates await your decision: accept one, skip the segment, "
                     "or Run / Step to let the search decide")
    elif state == "paused" and v is not None and v.stale_by is not None:
        state_txt = (f"paused: your edit of segment {v.stale_by + 1} made the waiting candidates stale (they were "
                     f"scored against the old text), so they cannot be accepted; Run or Step writes new ones")
    elif state == "paused":
        state_txt = "paused: Run to continue, Step for one expansion, or edit a segment"
    elif state in ("finished", "stopped"):
        state_txt = end_text(run.get("finish_reason") or "", v)
    else:
        state_txt = state
    parts = [f'<span class="rid" title="run id">run {html.escape(run["id"][:8])}</span>',
             f'<span class="state">{html.escape(state_txt)}</span>']
    if v is not None and v.initial_score:
        total = v.settings.get("max_steps", "?")
        if isinstance(total, int) and v.segments:  # the most this run can take: also one per segment and pass
            total = min(total, len(v.segments) * int(v.settings.get("passes", 1) or 1))
        if v.finished is None:  # a finished run's line says how many steps it took, and why it ended
            parts.append(f'<span title="steps decided, of the most this run can take (Max steps, or one per '
                         f'segment and pass); the progress line names the step under work">{v.steps_done} of '
                         f"{html.escape(str(total))} steps done</span>")
        a, b = v.initial_score.get("score", 0.0), (v.score or {}).get("score", 0.0)
        delta = ""
        if a:  # the search lowers the clipped score; perplexity (unclipped) usually follows, not always
            rel = (b - a) / a * 100
            delta = f' <b class="{"good" if rel < 0 else ("bad" if rel > 0 else "")}">({rel:+.1f}%)</b>'
        parts.append(f'<span title="clipped score: what the search lowers">score {a:.4f} → {b:.4f}{delta}</span>')
        parts.append(f"<span>perplexity {_ppl(v.initial_score.get('ppl'))} → {_ppl((v.score or {}).get('ppl'))}</span>")
    if v is not None and v.finished is not None:
        f = v.finished.filters or {}
        verdict = "passed" if f.get("passed") else "failed: " + "; ".join(f.get("reasons", [])[:2])
        parts.append(f"<span>filters {html.escape(verdict)}</span>")
    if model and scorer and scorer != model:
        parts.append(f'<span class="model">writer {html.escape(model)} · scorer {html.escape(scorer)}</span>')
    elif model:
        parts.append(f'<span class="model">{html.escape(model)}</span>')
    why_none = nothing_accepted(v) if v is not None and v.finished is not None else ""
    out = (f'<div class="reer-status" data-state="{html.escape(run["status"])}" data-run="{html.escape(run["id"])}" '
           f'data-steps="{v.steps_done if v else 0}">' + " · ".join(parts) + "</div>")
    if why_none:
        out += f'<div class="reer-why-none" data-why="none-accepted">{html.escape(why_none)}</div>'
    errs = ([error] if error else []) + (v.errors[-1:] if v else [])
    for msg in errs:
        out += f'<div class="reer-error" role="alert">{html.escape(msg)}</div>'
    return out


def nothing_accepted(v: ReerView) -> str:
    """Why a finished run took no rewrite, in words ("" when it took one, or took no step): the closest a
    candidate came to beating the current segment (the clipped score: lower is better)."""
    if v.accepted or not v.steps_done or not v.kept:
        return ""
    tried = [(b - c, step, b, c) for step, b, c in v.kept if b is not None and c is not None]
    bad = f" ({v.unusable} candidate{'s' if v.unusable != 1 else ''} could not be used)" if v.unusable else ""
    if not tried:
        return f"No rewrite was accepted: no candidate could be scored{bad}."
    _, step, b, c = min(tried)
    return (f"No rewrite was accepted: no candidate beat the current segment (closest: step {step}, best "
            f"{b:.4f} vs current {c:.4f}; lower is better){bad}. More steps or candidates, another seed, or a "
            "larger model give the search more chances.")


def trajectory_html(v: ReerView | None) -> str:
    if v is None or not v.segments:
        msg = "The trajectory appears here once the initial draft is written."
        return f'<div class="heat-empty">{html.escape(msg)}</div>'
    out = ['<div class="reer-traj">']
    for i, seg in enumerate(v.segments):
        cls = ["seg"]
        tag = ""
        if v.working == i:
            cls.append("work")
            tag = '<span class="tag work">under work</span>'
        elif i in v.changed:
            cls.append("changed")
            tag = '<span class="tag changed">rewritten</span>'
        out.append(f'<div class="{" ".join(cls)}" data-seg="{i}"><div class="n">{i + 1}{tag}</div>'
                   f'<div class="t">{html.escape(seg)}</div></div>')
    out.append("</div>")
    return "".join(out)


def candidates_html(v: ReerView | None) -> str:
    if v is None or v.step is None:
        return '<div class="heat-empty">Candidate rewrites of the segment under work appear here.</div>'
    before, before_score = (v.before or {}).get("ppl"), (v.before or {}).get("score")
    label = step_label(v.nth, v.step)
    head = (f'<div class="cands-head">{label[0].upper() + label[1:]} · segment {v.step_segment + 1} · before this '
            f'step: score '
            f"{before_score if before_score is None else format(before_score, '.4f')} · perplexity {_ppl(before)}</div>")
    cards = []
    for c in v.cards:
        s = c["score"]
        if c["text"] is None:
            change = f'<span class="chg bad">unparsable: {html.escape(c["error"] or "no rewrite")}</span>'
        elif s is None:
            change = '<span class="chg">scoring…</span>'
        else:  # coloured by the score change (what the search decides on); the perplexity change beside it
            d = s["ppl"] - before if before else 0.0
            ds = s["score"] - before_score if before_score is not None else 0.0
            cls = "good" if ds < 0 else "bad"
            change = (f'<span class="chg {cls}" title="clipped score: lower is better">score {s["score"]:.4f} '
                      f'({ds:+.4f})</span><span class="sc">ppl {_ppl(s["ppl"])} ({d:+.2f})</span>')
        badge = {"accepted": "accepted", "rejected": "rejected", "failed": "failed", "pending": "awaiting decision",
                 "stale": "stale: not acceptable"}
        body = html.escape(c["text"]) if c["text"] is not None else "<i>no usable rewrite</i>"
        cards.append(f'<div class="card {c["state"]}" data-index="{c["index"]}"><div class="top">'
                     f'<b>#{c["index"] + 1}</b><span class="badge">{badge[c["state"]]}</span>{change}</div>'
                     f'<div class="t">{body}</div></div>')
    if v.stale_by is not None:
        head += (f'<div class="cands-stale" role="status">Your edit of segment {v.stale_by + 1} made these '
                 "candidates stale: they were scored against the old text, so none of them can be accepted. "
                 "Run or Step writes new candidates for this step.</div>")
    if not cards:
        words = ("no candidates: the run ended before any was written" if v.finished is not None
                 else "generating candidates…")
        cards.append(f'<div class="heat-empty">{words}</div>')
    return head + '<div class="cands">' + "".join(cards) + "</div>"


def mark_editing(v: ReerView, segment: int) -> None:
    """`v` as it stands once a person's edit of `segment` is asked, before it is scored: candidates
    waiting on the step are stale from that moment (core.reer.search never decides on them)."""
    if any(c["state"] == "pending" for c in v.cards) and v.working is not None:
        v.stale_by = segment
        for c in v.cards:
            c["state"] = "stale" if c["state"] == "pending" else c["state"]


def shown_of(run_id: str | None, v: ReerView | None) -> dict | None:
    """What the page shows of a run, as the identities a person's command names (core.runs.controls.Shown):
    {"run", "step", "segment", "attempt", "cands": {index: text_hash} of the candidates awaiting a
    decision, "segments": [text_hash], "next": (step, segment) a Skip applies to}. None: no run."""
    if not run_id or v is None or not v.segments:
        return None
    waiting = {c["index"]: text_hash(c["text"]) for c in v.cards
               if c["state"] == "pending" and c["score"] is not None and v.working is not None}
    nxt_step = v.open_step if v.open_step is not None else v.last_step + 1  # as core.reer.state.next_step
    nxt_seg = v.working if v.working is not None else v.steps_done % len(v.segments)
    return {"run": run_id, "step": v.step, "segment": v.step_segment, "attempt": v.attempt, "cands": waiting,
            "segments": [text_hash(x) for x in v.segments], "next": (nxt_step, nxt_seg)}


def shown_candidate(shown: dict, index: int) -> Shown:
    """The identity of candidate `index` as `shown` (shown_of) had it on screen."""
    return Shown(shown["run"], shown["step"], shown["segment"], index, shown["attempt"],
                 shown["cands"].get(index, ""))


def shown_segment(shown: dict, segment: int, step: int | None = None) -> Shown:
    """The identity of segment `segment` as shown (an edit's; a skip's with its `step`)."""
    hashes = shown["segments"]
    return Shown(shown["run"], step or 0, segment, None, 0, hashes[segment] if 0 <= segment < len(hashes) else "")
