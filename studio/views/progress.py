"""HTML for a run's live progress: the progress line, the "writing now" box, and the acknowledged
intermediate states ("pausing…", "stopping…") with the button labels that go with them.

Built from the TRANSIENT `core.events.Progress` a runner holds for a run it drives
(studio.runners.base.EngineRunner.progress) and from what a person asked and the engine has not
yet done (`asked`: "pausing", "stopping"). Every piece of model text goes through html.escape.
Does not know Gradio, the store or any engine.
"""
from __future__ import annotations

import html

from core import events as ev
from core.runs.progress import duration_words

WRITING_TAIL = 2400  # characters of each text in the "writing now" box (the end, where the tokens arrive)


def progress_line(p: ev.Progress) -> str:
    """"candidates 1–2 of segment 3 (step 2/4) · 212/512 tokens · 38 s elapsed · about 2 min left"."""
    parts = [p.phase or "working"]
    if p.budget:
        parts.append(f"{p.tokens}/{p.budget} tokens")
    parts.append(f"{duration_words(p.elapsed_s)} elapsed")
    if p.stage != "loading":
        parts.append(f"about {duration_words(p.left_s)} left" if p.left_s is not None else "estimating…")
    return " · ".join(parts)


def progress_html(p: ev.Progress | None, asked: str | None = None, pause_point: str = "") -> str:
    """The progress line of a run driven here ("" when none), headed by the acknowledgement of a
    Stop or Pause not yet reached. `pause_point`: where this engine pauses, in words."""
    if p is None and asked is None:
        return ""
    ack = ""
    if asked == "stopping":
        ack = ('<span class="ack" data-asked="stopping">stopping… the text being written ends at its next '
               "token; what was finished is kept</span>")
    elif asked == "pausing":
        ack = f'<span class="ack" data-asked="pausing">pausing {html.escape(pause_point or "soon")}…</span>'
    line = f'<span class="line">{html.escape(progress_line(p))}</span>' if p is not None else ""
    stage = html.escape(p.stage) if p is not None else ""
    tokens = p.tokens if p is not None else 0
    return (f'<div class="run-progress" data-stage="{stage}" data-tokens="{tokens}" '
            f'data-asked="{html.escape(asked or "")}">{ack}{" · " if ack and line else ""}{line}</div>')


def writing_html(p: ev.Progress | None) -> str:
    """The "writing now" box: each text being written, as it grows ("" when nothing is being written)."""
    if p is None or not p.budget:
        return ""
    texts = [t for t in p.texts] or [""]
    boxes = []
    for k, t in enumerate(texts):
        shown = t[-WRITING_TAIL:]
        cut = "…" if len(t) > len(shown) else ""
        label = f"#{k + 1}" if len(texts) > 1 else ""
        body = html.escape(cut + shown) if t else "<i>waiting for the first tokens…</i>"
        boxes.append(f'<div class="w" data-index="{k}">{f"<b>{label}</b> " if label else ""}{body}</div>')
    state = "written" if p.done else "writing now"
    return (f'<div class="writing-now" data-done="{str(p.done).lower()}"><div class="head">{state}: '
            f'{html.escape(p.phase)}</div>{"".join(boxes)}</div>')


def button_labels(asked: str | None) -> dict[str, tuple[str, bool]]:
    """{"pause": (label, clickable), "stop": (label, clickable)} for what a person has asked."""
    if asked == "stopping":
        return {"pause": ("Pause", False), "stop": ("Stopping…", False)}
    if asked == "pausing":
        return {"pause": ("Pausing…", False), "stop": ("Stop", True)}
    return {"pause": ("Pause", True), "stop": ("Stop", True)}


def live_key(p: ev.Progress | None, asked: str | None, driving: bool) -> str:
    """What a page compares to redraw the live parts only when they changed."""
    return f"{driving}:{asked}:{p.t if p is not None else ''}:{p.tokens if p is not None else ''}"
