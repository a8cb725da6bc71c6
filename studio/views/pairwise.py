"""What the Judge tab draws for pairwise queues: two drafts side by side under the prompt, the
pairwise keymap as its legend, and the Ranking view (a table and a plotly chart of Bradley-Terry
strengths with their 95% intervals).

Knows: the shapes core.judging returns (pairwise.PairTask as a dict, ranking.ranking) and the
pairwise keymap (PAIR_KEYS, bound by assets/keys.js through the legend, as studio.views.judging's).
Every text that came from a model, a file or a person is HTML-escaped here, hover texts included.

Does not know: Gradio, the store, or who may see which judgments (the page asks core.judging).
"""
from __future__ import annotations

import html

import plotly.graph_objects as go

from studio.views.focus import Shortcut, legend_html
from studio.views.judging import STAMP_SELECTOR, STYLE, table_html

PAIR_KEYS = (
    Shortcut(("ArrowLeft",), "the first (left) draft is better, then the next pair", "click", "#judge-first"),
    Shortcut(("ArrowRight",), "the second (right) draft is better, then the next pair", "click", "#judge-second"),
    Shortcut(("t",), "a tie: neither is better, then the next pair", "click", "#judge-tie"),
    Shortcut(("s",), "skip: give the pair back, then the next one", "click", "#judge-skip"),
    Shortcut(("n",), "write a note (Esc leaves the box)", "focus", "#judge-note textarea, #judge-note input"),
)
PAIR_STYLE = """<style>
.jd-pair { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 10px; margin-top: 8px; }
.jd-pair .rv-text { max-height: 460px; overflow-y: auto; }
</style>"""


def _e(x) -> str:
    return html.escape(str(x))


def legend() -> str:
    """The pairwise legend: the keymap keys.js follows while a pair is on screen."""
    return STYLE + legend_html(PAIR_KEYS, STAMP_SELECTOR)


def _side(title: str, d: dict) -> str:
    words = len((d.get("text") or "").split())
    thinking = (f'<div class="rv-block"><div class="rv-title">Thinking shown with it</div>'
                f'<div class="rv-text">{_e(d["thinking"])}</div></div>') if d.get("thinking") else ""
    return (f'<div><div class="rv-block"><div class="rv-title">{_e(title)} · {words:,} words</div>'
            f'<div class="rv-text">{_e(d["text"])}</div></div>{thinking}</div>')


def pair_html(task: dict, stamp: int) -> str:
    """The prompt, then the first draft (left) and the second (right); which draft is which is not
    shown (refs and sources stay hidden so they cannot sway the choice)."""
    return (f'{PAIR_STYLE}<div data-pk-stamp="{int(stamp)}" data-item="{int(task["item_id"])}" data-pair="1">'
            f'<div class="jd-meta">Queue <b>{_e(task["queue"])}</b> · pair #{int(task["item_id"])} · '
            f'{_e(task["criterion"])}</div>'
            f'<div class="rv-block"><div class="rv-title">Prompt</div><div class="rv-text">{_e(task["query"])}</div></div>'
            f'<div class="jd-pair">{_side("First (←)", task["first"])}{_side("Second (→)", task["second"])}</div></div>')


def ranking_html(rep: dict, limited: bool = False) -> str:
    """The ranking table: rank, draft or source, strength with its interval, wins, losses, ties."""
    if not rep["rows"]:
        return STYLE + '<div class="rv-empty" id="ranking-report">No pairwise judgments to rank yet.</div>'
    rows = [[r["rank"], r["key"], f"{r['strength']:+.2f}", f"{r['low']:+.2f} to {r['high']:+.2f}", r["wins"],
             r["losses"], r["ties"], r["judgments"]] for r in rep["rows"]]
    cap = (f"Queue {rep['queue']} by {rep['by']}: {rep['judgments']} judgment(s), Bradley-Terry log-strength "
           f"(mean 0), 95% bootstrap interval over judgments ({rep['resamples']} resamples, seed {rep['seed']})")
    note = ("A tie counts as half a win for each side. The chance that A beats B is 1 / (1 + e^(B − A)). "
            + ("Only the pairs you have judged are counted: others' choices stay hidden until you judge them "
               "(a lead sees all)." if limited else ""))
    return (STYLE + f'<div id="ranking-report" data-queue="{_e(rep["queue"])}">'
            + table_html(["rank", rep["by"], "strength", "95% interval", "won", "lost", "tied", "judgments"], rows,
                         cap, num=(0, 2, 3, 4, 5, 6, 7))
            + f'<div class="jd-meta">{_e(note)}</div></div>')


def ranking_figure(rep: dict) -> go.Figure:
    """Strengths as points with their 95% intervals as error bars, strongest on top."""
    rows = list(reversed(rep["rows"]))
    fig = go.Figure(go.Scatter(
        x=[r["strength"] for r in rows], y=[r["key"] for r in rows], mode="markers",
        error_x=dict(type="data", symmetric=False, array=[r["high"] - r["strength"] for r in rows],
                     arrayminus=[r["strength"] - r["low"] for r in rows]),
        hovertext=[_e(f"{r['key']}: {r['strength']:+.2f} ({r['low']:+.2f} to {r['high']:+.2f}); {r['wins']} won, "
                      f"{r['losses']} lost, {r['ties']} tied") for r in rows], hoverinfo="text", name="strength"))
    fig.update_layout(height=max(220, 40 * len(rows) + 100), margin=dict(l=10, r=10, t=30, b=40),
                      xaxis_title="Bradley-Terry log-strength (95% interval)", showlegend=False,
                      title=dict(text=f"Ranking by {rep['by']}", font=dict(size=13)))
    fig.update_yaxes(type="category")
    return fig
