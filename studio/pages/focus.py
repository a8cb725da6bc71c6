"""Review's focus mode: one trajectory at a time, its reference beside it, keyboard shortcuts, and
the queue's progress.

Knows: the layout of the mode (progress line, the record from studio.views.focus, the actions:
Accept, Reject, Previous, Next, the rating, a note box, Back to table, and the legend of
shortcuts that assets/keys.js binds) and how each action maps onto core.data.curation: the same
store decisions the table makes, saved at once. Accept and Reject (the note is the reason; with
Accept a written note is added to the notes) then open the next pending trajectory of the queue
(core.data.curation.next_pending); a rating or a note keeps the record open, so a person can rate,
then decide. The queue is the Review page's: its filters come in with every event, so the mode
walks what the table lists.

Does not know: the table, the filters' meaning (the Review page hands in `rows_for`, its queue
query), or how keys reach the buttons (assets/keys.js).
"""
from __future__ import annotations

import html
import itertools
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from core.data import curation
from core.store import BadValue, NotFound, StoreError
from studio.users import by_person
from studio.views import focus as view

RATINGS = ("none", "1", "2", "3", "4", "5")


def _msg(text: str, kind: str = "ok") -> str:
    return f'<div class="lib-msg {kind}" role="{"alert" if kind == "error" else "status"}">{html.escape(text)}</div>'


@dataclass(frozen=True)
class FocusMode:
    """What the Review page wires: `open(start_id, *filters, about=...)` shows the mode's record (the start id
    when it is in the queue, else the first pending one); `current` holds the open id; `back` is
    the Back to table button; `outputs` are what `open` updates."""

    open: Callable[..., dict]
    outputs: list
    current: gr.Number
    back: gr.Button


def build(ctx, rows_for: Callable[..., list[dict]], filters: list) -> FocusMode:
    """Create the mode's components (inside the caller's hidden Column) and wire its listeners.
    `rows_for(*filter_values)` is the queue in order (BadValue/StoreError on bad filters)."""
    store = ctx.store
    stamps = itertools.count(1)  # every redraw gets a new stamp (keys.js waits for it)
    with gr.Row(equal_height=True, elem_id="focus-top"):
        progress = gr.HTML(view.progress_html(curation.queue_progress([], None), 0), elem_id="focus-progress",
                           padding=False)
        back = gr.Button("Back to table (Esc)", elem_id="focus-back", size="sm", min_width=150, scale=0)
    with gr.Row(equal_height=True, elem_id="focus-actions"):
        accept = gr.Button("Accept (a)", variant="primary", elem_id="focus-accept", size="sm", min_width=100, scale=0)
        reject = gr.Button("Reject (r)", variant="stop", elem_id="focus-reject", size="sm", min_width=100, scale=0)
        prev = gr.Button("← Previous (k)", elem_id="focus-prev", size="sm", min_width=110, scale=0)
        nxt = gr.Button("Next (j) →", elem_id="focus-next", size="sm", min_width=100, scale=0)
        rating = gr.Radio(list(RATINGS), value="none", label="Rating (keys 1–5)", elem_id="focus-rating",
                          min_width=400, scale=1)
    note = gr.Textbox(label="Note (key n; Enter saves it; with Reject it is the reason)", elem_id="focus-note",
                      max_lines=1, placeholder="a note on this trajectory (optional)")
    gr.HTML(view.legend_html(), elem_id="focus-legend", padding=False)
    msg = gr.HTML("", elem_id="focus-msg")
    record = gr.HTML(view.empty_html("Focus mode opens here."), elem_id="focus-record", padding=False)
    current = gr.Number(None, precision=0, visible=False, elem_id="focus-id")
    outputs = [current, progress, record, rating, msg]

    def draw(traj_id: int | None, rows: list[dict], message: str = "", kind: str = "ok") -> dict:
        """The mode showing `traj_id` (None: the empty state) with the queue's progress."""
        p = curation.queue_progress(rows, traj_id)
        if traj_id is None:
            why = ("The queue is empty: change the filters above to see trajectories." if not rows
                   else "Nothing open.")
            return {current: None, progress: view.progress_html(p, next(stamps)), record: view.empty_html(why),
                    rating: "none", msg: _msg(message, kind) if message else ""}
        t = curation.show(store, int(traj_id))
        return {current: t["id"], progress: view.progress_html(p, next(stamps), t["id"]), record: view.record_html(t),
                rating: str(t["rating"]) if t.get("rating") else "none",
                msg: _msg(message, kind) if message else ""}

    def failure(traj_id, e: Exception, filters_) -> dict:
        """Redraw what is open (or nothing) with the error said."""
        gr.Warning(str(e))
        try:
            rows = rows_for(*filters_)
        except (StoreError, ValueError, TypeError):
            rows = []
        try:
            return draw(int(traj_id) if traj_id not in (None, "", 0) else None, rows, str(e), "error")
        except NotFound:
            return draw(None, rows, str(e), "error")

    def open_(start, *filters_, about: str = "") -> dict:
        """Enter (or redraw) the mode: `start` when it is in the queue, else the first pending one,
        else the first of the queue. `about`: the queue's filters in words, for the first message."""
        try:
            rows = rows_for(*filters_)
            ids = [r["id"] for r in rows]
            start = int(start) if start not in (None, "", 0) else None
            pick = start if start in ids else (curation.next_pending(rows, None) or (ids[0] if ids else None))
            left = curation.queue_progress(rows, pick).to_go
            on = f" on the queue of {about}" if about else ""
            return draw(pick, rows, f"Focus mode{on}: {left:,} to decide. To change the filters, go back to the "
                        "table." if rows else "")
        except (StoreError, ValueError, TypeError) as e:
            return failure(None, e, filters_)

    def _need(traj_id) -> int:
        if traj_id in (None, "", 0):
            raise BadValue("Nothing is open: the queue is empty (change the filters above).")
        return int(traj_id)

    def decide(verb: str) -> Callable:
        def handler(traj_id, text, *filters_):
            try:
                t = _need(traj_id)
                words = (text or "").strip()
                if verb == "accepted":
                    with store.transaction():
                        curation.accept(store, t)
                        if words:
                            curation.note(store, t, words)
                else:
                    curation.reject(store, t, words or None)
                rows = rows_for(*filters_)
                after = curation.next_pending(rows, t)
                said = f"#{t} {verb}" + (f" ({words})" if words and verb == "rejected" else "")
                if after is None:
                    out = draw(t if t in [r["id"] for r in rows] else None, rows,
                               f"{said}. Nothing left to decide in this queue.")
                else:
                    out = draw(after, rows, f"{said}; #{after} is next.")
                return {**out, note: ""}
            except (StoreError, ValueError, TypeError) as e:
                return failure(traj_id, e, filters_)
        return handler

    def do_rate(traj_id, value, *filters_):
        try:
            t = _need(traj_id)
            curation.rate(store, t, None if value in (None, "", "none") else int(value))
            said = f"#{t} rated {value}." if value not in (None, "", "none") else f"Rating of #{t} cleared."
            return draw(t, rows_for(*filters_), said)
        except (StoreError, ValueError, TypeError) as e:
            return failure(traj_id, e, filters_)

    def do_note(traj_id, text, *filters_):
        try:
            t = _need(traj_id)
            curation.note(store, t, (text or "").strip())
            return {**draw(t, rows_for(*filters_), f"Note added to #{t}."), note: ""}
        except (StoreError, ValueError, TypeError) as e:
            return failure(traj_id, e, filters_)  # the typed note stays in its box

    def move(step: int) -> Callable:
        def handler(traj_id, *filters_):
            try:
                rows = rows_for(*filters_)
                cur = int(traj_id) if traj_id not in (None, "", 0) else None
                to = curation.step_in_queue(rows, cur, step)
                return draw(to, rows)
            except (StoreError, ValueError, TypeError) as e:
                return failure(traj_id, e, filters_)
        return handler

    quick = dict(concurrency_limit=None, show_progress="hidden")  # acts run as the request's person (by_person)
    accept.click(by_person(decide("accepted")), [current, note, *filters], [*outputs, note], api_name="focus_accept",
                 **quick)
    reject.click(by_person(decide("rejected")), [current, note, *filters], [*outputs, note], api_name="focus_reject",
                 **quick)
    rating.input(by_person(do_rate), [current, rating, *filters], outputs, api_name="focus_rate", **quick)
    note.submit(by_person(do_note), [current, note, *filters], [*outputs, note], api_name="focus_note", **quick)
    nxt.click(move(1), [current, *filters], outputs, api_name="focus_next", **quick)
    prev.click(move(-1), [current, *filters], outputs, api_name="focus_prev", **quick)
    return FocusMode(open=open_, outputs=outputs, current=current, back=back)
