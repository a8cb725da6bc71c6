"""What the Review page draws of curated trajectories: table rows, the detail blocks and the
summary figure of the collection.

Knows: the shape of core.data.curation's rows (list_trajectories / show: current version applied,
`source`, `versions`, `prompt`, `run`, the scores by scale `reer_score` / `judge_score`) and how to
turn them into plain table cells, HTML blocks (every text that came from a model, a file or a
person is HTML-escaped here) and one Plotly figure (REER score and judge score distributions by
source, each in its own panel titled with its direction, status counts, perplexity initial vs final).
REER's score (lower is better) and the judge's (higher is better) never share a column, an axis
or a label.
Does not know: Gradio, the store, or how trajectories are made or exported.
"""
from __future__ import annotations

import html
import math
from collections import Counter

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.data.curation import judge_score, reer_score, score_scale

HEADERS = ("id", "status", "source", "query", "REER score ↓", "judge score ↑", "ppl initial → final", "thinking",
           "rating", "tags", "ver.")
COLUMN_WIDTHS = ("5%", "8%", "8%", "30%", "7%", "7%", "11%", "8%", "6%", "6%", "4%")
REER_TITLE = "REER score by source (lower is better)"
JUDGE_TITLE = "judge score by source (higher is better)"
STATUS_COLOURS = {"pending": "#f59f00", "accepted": "#2e7d32", "rejected": "#c62828"}
SOURCE_COLOURS = ("#3b5bdb", "#8e44ad", "#0b7285", "#e8590c", "#5c940d", "#862e9c")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _cut(s: str, n: int) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _ppl(x) -> str:
    return f"{x:,.2f}" if _num(x) else "–"


def row_cells(row: dict, query: str) -> list:
    """One table row (HEADERS) of a list_trajectories row; plain text cells (Gradio escapes them)."""
    ppl = (f"{_ppl(row.get('initial_ppl'))} → {_ppl(row.get('final_ppl'))}"
           if _num(row.get("initial_ppl")) or _num(row.get("final_ppl")) else "")
    reer = f"{row['reer_score']:.3f}" if _num(row.get("reer_score")) else ""
    judge = f"{row['judge_score']:g}" if _num(row.get("judge_score")) else ""
    return [row["id"], row["status"], row["source"], _cut(query, 110), reer, judge, ppl,
            f"{len(row.get('thinking') or ''):,} ch", row.get("rating") or "", ", ".join(row.get("tags") or []),
            row.get("version", 0)]


def _text_block(title: str, text: str, cls: str = "") -> str:
    return (f'<div class="rv-block {cls}"><div class="rv-title">{html.escape(title)}</div>'
            f'<div class="rv-text">{html.escape(text or "")}</div></div>')


def reference_html(t: dict) -> str:
    """The query and the reference answer of a trajectory's prompt (escaped)."""
    p = t.get("prompt") or {}
    query = p.get("query") or (t.get("details") or {}).get("query") or ""
    ref = p.get("reference") or ""
    pending = ' <span class="rv-warn">(query not written yet)</span>' if p.get("query_pending") else ""
    return ('<div class="rv-ref">'
            f'<div class="rv-block"><div class="rv-title">Query (x){pending}</div>'
            f'<div class="rv-text">{html.escape(query)}</div></div>'
            + _text_block(f"Reference (y) · {len(ref.split()):,} words", ref, "ref") + "</div>")


def _chip(label: str, value: str, cls: str = "") -> str:
    return f'<span class="rv-chip {cls}"><em>{html.escape(label)}</em> {html.escape(value)}</span>'


def header_html(t: dict) -> str:
    """The selected trajectory's id, status, source, model, scores, filter flags, rating, tags, notes."""
    if not t:
        return '<div class="rv-empty">Click a row of the table (or type its id) to open a trajectory.</div>'
    run = t.get("run") or {}
    chips = [_chip("source", str(t.get("source"))), _chip("model", str(run.get("model") or "unknown"))]
    judged = score_scale(t) == "judge"
    first, last = (judge_score(t, "initial"), judge_score(t)) if judged else (reer_score(t, "initial"), reer_score(t))
    name, fmt = ("judge score ↑", "{:g}") if judged else ("REER score ↓", "{:.3f}")
    if _num(first) or _num(last):
        chips.append(_chip(name, " → ".join(fmt.format(x) for x in (first, last) if _num(x))))
    if _num(t.get("initial_ppl")) or _num(t.get("final_ppl")):
        chips.append(_chip("ppl", " → ".join(f"{t[k]:,.2f}" for k in ("initial_ppl", "final_ppl") if _num(t.get(k)))))
    rounds = (t.get("details") or {}).get("rounds")
    if isinstance(rounds, list) and rounds:
        overall = [r.get("judgment", {}).get("overall") for r in rounds if isinstance(r, dict)
                   and isinstance(r.get("judgment"), dict)]
        overall = [o for o in overall if _num(o)]
        chips.append(_chip("R2 rounds", str(len(rounds))))
        if overall:
            chips.append(_chip("judged", " → ".join(f"{o:g}" for o in overall)))
    flt = t.get("filters") if isinstance(t.get("filters"), dict) else None
    if flt is None:
        chips.append(_chip("filters", "not run"))
    elif flt.get("passed"):
        chips.append(_chip("filters", "passed", "good"))
    else:
        chips.append(_chip("filters", "failed", "bad"))
    chips.append(_chip("rating", f"{t['rating']}/5" if t.get("rating") else "none"))
    chips.append(_chip("version", str(t.get("version", 0))))
    tags = "".join(f'<span class="rv-tag">{html.escape(x)}</span>' for x in t.get("tags") or [])
    reasons = ""
    if flt and flt.get("reasons"):
        reasons = ('<ul class="rv-reasons">' + "".join(f"<li>{html.escape(str(r))}</li>" for r in flt["reasons"])
                   + "</ul>")
    notes = f'<div class="rv-notes">{html.escape(t["notes"])}</div>' if t.get("notes") else ""
    status = t.get("status", "pending")
    return (f'<div class="rv-head" data-id="{t["id"]}" data-status="{html.escape(status)}" '
            f'data-version="{t.get("version", 0)}">'
            f'<span class="rv-id">#{t["id"]}</span><span class="rv-status {html.escape(status)}">'
            f'{html.escape(status)}</span>{"".join(chips)}{tags}{reasons}{notes}</div>')


def versions_html(t: dict) -> str:
    """The version history: the original (0) and each human edit, newest last; the current one marked."""
    if not t:
        return ""
    cur = t.get("version", 0)
    rows = [(0, "original", t.get("created_at") or "", "", len(t.get("original_thinking") or ""),
             len(t.get("original_answer") or ""))]
    rows += [(v["version"], v.get("author") or "", v.get("created_at") or "", v.get("note") or "",
              len(v["thinking"]), len(v["answer"])) for v in t.get("versions") or []]
    items = "".join(
        f'<li class="{"current" if n == cur else ""}" data-version="{n}"><b>v{n}</b> {html.escape(who)} · '
        f'{html.escape(str(when)[:19].replace("T", " "))} · thinking {nt:,} ch · answer {na:,} ch'
        f'{" · " + html.escape(note) if note else ""}{" · <i>current</i>" if n == cur else ""}</li>'
        for n, who, when, note, nt, na in rows)
    return f'<div class="rv-versions"><div class="rv-title">Versions</div><ol>{items}</ol></div>'


SCALE_AXES = {"reer_score": (0.0, 2.0, 0.05), "judge_score": (1.0, 10.0, 0.5)}  # usual range and bin width


def _histograms(fig: go.Figure, rows: list[dict], key: str, col: int, colour: dict, shown: set) -> bool:
    """One histogram per source of `key` (reer_score or judge_score) in panel `col`, over the
    scale's usual range (wider when a score falls outside it); False when there is none."""
    lo, hi, width = SCALE_AXES[key]
    every = [r[key] for r in rows if _num(r.get(key))]
    if every:
        fig.update_xaxes(range=[min(lo, min(every)) - width, max(hi, max(every)) + width], row=1, col=col)
    for s in colour:
        xs = [r[key] for r in rows if r["source"] == s and _num(r.get(key))]
        if xs:
            fig.add_trace(go.Histogram(x=xs, name=s, marker_color=colour[s], opacity=0.75,
                                       xbins={"size": width},
                                       legendgroup=s, showlegend=s not in shown, meta={"scale": key},
                                       hovertemplate=f"{html.escape(s)}: %{{y}} in %{{x}}<extra></extra>"),
                          row=1, col=col)
            shown.add(s)
    return bool(every)


def summary_figure(rows: list[dict], title_n: int | None = None) -> go.Figure:
    """Four panels over `rows` (list_trajectories rows): the REER score histogram by source (lower
    is better), the judge score histogram by source (higher is better), review status counts, and
    perplexity initial vs final (points under the diagonal improved)."""
    fig = make_subplots(rows=1, cols=4, column_widths=[0.27, 0.27, 0.16, 0.30], horizontal_spacing=0.06,
                        subplot_titles=(REER_TITLE, JUDGE_TITLE, "review status", "perplexity: initial vs final"))
    fig.update_annotations(font_size=12)  # the panel titles
    sources = sorted({r["source"] for r in rows})
    colour = {s: SOURCE_COLOURS[i % len(SOURCE_COLOURS)] for i, s in enumerate(sources)}
    shown: set = set()
    any_reer = _histograms(fig, rows, "reer_score", 1, colour, shown)
    any_judge = _histograms(fig, rows, "judge_score", 2, colour, shown)
    counts = Counter(r["status"] for r in rows)
    order = ["pending", "accepted", "rejected"]
    fig.add_trace(go.Bar(x=order, y=[counts.get(s, 0) for s in order], marker_color=[STATUS_COLOURS[s] for s in order],
                         text=[counts.get(s, 0) for s in order], textposition="auto", showlegend=False,
                         name="status", hovertemplate="%{x}: %{y}<extra></extra>"), row=1, col=3)
    pts = [r for r in rows if _num(r.get("initial_ppl")) and _num(r.get("final_ppl"))]
    for s in sources:
        mine = [r for r in pts if r["source"] == s]
        if mine:
            fig.add_trace(go.Scatter(
                x=[r["initial_ppl"] for r in mine], y=[r["final_ppl"] for r in mine], mode="markers", name=s,
                legendgroup=s, showlegend=s not in shown,
                marker={"size": 9, "color": colour[s], "line": {"width": 1, "color": "#fff"}},
                text=[f"#{r['id']} · {html.escape(r['status'])}" for r in mine],
                hovertemplate="%{text}<br>ppl %{x:.2f} → %{y:.2f}<extra></extra>"), row=1, col=4)
            shown.add(s)
    if pts:
        lo = min(min(r["initial_ppl"], r["final_ppl"]) for r in pts)
        hi = max(max(r["initial_ppl"], r["final_ppl"]) for r in pts)
        pad = (hi - lo) * 0.08 or 0.5
        fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", showlegend=False,
                                 line={"dash": "dot", "color": "#9aa4ae", "width": 1}, hoverinfo="skip",
                                 name="no change"), row=1, col=4)
    for col, ok, msg in ((1, any_reer, "no REER scores yet"), (2, any_judge, "no judge scores yet"),
                         (4, bool(pts), "no perplexities yet")):
        if not ok:
            x0, x1 = fig.layout[f"xaxis{col if col > 1 else ''}"].domain  # paper coordinates: the browser
            fig.add_annotation(text=msg, showarrow=False, x=(x0 + x1) / 2, y=0.5, xref="paper", yref="paper",
                               font={"size": 12, "color": "#6b7280"})  # drew axis-domain refs in panel 3
    n = len(rows) if title_n is None else title_n
    fig.update_layout(height=300, margin={"l": 44, "r": 12, "t": 40, "b": 36}, template="plotly_white",
                      barmode="overlay", bargap=0.05, font={"size": 11},  # t: room for titles and the toolbar
                      legend={"orientation": "h", "y": -0.3, "yanchor": "top", "x": 0, "font": {"size": 11}},
                      meta={"trajectories": n})
    fig.update_xaxes(title_text="REER score (0–2) ↓ better", row=1, col=1, title_font={"size": 10})
    fig.update_xaxes(title_text="judge score ↑ better", row=1, col=2, title_font={"size": 10})
    fig.update_xaxes(title_text="initial ppl", row=1, col=4, title_font={"size": 10})
    fig.update_yaxes(title_text="final ppl", row=1, col=4, title_font={"size": 10})
    return fig
