"""What a one-record-at-a-time page draws: the record with its reference beside it, the queue's
progress, and a legend of keyboard shortcuts that is also the keymap the browser follows.

Knows: the rows of core.data.curation.show (current version applied, `prompt`, `run`, scores by
scale) and core.data.curation.QueueProgress; the shortcut table of Review's focus mode
(FOCUS_KEYS). A page that wants keyboard shortcuts renders `legend_html(keys, stamp=...)`: the
legend carries its keymap as JSON in `data-pk-keys`, and assets/keys.js (loaded once per page by
studio.app) binds every legend it finds visible, so the legend a person reads is the map the
keys follow (a judging page can pass its own Shortcut list). Every text that came from a model,
a file or a person is HTML-escaped here.

Does not know: Gradio, the store, or what the actions do on the server.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass

from core.data.curation import QueueProgress
from studio.views import review as review_view


@dataclass(frozen=True)
class Shortcut:
    keys: tuple[str, ...]  # KeyboardEvent.key values ("a", "ArrowRight", "Escape"); any one of them acts
    label: str  # what the legend says it does
    do: str  # "click": click `target`; "focus": put the caret in `target` (a text box); "score": in the
    # marked one of the rows `target` lists, click the choice whose value is the key, then mark the next
    # row; "move": mark the row `step` places on (the judging page's criteria, studio.views.judging)
    target: str  # CSS selector of the element; "{key}" in it is replaced by the key pressed ("1".."5")
    step: int = 0  # "move": how many rows on (-1: back); Shift turns it round


FOCUS_KEYS = (
    Shortcut(("a",), "accept, then the next pending one", "click", "#focus-accept"),
    Shortcut(("r",), "reject (the note is the reason), then the next pending one", "click", "#focus-reject"),
    Shortcut(("1", "2", "3", "4", "5"), "rate 1 (poor) … 5 (excellent)", "click",
             '#focus-rating input[value="{key}"]'),
    Shortcut(("j", "ArrowRight"), "next in the queue", "click", "#focus-next"),
    Shortcut(("k", "ArrowLeft"), "previous in the queue", "click", "#focus-prev"),
    Shortcut(("n",), "write a note (Enter saves it; Esc leaves the box)", "focus",
             "#focus-note textarea, #focus-note input"),
    Shortcut(("Escape",), "back to the table", "click", "#focus-back"),
)
STAMP_SELECTOR = "#focus-progress [data-pk-stamp]"  # changes on every redraw: keys wait for it after a click
KEY_NAMES = {"ArrowRight": "→", "ArrowLeft": "←", "ArrowDown": "↓", "ArrowUp": "↑", "Escape": "Esc"}


def keymap(keys: tuple[Shortcut, ...] = FOCUS_KEYS, stamp: str = STAMP_SELECTOR) -> dict:
    """The JSON keys.js reads: {"keys": {key: {"do", "target"}}, "stamp": selector}."""
    out: dict[str, dict] = {}
    for s in keys:
        for k in s.keys:
            out[k] = {"do": s.do, "target": s.target.replace("{key}", k), **({"step": s.step} if s.step else {})}
    return {"keys": out, "stamp": stamp}


def _kbd(k: str) -> str:
    return f"<kbd>{html.escape(KEY_NAMES.get(k, k))}</kbd>"


def _keys_html(keys: tuple[str, ...]) -> str:
    """"1 2 3 4 5" reads as a range (1–5); other keys side by side (j →)."""
    digits = len(keys) > 2 and all(k.isdigit() for k in keys)
    return "–".join(_kbd(k) for k in (keys[0], keys[-1])) if digits else " ".join(_kbd(k) for k in keys)


def legend_html(keys: tuple[Shortcut, ...] = FOCUS_KEYS, stamp: str = STAMP_SELECTOR) -> str:
    """The visible list of shortcuts; its `data-pk-keys` attribute is the keymap keys.js binds while
    the legend is on screen. Shortcuts never fire while the caret is in a text box."""
    rows = "".join(f'<li><span class="pk-keys">{_keys_html(s.keys)}</span> {html.escape(s.label)}</li>' for s in keys)
    data = html.escape(json.dumps(keymap(keys, stamp)), quote=True)
    return (f'<div class="pk-legend" data-pk-keys="{data}" aria-label="keyboard shortcuts">'
            f'<div class="rv-title">Keyboard</div><ul>{rows}</ul>'
            '<div class="pk-hint">Keys do nothing while you type in a text box.</div></div>')


def progress_html(p: QueueProgress, stamp: int, current: int | None = None) -> str:
    """The queue's progress line ("12 of 40 · 9 accepted · 2 rejected · 29 to go") over a bar of the
    decided share; `stamp` changes on every redraw (keys.js waits for it after a click)."""
    total = max(p.total, 1)
    bar = "".join(f'<span class="fx-bar-{k}" style="width: {100 * n / total:.2f}%"></span>'
                  for k, n in (("accepted", p.accepted), ("rejected", p.rejected)))
    return (f'<div class="fx-progress" data-pk-stamp="{int(stamp)}" data-id="{"" if current is None else int(current)}" '
            f'data-position="{p.position}" data-total="{p.total}" data-accepted="{p.accepted}" '
            f'data-rejected="{p.rejected}" data-to-go="{p.to_go}">'
            f'<span class="fx-count">{html.escape(p.text())}</span>'
            f'<span class="fx-bar" aria-hidden="true">{bar}</span></div>')


def empty_html(why: str) -> str:
    return f'<div class="rv-empty fx-empty">{html.escape(why)}</div>'


def record_html(t: dict) -> str:
    """One trajectory: its header chips (id, status, scores, filters, rating, tags, notes), then the
    query and reference on the left and the thinking and answer on the right, all escaped."""
    thinking, answer = t.get("thinking") or "", t.get("answer") or ""
    right = (f'<div class="rv-block fx-thinking"><div class="rv-title">Thinking (trajectory) · '
             f'{len(thinking):,} ch</div><div class="rv-text">{html.escape(thinking)}</div></div>'
             f'<div class="rv-block fx-answer"><div class="rv-title">Answer · {len(answer.split()):,} words</div>'
             f'<div class="rv-text">{html.escape(answer)}</div></div>')
    return (f'<div class="fx-record" data-id="{int(t["id"])}" data-status="{html.escape(str(t.get("status")))}">'
            f'{review_view.header_html(t)}<div class="fx-cols"><div class="fx-left">{review_view.reference_html(t)}'
            f'</div><div class="fx-right">{right}</div></div></div>')
