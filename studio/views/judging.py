"""What the Judge tab draws: a task (the prompt and the draft), the keyboard legend of judging, the
progress tables, the agreement tables, the high-disagreement list, the calibration table and its
scatter plots (plotly).

Knows: the shapes core.judging returns (queue.Task as a dict, queue.progress, agreement.report and
disagreements, calibration.report), and the judging keymap (JUDGE_KEYS, bound by assets/keys.js
through the legend, as Review's focus mode is: studio.views.focus). Every text that came from a
model, a file or a person is HTML-escaped here, hover texts included.

Does not know: Gradio, the store, or who may see which scores (the page asks core.judging.queue,
which raises ScoresHidden; this module draws only what it is given).
"""
from __future__ import annotations

import html
import random
from collections.abc import Sequence

import plotly.graph_objects as go

from studio.views.focus import Shortcut, legend_html

SCORE_ROWS = "#judge-scores .jd-crit"  # the criteria's score rows, in order (keys.js moves among them)
STAMP_SELECTOR = "#judge-task [data-pk-stamp]"  # changes on every redraw of the task
JUDGE_KEYS = (
    Shortcut(("1", "2", "3", "4", "5"), "score the marked criterion, then mark the next", "score", SCORE_ROWS),
    Shortcut(("Tab", "ArrowDown"), "mark the next criterion", "move", SCORE_ROWS, step=1),
    Shortcut(("ArrowUp",), "mark the previous criterion (Shift+Tab too)", "move", SCORE_ROWS, step=-1),
    Shortcut(("Enter",), "submit this judgment, then the next task", "click", "#judge-submit"),
    Shortcut(("s",), "skip: give the task back, then the next one", "click", "#judge-skip"),
    Shortcut(("n",), "write a note (Esc leaves the box)", "focus", "#judge-note textarea, #judge-note input"),
)
STYLE = """<style>
.jd-task { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: 10px; }
.jd-task .rv-text { max-height: 420px; overflow-y: auto; }
.jd-meta { font-size: 0.84rem; color: var(--body-text-color-subdued); margin-bottom: 6px; }
.jd-table { border-collapse: collapse; font-size: 0.86rem; margin: 4px 0 12px; width: auto; min-width: 60%; }
.jd-table th, .jd-table td { border: none !important; border-bottom: 1px solid var(--border-color-primary) !important;
  padding: 4px 12px !important; text-align: left; vertical-align: top; }
.jd-table th { font-weight: 600; background: var(--background-fill-secondary); }
.jd-table td.num, .jd-table th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.jd-table caption { text-align: left; font-weight: 600; font-size: 0.86rem; padding: 4px 0; }
.jd-low { color: #8a1c14; } .jd-ok { color: #2e7d32; }
</style>"""


def _e(x) -> str:
    return html.escape(str(x))


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def legend() -> str:
    """The judging legend: the keymap keys.js follows while the Judge tab is open."""
    return STYLE + legend_html(JUDGE_KEYS, STAMP_SELECTOR)


def task_html(task: dict | None, stamp: int, why: str = "") -> str:
    """The task (query, the draft's thinking if any, the draft), all escaped; `why` when there is none."""
    if task is None:
        return (f'<div data-pk-stamp="{int(stamp)}" data-item=""><div class="rv-empty fx-empty">'
                f'{_e(why or "No task open.")}</div></div>')
    thinking = (f'<div class="rv-block"><div class="rv-title">Thinking shown with the draft</div>'
                f'<div class="rv-text">{_e(task["thinking"])}</div></div>') if task.get("thinking") else ""
    words = len((task.get("text") or "").split())
    return (f'<div data-pk-stamp="{int(stamp)}" data-item="{int(task["item_id"])}">'
            f'<div class="jd-meta">Queue <b>{_e(task["queue"])}</b> · item #{int(task["item_id"])} · '
            f'{_e(task["ref"])} · scale {task["low"]:g}–{task["high"]:g}</div><div class="jd-task">'
            f'<div class="rv-block"><div class="rv-title">Prompt</div><div class="rv-text">{_e(task["query"])}</div>'
            f'</div><div><div class="rv-block"><div class="rv-title">Draft · {words:,} words</div>'
            f'<div class="rv-text">{_e(task["text"])}</div></div>{thinking}</div></div></div>')


def table_html(head: Sequence[str], rows: Sequence[Sequence], caption: str = "", num: Sequence[int] = ()) -> str:
    """A small escaped table; columns in `num` are right-aligned figures."""
    cls = lambda i: ' class="num"' if i in num else ""  # noqa: E731
    th = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<table class="jd-table">{cap}<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def progress_html(progs: Sequence[dict], waiting: Sequence[str]) -> str:
    """Per queue (items, judgments of needed, complete, open tasks) and per annotator, and the R2
    runs waiting for a person."""
    if not progs:
        out = '<div class="rv-empty">No judging queue yet: make one under "New queue".</div>'
    else:
        out = table_html(["queue", "items", "overlap", "judgments", "complete items", "open tasks", "done"],
                         [[p["queue"], p["items"], p["overlap"], f"{p['judgments']} of {p['needed']}", p["complete"],
                           p["open_tasks"], f"{p['percent']:g}%"] for p in progs],
                         "Progress per queue", num=(1, 2, 3, 4, 5, 6))
        rows = [[p["queue"], name, a["judged"], a["open"]]
                for p in progs for name, a in sorted(p["annotators"].items())]
        out += (table_html(["queue", "annotator", "judged", "holding"], rows, "Progress per annotator", num=(2, 3))
                if rows else '<div class="jd-meta">Nobody has judged yet.</div>')
    wait = (table_html(["R2 text waiting for a person's judgment"], [[w] for w in waiting],
                       "R2 runs waiting (add them to a queue with “R2 runs waiting for a person”)")
            if waiting else '<div class="jd-meta">No R2 run is waiting for a person.</div>')
    return STYLE + out + wait


def _short(text: str, n: int = 70) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[:n - 1] + "…"


def agreement_html(rep: dict, counts: dict[str, int]) -> str:
    """Alpha per criterion and overall, pooled pairwise agreement, and judgments per annotator."""
    rows = []
    for r in rep["criteria"] + [rep["overall"]]:
        rows.append([_short(r["criterion"]), _fmt(r["alpha"]) if r["alpha"] is not None else f"– ({r['why']})",
                     _fmt(r["exact"], 2), _fmt(r["within1"], 2), r["units"]])
    out = table_html(["criterion", "Krippendorff's alpha (ordinal)", "exact", "within ±1", "items"], rows,
                     f"Queue {rep['queue']}: {len(rep['annotators'])} annotator(s), {rep['items']} judged item(s)",
                     num=(1, 2, 3, 4))
    out += ('<div class="jd-meta" id="agreement-explained">“exact”: the share of pairs of people who gave the '
            "same score; “within ±1”: who differed by one point or less. The overall score is the mean of a "
            "person's criterion scores when they give none (the Judge form), so it is seldom a whole number: "
            "exact agreement on it can be 0.00 while within ±1 is 1.00 — read within ±1 and alpha there.</div>")
    pairs = [[f"{p['a']} · {p['b']}", p["n"], _fmt(p["exact"], 2), _fmt(p["within1"], 2)]
             for p in rep["overall"]["pairs"]]
    if pairs:
        out += table_html(["pair", "items both judged", "exact", "within ±1"], pairs,
                          "Pairwise agreement on the overall score", num=(1, 2, 3))
    out += table_html(["annotator", "judgments"], sorted(counts.items()), "Judgments per annotator", num=(1,))
    return STYLE + f'<div id="agreement-report" data-queue="{_e(rep["queue"])}">{out}</div>'


def disagreements_html(rows: Sequence[dict]) -> str:
    if not rows:
        return STYLE + '<div class="jd-meta">No item with a wide disagreement (a third of the scale or more).</div>'
    body = [[f"#{r['item_id']}", r["ref"], f"{r['spread']:g}",
             f"{_short(r['worst'][0], 40)} (spread {r['worst'][1]:g})",
             ", ".join(f"{a} {v:g}" for a, v in sorted(r["scores"].items())),
             "; ".join((f"{x['resolver']}: {x['overall']:g}" if x["overall"] is not None else f"{x['resolver']}")
                       + (f" “{_short(x['note'], 50)}”" if x["note"] else "") for x in r["resolutions"]) or "open"]
            for r in rows]
    return STYLE + table_html(["item", "draft", "spread", "widest criterion", "scores", "resolution"], body,
                              "Items people disagree on, widest first", num=(2,))


def _ci(ci) -> str:
    return "–" if not ci or ci[0] is None else f"{ci[0]:.2f} to {ci[1]:.2f}"


def calibration_html(rep: dict) -> str:
    rows = [[_short(r["criterion"]), r["n"], _fmt(r["spearman"]), _ci(r.get("spearman_ci")), _fmt(r["kendall"]),
             _ci(r.get("kendall_ci")), "–" if r["bias"] is None else f"{r['bias']:+.2f}"]
            for r in rep["criteria"] + [rep["overall"]]]
    note = (f"{rep['judged_by_model']} draft(s) judged by the model, {rep['unparsed']} unparsed; "
            f"compared with the people's {rep['consensus']}. Intervals: 95%, bootstrap over drafts.")
    return STYLE + (f'<div id="calibration-report" data-model="{_e(rep["model"])}">'
                    + table_html(["criterion", "n", "Spearman", "95% interval", "Kendall tau-b", "95% interval",
                                  "bias (model − people)"], rows,
                                 f"{rep['model']} on queue {rep['queue']}", num=(1, 2, 3, 4, 5, 6))
                    + f'<div class="jd-meta">{_e(note)}</div></div>')


def scatter(rep: dict, low: float, high: float, seed: int = 0) -> go.Figure:
    """One panel per criterion (and overall): the model's score against the people's median, jittered
    (±0.15, seeded: a redraw shows the same picture) so equal pairs stay visible, with the line y = x."""
    from plotly.subplots import make_subplots

    rows = rep["criteria"] + [rep["overall"]]
    cols = min(3, len(rows))
    n_rows = (len(rows) + cols - 1) // cols
    titles = [f"{i + 1}. {_short(r['criterion'], 34)}" if i < len(rows) - 1 else "overall" for i, r in enumerate(rows)]
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=[html.escape(t) for t in titles],
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    rnd = random.Random(seed)
    for i, r in enumerate(rows):
        row, col = i // cols + 1, i % cols + 1
        pts = r["points"]
        fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", line=dict(color="#9aa4ae", dash="dot"),
                                 hoverinfo="skip", showlegend=False), row=row, col=col)
        fig.add_trace(go.Scatter(
            x=[p[0] + rnd.uniform(-0.15, 0.15) for p in pts], y=[p[1] + rnd.uniform(-0.15, 0.15) for p in pts],
            mode="markers", marker=dict(color="#3b5bdb", size=8, opacity=0.75), showlegend=False,
            text=[f"item #{p[2]}: people {p[0]:g}, model {p[1]:g}" for p in pts], hoverinfo="text"), row=row, col=col)
        fig.update_xaxes(range=[low - 0.5, high + 0.5], title_text="people (median)", row=row, col=col,
                         title_font_size=11)
        fig.update_yaxes(range=[low - 0.5, high + 0.5], title_text="model", row=row, col=col, title_font_size=11)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=280 * n_rows, margin=dict(l=40, r=10, t=40, b=40), template="plotly_white",
                      title=dict(text=html.escape(f"{rep['model']} vs people · queue {rep['queue']}"), font_size=13))
    return fig


def empty_figure(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=html.escape(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(height=220, xaxis_visible=False, yaxis_visible=False, template="plotly_white",
                      margin=dict(l=10, r=10, t=10, b=10))
    return fig
