"""Drawing an R2 run from its stored events: the status line, the rounds (draft, judgment,
reflection, revision, reward) and the plot of judged scores by round with the reward components.

Pure functions of the events (folded by core.r2.state) returning HTML strings or Plotly
figures; every piece of model or person text is HTML-escaped here. Knows nothing of Gradio,
threads or the store.
"""
from __future__ import annotations

import html
from typing import Sequence

import plotly.graph_objects as go

from core import events as ev
from core.r2.state import R2State, record_from_events
from studio.views.plots import message_figure

# a run's finish_reason in words (menus, the status line, the last card); never the raw code
REASONS = {"threshold": "the score reached the threshold", "max_rounds": "all rounds done",
           "no_improvement": "a revision did not improve", "stopped": "stopped by you",
           "dropped": "dropped: the first draft was empty"}
REWARD_PARTS = ("improvement", "redundancy", "circularity", "length")
_E = html.escape


def _num(x) -> str:
    return "—" if x is None else (f"{x:g}" if isinstance(x, (int, float)) else _E(str(x)))


def status_html(run: dict | None, events: Sequence[ev.Event], driving: bool, error: str | None = None) -> str:
    """One line: run id, what it is doing or waiting for, round, first → current overall score."""
    if run is None:
        return ('<div class="reer-status r2-status idle" data-state="idle">No R2 run yet: pick a prompt, choose the '
                "judge and press <b>Run</b>.</div>")
    s = R2State.from_events(events)
    pending = s.pending_request()
    refl = s.pending_reflection()
    state = run["status"]
    if s.finished is not None:
        txt = f"finished: {REASONS.get(s.finished.reason, s.finished.reason)}"
    elif refl is not None and not driving:
        txt, state = f"waiting for you: edit or approve the reflection of round {refl.round}", "waiting"
    elif pending is not None and not driving:
        who = "accept or override the model's judgment" if pending.proposed else "judge it"
        txt = f"waiting for you: {who} ({'first draft' if pending.version == 0 else f'revision {pending.version}'})"
        state = "waiting"
    elif driving and s.drafted is None:  # the plan only when the run's settings ask for one
        if s.started is None:
            txt = "starting…"
        else:
            txt = "writing the plan and first draft…" if s.started.settings.get("plan", True) else \
                "writing the first draft…"
    elif driving:
        r = s.rounds_done + 1
        txt = f"round {r}: judging, reflecting and revising…" if s.judgments else "judging the first draft…"
    elif state == "failed":
        txt = "failed"
    else:
        txt = "interrupted: press Run to continue"
    max_r = (s.started.settings.get("max_rounds") if s.started else None)
    parts = [f'<span class="rid" title="run id">run {_E(run["id"][:8])}</span>', f'<span class="state">{_E(txt)}</span>']
    if s.started is not None:
        parts.append(f"<span>round {s.rounds_done}/{_E(str(max_r))}</span>")
        mode = s.started.settings.get("judge_mode", "")
        parts.append(f"<span>judge {_E(mode.replace('model_then_human', 'model + your override'))}"
                     f"{(' · ' + _E(s.started.judge)) if s.started.judge else ''}</span>")
    first = (s.judgments.get(0) or {}).get("overall")
    cur = (s.judgments.get(s.current) or {}).get("overall")
    if first is not None:
        parts.append(f"<span>overall {_num(first)} → {_num(cur)}</span>")
    out = (f'<div class="reer-status r2-status" data-state="{_E(state)}" data-run="{_E(run["id"])}" '
           f'data-pending="{"" if pending is None else pending.version}" '
           f'data-reflection="{"" if refl is None else refl.round}" data-rounds="{s.rounds_done}">'
           + " · ".join(parts) + "</div>")
    errs = ([error] if error else []) + [e.message for e in events if isinstance(e, ev.RunError)][-1:]
    for msg in dict.fromkeys(errs):
        out += f'<div class="reer-error" role="alert">{_E(msg)}</div>'
    return out


def judgment_html(j: dict | None, title: str = "Judgment") -> str:
    if not j:
        return f'<div class="r2-judgment none"><b>{_E(title)}</b>: not judged yet</div>'
    who = "person" if j.get("judge") == "human" else "model"
    if j.get("model_judgment"):
        who = "person (override of the model)"
    head = f'<b>{_E(title)}</b> by {_E(who)}: overall <b class="ov">{_num(j.get("overall"))}</b>'
    if not j.get("parsed", True):
        head += f' · <span class="bad">unreadable reply ({_E(j.get("error") or "")})</span>'
    rows = "".join(f"<li><span class=\"sc\">{_num(v)}</span> {_E(c)}</li>" for c, v in (j.get("scores") or {}).items())
    crit = f'<div class="crit">{_E(j.get("critique") or "")}</div>' if j.get("critique") else ""
    return (f'<div class="r2-judgment" data-judge="{_E(str(j.get("judge")))}">{head}'
            f'<ul class="scores">{rows}</ul>{crit}</div>')


def _text(label: str, text: str, cls: str = "") -> str:
    return (f'<div class="r2-text {cls}"><div class="lbl">{_E(label)}</div>'
            f'<div class="t">{_E(text) if text else "<i>(empty)</i>"}</div></div>')


def rounds_html(events: Sequence[ev.Event]) -> str:
    """The run as cards: plan and first draft with its judgment, then each round."""
    if not any(isinstance(e, ev.R2Started) for e in events):
        return '<div class="heat-empty">The drafts, judgments, reflections and revisions will appear here.</div>'
    rec = record_from_events(events)
    s = R2State.from_events(events)
    cards = []
    if s.drafted is not None:
        body = (_text("Plan", rec["plan"], "plan") if rec["plan"] else "") + _text("First draft", s.texts.get(0, ""))
        cards.append(f'<div class="r2-card" data-version="0"><div class="h">Round 0 · first draft</div>{body}'
                     f'{judgment_html(s.judgments.get(0))}</div>')
    for rd in rec["rounds"]:
        r = rd["round"]
        reward = rd.get("reward") or {}
        kept = {True: "kept", False: "discarded (worse than its draft)", None: ""}[rd.get("kept")]
        rw = " · ".join(f"{k} {_num(reward.get(k))}" for k in (*REWARD_PARTS, "total") if k in reward)
        by_you = s.reflections.get(r) is not None and s.reflections[r].by == "human"
        body = (_text(f"Reflection (the writer's own words, round {r})" + (" · edited or approved by you" if by_you
                                                                          else ""), rd["reflection"], "refl")
                + (_text(f"Revision {r}" + (f" · {kept}" if kept else ""), rd["revision"]) if rd["revision"] else "")
                + (judgment_html(rd["revision_judgment"], f"Judgment of revision {r}") if rd["revision"] else "")
                + (f'<div class="reward">reward: {rw}</div>' if rw else ""))
        cards.append(f'<div class="r2-card" data-version="{r}"><div class="h">Round {r}</div>{body}</div>')
    if s.finished is not None:
        cards.append(f'<div class="r2-card final"><div class="h">Finished: {_E(REASONS.get(s.finished.reason, ""))}'
                     f' · final version {s.finished.final_version} · overall {_num(s.finished.overall)}</div></div>')
    return '<div class="r2-rounds">' + "".join(reversed(cards)) + "</div>"


def empty_figure(message: str = "Judged scores by round appear here once the first draft is judged.") -> go.Figure:
    return message_figure(message, height=330)


def _hover(text: str) -> str:
    """A criterion's words for a hover label: escaped, cut, and safe inside a plotly template."""
    import html as _html

    return _html.escape(text[:90]).replace("%", "%%").replace("{", "(").replace("}", ")")


def r2_figure(events: Sequence[ev.Event]) -> go.Figure:
    """Overall score of each judged version (0 = first draft, r = revision r; a person's judgment
    drawn as a diamond), every criterion faintly, and each round's reward components as bars."""
    s = R2State.from_events(events)
    if not s.judgments:
        return empty_figure()
    low, high = ((s.started.settings.get("judge") or {}).get(k, d) for k, d in (("low", 1), ("high", 10))) \
        if s.started else (1, 10)
    versions = sorted(s.judgments)
    fig = go.Figure()
    crits = list((s.judgments[versions[0]].get("scores") or {}).keys())
    for i, c in enumerate(crits):  # one legend entry stands for them all (it toggles the group)
        ys = [(s.judgments[v].get("scores") or {}).get(c) for v in versions]
        group = f"criteria 1–{len(crits)} (faint)" if len(crits) > 1 else "criterion 1"
        fig.add_trace(go.Scatter(x=versions, y=ys, mode="lines+markers", name=group if i == 0 else f"criterion {i + 1}",
                                 hovertemplate=f"criterion {i + 1}: %{{y}}<br>{_hover(c)}<extra></extra>",
                                 line=dict(width=1, dash="dot"),
                                 marker=dict(size=5), opacity=0.45, legendgroup="crit", showlegend=i == 0,
                                 legendgrouptitle=None))
    ys = [s.judgments[v].get("overall") for v in versions]
    symbols = ["diamond" if s.judgments[v].get("judge") == "human" else "circle" for v in versions]
    fig.add_trace(go.Scatter(x=versions, y=ys, mode="lines+markers", name="overall", line=dict(width=3, color="#3b5bdb"),
                             marker=dict(size=11, symbol=symbols, color="#3b5bdb"),
                             hovertext=[s.judgments[v].get("judge") for v in versions]))
    thr = s.started.settings.get("threshold") if s.started else None
    if thr is not None:
        fig.add_hline(y=thr, line=dict(color="#2e7d32", dash="dash", width=1),
                      annotation_text=f"threshold {thr:g}", annotation_position="top left")
    rounds = sorted(s.rounds)
    colors = {"improvement": "#2e7d32", "redundancy": "#f59f00", "circularity": "#c62828", "length": "#868e96",
              "total": "#5f3dc4"}
    for part in (*REWARD_PARTS, "total"):
        if not rounds:
            break
        fig.add_trace(go.Bar(x=rounds, y=[(s.rounds[r].reward or {}).get(part) for r in rounds], name=f"reward: {part}",
                             yaxis="y2", marker_color=colors[part], opacity=0.35 if part != "total" else 0.6,
                             width=0.07))
    rewards = [(s.rounds[r].reward or {}).get(p) for r in rounds for p in (*REWARD_PARTS, "total")]
    rewards = [x for x in rewards if isinstance(x, (int, float))] or [0.0]
    span = max(abs(min(rewards)), abs(max(rewards)), 0.1) * 1.2  # every bar whole, zero in the middle
    fig.update_layout(
        height=360, margin=dict(l=45, r=50, t=28, b=40), plot_bgcolor="white", paper_bgcolor="white",
        barmode="group", legend=dict(orientation="h", y=-0.24, yanchor="top", font=dict(size=10)),
        xaxis=dict(title="version (0 = first draft, r = revision of round r)", dtick=1, gridcolor="#eee",
                   range=[-0.4, max([*versions, *rounds]) + 0.4]),
        yaxis=dict(title="judged score", range=[low - 0.3, high + 0.3], gridcolor="#eee"),
        yaxis2=dict(title="reward", overlaying="y", side="right", showgrid=False, zeroline=True, zerolinecolor="#ccc",
                    range=[-span, span]),
    )
    return fig


def point_count(fig: go.Figure) -> int:
    """Judged overall points in a figure (what a test counts)."""
    return sum(len(t.x or ()) for t in fig.data if t.name == "overall")
