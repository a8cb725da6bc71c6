"""HTML for the REER page, built from a run's stored events and its runs row.

What it knows: how to show a run's status line, its current trajectory as numbered segments
(the one under work highlighted, changed ones marked), and the candidate cards of the latest
step with their perplexity change. What it does not know: Gradio, the store API or the search.
Every piece of model output and user text goes through `html.escape`.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

from core import events as ev

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
    step: int | None = None  # the latest step that produced candidates
    step_segment: int | None = None
    before: dict | None = None  # the trajectory's score when that step began
    cards: list[dict] = field(default_factory=list)  # {index, text, error, score, state}
    finished: ev.RunFinished | None = None
    errors: list[str] = field(default_factory=list)
    n_events: int = 0
    changed: set = field(default_factory=set)  # segment indices that differ from z0


def fold(events: Sequence[ev.Event]) -> ReerView:
    v = ReerView(n_events=len(events))
    cards: dict[int, dict] = {}
    for e in events:
        if isinstance(e, ev.RunStarted):
            v.query, v.reference, v.settings = e.query, e.reference, dict(e.settings or {})
        elif isinstance(e, ev.InitialDraft):
            v.initial, v.segments, v.initial_score, v.score = list(e.segments), list(e.segments), e.score, e.score
        elif isinstance(e, ev.SegmentStarted):
            v.working, v.step, v.step_segment, v.before, cards = e.segment, e.step, e.segment, v.score, {}
        elif isinstance(e, ev.CandidateGenerated) and e.step == v.step:
            cards[e.index] = {"index": e.index, "text": e.text, "error": e.error, "score": None, "state": "pending"}
        elif isinstance(e, ev.CandidateScored) and e.step == v.step and e.index in cards:
            cards[e.index]["score"] = e.score
        elif isinstance(e, ev.SegmentDecided):
            v.segments, v.score = list(e.segments), e.score
            if e.action != "edit":
                v.steps_done += 1
                v.working = None
                if e.step == v.step:
                    for k, c in cards.items():
                        c["state"] = "accepted" if (e.chosen == k and e.action in ("accept", "force")) else (
                            "failed" if c["text"] is None else "rejected")
        elif isinstance(e, ev.RunFinished):
            v.finished, v.working = e, None
            if e.segments:
                v.segments, v.score = list(e.segments), e.score or v.score
        elif isinstance(e, ev.RunError):
            v.errors.append(f"{e.where or 'error'}: {e.message}")
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


def status_html(run: dict | None, v: ReerView | None, driving: bool, error: str | None = None,
                model: str = "", scorer: str = "") -> str:
    """One line: run id, state, step, current vs initial perplexity, the model (as "writer X · scorer Y"
    when another model scores), and any error."""
    if run is None:
        return ('<div class="reer-status idle" data-state="idle">No run yet: pick a prompt, check the settings '
                "and press <b>Run</b> (or <b>Step</b> for one expansion at a time).</div>")
    state = run["status"]
    if state == "running" and not driving and v is not None and not v.finished:
        state_txt = "running (driven by another process)" if not error else "interrupted"
    elif state == "running" and v is not None and v.initial_score is None:
        state_txt = "writing the initial draft…"
    elif state == "running":
        state_txt = (f"expanding segment {v.working + 1}…" if v and v.working is not None else "running…")
    elif state == "paused" and v is not None and v.working is not None and any(
            c["state"] == "pending" and c["score"] is not None for c in v.cards):
        state_txt = ("paused: the candidates await your decision: accept one, skip the segment, "
                     "or Run / Step to let the search decide")
    elif state == "paused":
        state_txt = "paused: Run to continue, Step for one expansion, or edit a segment"
    elif state in ("finished", "stopped"):
        state_txt = end_text(run.get("finish_reason") or "", v)
    else:
        state_txt = state
    parts = [f'<span class="rid" title="run id">run {html.escape(run["id"][:8])}</span>',
             f'<span class="state">{html.escape(state_txt)}</span>']
    if v is not None and v.initial_score:
        max_steps = v.settings.get("max_steps", "?")
        parts.append(f"<span>step {v.steps_done}/{html.escape(str(max_steps))}</span>")
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
    out = (f'<div class="reer-status" data-state="{html.escape(run["status"])}" data-run="{html.escape(run["id"])}" '
           f'data-steps="{v.steps_done if v else 0}">' + " · ".join(parts) + "</div>")
    errs = ([error] if error else []) + (v.errors[-1:] if v else [])
    for msg in errs:
        out += f'<div class="reer-error" role="alert">{html.escape(msg)}</div>'
    return out


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
    head = (f'<div class="cands-head">Step {v.step} · segment {v.step_segment + 1} · before this step: score '
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
        badge = {"accepted": "accepted", "rejected": "rejected", "failed": "failed", "pending": "awaiting decision"}
        body = html.escape(c["text"]) if c["text"] is not None else "<i>no usable rewrite</i>"
        cards.append(f'<div class="card {c["state"]}" data-index="{c["index"]}"><div class="top">'
                     f'<b>#{c["index"] + 1}</b><span class="badge">{badge[c["state"]]}</span>{change}</div>'
                     f'<div class="t">{body}</div></div>')
    if not cards:
        cards.append('<div class="heat-empty">generating candidates…</div>')
    return head + '<div class="cands">' + "".join(cards) + "</div>"
