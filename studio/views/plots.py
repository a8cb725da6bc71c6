"""Plotly figures built from stored events (REER for now).

What it knows: how to draw a REER run's history as score (or perplexity) by step: the current
trajectory's path, every scored candidate (accepted ones filled green, rejected ones hollow
grey), a person's edits, and the stop threshold. The y axis fits the points (never below the
metric's floor: a clipped score is at least 0, a perplexity at least 1); the x axis spans the
run's step budget (`max_steps`) from the start, so a point's place says how far the run is: x is the
expansion's ordinal (a person's edit sits half a step before the next expansion), and the hover
texts name a step by that ordinal too, with its number in the record where that differs
(studio.views.reer.step_label; core.reer.state: every decision has a number of its own, so an edit's
is not the next expansion's; runs stored before gave them one number and plot the same). The
search accepts on the clipped score alone (core.reer.search: the lowest-scoring candidate, if
below the current score), so an accepted step whose perplexity rose is labelled as such.
What it does not know: the store, Gradio or how scores are computed; it reads `core.events`
only. Hover texts carry model output, so they are HTML-escaped (plotly renders a subset of HTML
in hovers).
"""
from __future__ import annotations

import html
import math
from typing import Sequence

import plotly.graph_objects as go

from core import events as ev
from studio.views.reer import step_label

METRICS = {"score": "score (clipped −mean log-prob, lower is better)", "ppl": "perplexity (lower is better)"}
ACCEPTED, REJECTED, PATH, EDIT = "#2e7d32", "#9aa4ae", "#3b5bdb", "#8e44ad"
FLOOR = {"score": 0.0, "ppl": 1.0}  # the least value each metric can take: the y axis never goes below it
SCORE_FULL = (0.0, 2.0)  # the clipped score's scale at the default clip (-2): the empty plot's y range


def _short(text: str | None, n: int = 90) -> str:
    t = " ".join((text or "").split())
    return html.escape(t if len(t) <= n else t[: n - 1] + "…")


def _val(score: dict, metric: str) -> float | None:
    v = score.get(metric) if score else None
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def message_figure(message: str, height: int = 330) -> go.Figure:
    """A blank plot that says what will appear in it (the R2 and Train pages' empty state)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=13, color="#666"))
    fig.update_layout(height=height, margin=dict(l=40, r=20, t=20, b=40), xaxis=dict(visible=False),
                      yaxis=dict(visible=False), plot_bgcolor="white", paper_bgcolor="white")
    return fig


def empty_figure(message: str = "Pick a prompt and press Run: every candidate will appear here.",
                 max_steps: int | None = None) -> go.Figure:
    """The plot before any point: the score's own scale (0..2) and, when known, the step budget."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 13, "color": "#6b7280"})
    _layout(fig, "score")
    fig.update_xaxes(**x_axis(max_steps or 3, 0))
    fig.update_yaxes(range=list(SCORE_FULL))
    return fig


def x_axis(max_steps: int | None, last: int) -> dict:
    """The x axis: from the initial draft (0) to the step budget, or further when the points go
    further (a run resumed with more steps); about ten ticks however long the budget."""
    end = max(int(max_steps or 0), last, 1)
    return {"range": [-0.4, end + 0.4], "dtick": max(1, math.ceil(end / 10))}


def y_range(values: Sequence[float | None], metric: str) -> list[float] | None:
    """The y axis fitted to `values` with a small margin, never below the metric's floor. None when
    there is nothing to fit."""
    ys = [float(y) for y in values if y is not None and math.isfinite(y)]
    if not ys:
        return None
    lo, hi = min(ys), max(ys)
    pad = max((hi - lo) * 0.12, abs(hi) * 0.02, 0.02)
    return [max(FLOOR[metric], lo - pad), hi + pad]


def rise_note(before: dict | None, after: dict | None, by: str) -> str:
    """Why an accepted step whose perplexity rose was still accepted ("" when perplexity did not rise)."""
    b_ppl, a_ppl = _val(before or {}, "ppl"), _val(after or {}, "ppl")
    b_s, a_s = _val(before or {}, "score"), _val(after or {}, "score")
    if None in (b_ppl, a_ppl, b_s, a_s) or a_ppl <= b_ppl:
        return ""
    if by == "human":
        return (f"accepted by you: perplexity rose {b_ppl:,.2f} → {a_ppl:,.2f} "
                f"(clipped score {b_s:.4f} → {a_s:.4f})")
    return (f"accepted on score: the clipped score fell {b_s:.4f} → {a_s:.4f} while perplexity rose "
            f"{b_ppl:,.2f} → {a_ppl:,.2f}. The search keeps the candidate with the lowest clipped score "
            "when it is below the current one; perplexity is unclipped, so one very unlikely token "
            "can raise it while most tokens got likelier")


def _layout(fig: go.Figure, metric: str) -> None:
    fig.update_layout(
        height=330, margin={"l": 56, "r": 12, "t": 26, "b": 40}, template="plotly_white",  # t: the toolbar's room
        legend={"orientation": "h", "y": -0.2, "yanchor": "top", "x": 0, "font": {"size": 11}},  # under the axis
        hovermode="closest", uirevision="reer",
    )
    fig.update_xaxes(title_text="step (0 = initial draft)", dtick=1, zeroline=False)
    fig.update_yaxes(title_text=METRICS[metric], title_font={"size": 11}, zeroline=False)


def reer_figure(events: Sequence[ev.Event], metric: str = "score", threshold: float | None = None) -> go.Figure:
    """Score (or perplexity) by step: path, candidates (accepted vs rejected), edits, threshold."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    path_x, path_y, path_t = [], [], []
    acc = {"x": [], "y": [], "t": []}
    rej = {"x": [], "y": [], "t": []}
    edits = {"x": [], "y": [], "t": []}
    texts: dict[tuple[int, int], str | None] = {}
    scored: dict[tuple[int, int], dict] = {}
    k_of: dict[int, int] = {}
    max_steps = None
    current: dict | None = None  # the trajectory's score before the event at hand
    rises: list[tuple[float, float | None, str]] = []  # (x, y, note) of accepted steps whose perplexity rose
    x_of: dict[int, int] = {}  # step number -> the expansion's ordinal (its x)
    seg_of: dict[int, int] = {}  # step number -> the segment it expanded (an edit closing it names another)
    done = 0  # expansions decided so far
    open_step = None  # the step whose candidates were started and not yet decided
    for e in events:
        if isinstance(e, ev.ReerStarted):
            max_steps = (e.settings or {}).get("max_steps")
            if threshold is None:
                threshold = (e.settings or {}).get("threshold")
        elif isinstance(e, ev.InitialDraft):
            path_x, path_y, path_t = [0], [_val(e.score, metric)], ["initial draft"]
            current = e.score
        elif isinstance(e, ev.SegmentStarted):
            for key in [k for k in scored if k[0] == e.step]:  # a redone step replaces its candidates
                scored.pop(key)
            x_of[e.step], seg_of[e.step], open_step = done + 1, e.segment, e.step
        elif isinstance(e, ev.CandidateGenerated):
            texts[(e.step, e.index)] = e.text
            k_of[e.step] = max(k_of.get(e.step, 0), e.index + 1)
        elif isinstance(e, ev.CandidateScored) and e.index >= 0:
            scored[(e.step, e.index)] = e.score
        elif isinstance(e, ev.SegmentDecided):
            y = _val(e.score, metric)
            note = rise_note(current, e.score, e.by) if e.action in ("accept", "force") else ""
            current = e.score
            x_now = done + 1  # the expansion under way, or next (an edit sits before it)
            if e.action == "edit":
                edits["x"].append(x_now - 0.5)
                edits["y"].append(y)
                edits["t"].append(f"your edit of segment {e.segment + 1}: {_short(e.text)}")
            closes = {e.step, open_step}  # an edit closes the open step: its candidates are stale, drawn as rejected
            for (step, idx), s in sorted(scored.items()):
                if step not in closes:
                    continue
                n = max(k_of.get(step, 1), 1)
                x = x_of.get(step, x_now) + (idx - (n - 1) / 2) * 0.12  # spread a step's candidates a little
                box = acc if (e.chosen == idx and e.action in ("accept", "force")) else rej
                box["x"].append(x)
                box["y"].append(_val(s, metric))
                why = f"<br><i>{html.escape(note)}</i>" if note and box is acc else ""
                box["t"].append(f"{step_label(x_of.get(step), step)} · segment {seg_of.get(step, e.segment) + 1} · "
                                f"candidate {idx + 1}<br>"
                                f"ppl {s.get('ppl', float('nan')):.3f} · score {s.get('score', float('nan')):.4f}"
                                f"{why}<br>{_short(texts.get((step, idx)))}")
            if open_step is not None and open_step != e.step:  # made stale by an edit: never awaiting a decision
                for key in [k for k in scored if k[0] == open_step]:
                    scored.pop(key)
            open_step = None
            path_x.append(x_now - 0.5 if e.action == "edit" else x_now)
            path_y.append(y)
            after = (f"after your edit of segment {e.segment + 1} (#{e.step} in the record)" if e.action == "edit"
                     else f"after {step_label(x_now, e.step)}: {e.action} ({e.by})")
            path_t.append(after + (f"<br><i>{html.escape(note)}</i>" if note else ""))
            if note:
                rises.append((x_now, y, note))
            done += e.action != "edit"
    # candidates of a step still awaiting its decision
    decided = {e.step for e in events if isinstance(e, ev.SegmentDecided) and e.action != "edit"}
    pending = {"x": [], "y": [], "t": []}
    for (step, idx), s in sorted(scored.items()):
        if step in decided:
            continue
        n = max(k_of.get(step, 1), 1)
        pending["x"].append(x_of.get(step, step) + (idx - (n - 1) / 2) * 0.12)
        pending["y"].append(_val(s, metric))
        pending["t"].append(f"{step_label(x_of.get(step), step)} · candidate {idx + 1} (awaiting decision)<br>"
                            f"{_short(texts.get((step, idx)))}")

    fig = go.Figure()
    hover = "%{text}<extra></extra>"
    if path_x:
        fig.add_trace(go.Scatter(x=path_x, y=path_y, text=path_t, mode="lines+markers", name="trajectory",
                                 line={"color": PATH, "width": 2.5}, marker={"size": 8, "color": PATH},
                                 hovertemplate=hover))
    fig.add_trace(go.Scatter(x=acc["x"], y=acc["y"], text=acc["t"], mode="markers", name="accepted candidate",
                             marker={"size": 12, "color": ACCEPTED, "symbol": "circle",
                                     "line": {"width": 1.5, "color": "#1b5e20"}}, hovertemplate=hover))
    fig.add_trace(go.Scatter(x=rej["x"], y=rej["y"], text=rej["t"], mode="markers", name="rejected candidate",
                             marker={"size": 10, "color": REJECTED, "symbol": "circle-open",
                                     "line": {"width": 2}}, hovertemplate=hover))
    if pending["x"]:
        fig.add_trace(go.Scatter(x=pending["x"], y=pending["y"], text=pending["t"], mode="markers",
                                 name="awaiting decision", marker={"size": 10, "color": "#f59f00",
                                                                   "symbol": "circle"}, hovertemplate=hover))
    if edits["x"]:
        fig.add_trace(go.Scatter(x=edits["x"], y=edits["y"], text=edits["t"], mode="markers", name="your edit",
                                 marker={"size": 12, "color": EDIT, "symbol": "diamond"}, hovertemplate=hover))
    _layout(fig, metric)
    ys = [y for y in path_y + acc["y"] + rej["y"] + pending["y"] + edits["y"] if y is not None]
    far = bool(ys) and threshold is not None and threshold < min(ys) - max(0.05, 0.5 * (max(ys) - min(ys)))
    if far and metric == "score":  # a line far below the points would squash them flat: name it instead
        fig.add_annotation(text=f"stop threshold {threshold:g} (below this view)", showarrow=False, x=1, y=0,
                           xref="paper", yref="paper", xanchor="right", yanchor="bottom",
                           font={"size": 10, "color": "#c92a2a"})
    elif threshold is not None and metric == "score":
        fig.add_hline(y=threshold, line={"dash": "dot", "color": "#c92a2a", "width": 1},
                      annotation_text=f"stop threshold {threshold:g}", annotation_position="bottom right",
                      annotation_font={"size": 10, "color": "#c92a2a"})
    if metric == "ppl":  # in the perplexity view a rise on an accepted step looks like a bug: say why
        for x, y, note in rises:
            if y is not None:
                fig.add_annotation(x=x, y=y, text="accepted on score" if note.startswith("accepted on") else
                                   "accepted by you", hovertext=html.escape(note), showarrow=True, arrowhead=0,
                                   ax=0, ay=-22, font={"size": 10, "color": "#8a5a00"})
    last = max([0] + [int(math.ceil(x)) for x in path_x + rej["x"] + acc["x"] + pending["x"] + edits["x"]])
    fig.update_xaxes(**x_axis(max_steps, last))
    shown = ys + ([threshold] if threshold is not None and metric == "score" and not far else [])
    fit = y_range(shown, metric)
    if fit:
        fig.update_yaxes(range=fit)
    return fig


def point_count(fig: go.Figure) -> int:
    """How many data points a figure shows (all traces): what a test watches grow."""
    return sum(len(t.x or ()) for t in fig.data)
