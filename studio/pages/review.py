"""The Review page: the queue of trajectories (REER, R2 and imported) and the curation of each.

Knows: the layout (filters, with a score range per scale: REER's score, lower is better, and the
judge's, higher is better; the queue table with a column for each, the selected trajectory's query/reference, thinking
and answer side by side, its scores, filter flags, tags, notes and versions, the review actions
and a summary figure of the trajectories in the table) and how each control maps onto
core.data.curation (accept, reject, reset, rate, tag, untag, note, edit -> a new version, revert; and
one action on every trajectory the filters match: its menu starts on a no-op choice, and accept skips
trajectories whose quality filters failed, saying which and why). Pending trajectories whose filters
failed read "failed filters" in the queue and the default status choice hides them, with a count.
Focus mode (studio.pages.focus) replaces the filters and the table with one trajectory at a time,
keyboard shortcuts and the queue's progress, on the queue the filters give; Back to table opens its
record in the table. Every action re-reads the store, so what the page shows is what is stored. Texts are shown in
Textboxes (plain text) or through studio.views.review (HTML-escaped).

Does not know: how trajectories are made or exported, or other pages (the app refreshes this
page when its tab is selected, through `ReviewPage`).
"""
from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from core.data import curation
from core.data.curation import TrajectoryFilter
from core.store import BadValue, NotFound, StoreError
from studio.context import StudioContext
from studio.pages import focus
from studio.users import by_person
from studio.views import review as view

ALL_STATUSES = "any, failed filters too"
STATUSES = ("any", "pending", "accepted", "rejected", curation.FAILED, ALL_STATUSES)  # "any" and "pending" hide
#   pending trajectories whose quality filters failed (a dropped run): not work waiting for a decision
FLAGS = ("any", "passed", "failed", "not run")  # quality filters (core.quality); "not run": R2, most imports
ALL_SOURCES = "all"
IMPORT_ANY = "import (any file)"
MAX_ROWS = 500  # the table shows at most this many (the count says how many match)
RATINGS = ("none", "1", "2", "3", "4", "5")
CHOOSE = "choose an action…"  # the bulk menu's first entry: nothing happens until a person picks an action
BULK = {CHOOSE: None, "accept every match (skips failed filters)": "accept", "reject all (note = reason)": "reject", "all back to pending": "reset",
        "add the tags below to all": "tag", "remove the tags below from all": "untag"}  # menu -> curation.bulk


def source_choices(store) -> list[str]:
    """"all", the run kinds, and each imported source seen in the store ("import: jsonl" ...)."""
    srcs = sorted({curation.source_of(r) for r in store.list_trajectories(kind="import")})
    return [ALL_SOURCES, "reer", "r2", IMPORT_ANY] + [f"import: {s}" for s in srcs if s]


def _bound(name: str, v, whole: bool = False) -> float | int | None:
    """A range bound typed in a box: empty means none; else a number (whole, 0 or more, for lengths)."""
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise BadValue(f"Filters: {name} must be a number, got {v!r}; leave it empty for no bound") from None
    if whole:
        if x < 0 or x != int(x):
            raise BadValue(f"Filters: {name} must be a whole number of characters (0 or more), got {v!r}")
        return int(x)
    return x


def _range(name: str, lo, hi) -> tuple[float | None, float | None]:
    """A score range typed in two boxes; BadValue when from is above to."""
    lo, hi = _bound(f"{name} from", lo), _bound(f"{name} to", hi)
    if lo is not None and hi is not None and lo > hi:
        raise BadValue(f"Filters: {name} from {lo:g} is above {name} to {hi:g}; swap them")
    return lo, hi


def make_filter(status: str | None, source: str | None, min_score, max_score, min_chars, max_chars,
                flags: str | None, tags: str | None, search: str | None, min_judge=None,
                max_judge=None) -> TrajectoryFilter:
    """The core filter for the page's controls; BadValue names the control and the fix. The REER
    score boxes (min/max_score) keep REER trajectories only, the judge score boxes R2 ones (each
    scale has its own direction: core.data.curation.SCALES)."""
    status = status or "any"
    if status not in STATUSES:
        raise BadValue(f"Filters: status {status!r} is not one of {', '.join(STATUSES)}")
    if flags not in (None, *FLAGS):
        raise BadValue(f"Filters: filter flags {flags!r} is not one of {', '.join(FLAGS)}")
    min_score, max_score = _range("REER score", min_score, max_score)
    min_judge, max_judge = _range("judge score", min_judge, max_judge)
    lo, hi = _bound("thinking length from", min_chars, True), _bound("thinking length to", max_chars, True)
    if lo is not None and hi is not None and lo > hi:
        raise BadValue(f"Filters: thinking length from {lo} is above length to {hi}; swap them")
    kind, src = None, None
    source = source or ALL_SOURCES
    if source in ("reer", "r2"):
        kind = source
    elif source == IMPORT_ANY:
        kind = "import"
    elif source.startswith("import: "):
        kind, src = "import", source.removeprefix("import: ")
    elif source != ALL_SOURCES:
        raise BadValue(f"Filters: source {source!r} is not known; pick one from the menu")
    tag_list = tuple(t.strip() for t in (tags or "").split(",") if t.strip())
    failed_pending = {"any": False, "pending": False, curation.FAILED: True}.get(status)
    stored = {"any": None, ALL_STATUSES: None, curation.FAILED: "pending"}.get(status, status)
    return TrajectoryFilter(
        status=stored, failed_pending=failed_pending, kind=kind, source=src,
        min_score=min_score, max_score=max_score, min_judge=min_judge, max_judge=max_judge, min_chars=lo, max_chars=hi,
        passed_filters=True if flags == "passed" else None, tags=tag_list,
        search=(search or "").strip() or None)


def flags_match(row: dict, flags: str | None) -> bool:
    """Does a trajectory's filter record match the page's "Filter flags" choice? ("failed" means the
    filters ran and failed; "not run" means none were recorded.)"""
    f = row.get("filters") if isinstance(row.get("filters"), dict) else None
    if flags == "failed":
        return f is not None and not f.get("passed")
    if flags == "not run":
        return f is None
    return True


def describe_filters(status, source, min_s, max_s, min_c, max_c, flags, tags, search, min_j=None, max_j=None) -> str:
    """The filters in words, for focus mode's first line: "status any, source all, search 'tide'"."""
    parts = [f"status {status or 'any'}", f"source {source or ALL_SOURCES}"]
    for name, lo, hi in (("REER score", min_s, max_s), ("judge score", min_j, max_j), ("thinking chars", min_c, max_c)):
        lo, hi = (str(x).strip() if x not in (None, "") else "" for x in (lo, hi))
        if lo or hi:
            parts.append(f"{name} {lo or '…'}–{hi or '…'}")
    if flags not in (None, "", "any"):
        parts.append(f"filter flags {flags}")
    if (tags or "").strip():
        parts.append(f"tags {tags.strip()}")
    if (search or "").strip():
        parts.append(f"search {search.strip()!r}")
    return ", ".join(parts)


def _msg(text: str, kind: str = "ok") -> str:
    return f'<div class="lib-msg {kind}" role="{"alert" if kind == "error" else "status"}">{html.escape(text)}</div>'


@dataclass(frozen=True)
class ReviewPage:
    """Handles the app needs: refresh(*filters) redraws the queue; wire it to the tab's select."""

    refresh: Callable[..., dict]
    inputs: list  # the filter components, in refresh's argument order
    outputs: list  # what refresh updates


def build(ctx: StudioContext) -> ReviewPage:
    """Create the page's components (inside the caller's Tab) and wire its listeners."""
    store = ctx.store
    head = gr.HTML('<div class="page-head"><h2>Review</h2><p>Every trajectory made by REER, R2 or imported. Filter the '
            'queue, open one, read it beside its reference, then accept, reject, rate, tag, note or edit it '
            '(an edit is kept as a new version; the original is never overwritten).</p></div>')
    with gr.Row(equal_height=True, elem_id="review-filters") as filter_row:
        status = gr.Dropdown(list(STATUSES), value="any", label="Status", elem_id="review-status", min_width=110, scale=2)
        source = gr.Dropdown(source_choices(store), value=ALL_SOURCES, label="Source", elem_id="review-source",
                             min_width=140, scale=2, allow_custom_value=True)
        box = dict(max_lines=1, min_width=80, scale=1, placeholder="any")
        # one pair of boxes per scale: REER's score (lower is better) and the judge's (higher is better)
        reer_box, judge_box = {**box, "placeholder": "0–2"}, {**box, "placeholder": "1–10"}
        min_s = gr.Textbox(label="REER ↓ from", elem_id="review-score-min", **reer_box)
        max_s = gr.Textbox(label="REER ↓ to", elem_id="review-score-max", **reer_box)
        min_j = gr.Textbox(label="Judge ↑ from", elem_id="review-judge-min", **judge_box)
        max_j = gr.Textbox(label="Judge ↑ to", elem_id="review-judge-max", **judge_box)
        min_c = gr.Textbox(label="Min chars", elem_id="review-len-min", **box)
        max_c = gr.Textbox(label="Max chars", elem_id="review-len-max", **box)
        flags = gr.Dropdown(list(FLAGS), value="any", label="Filter flags", elem_id="review-flags", min_width=100, scale=1)
        tagf = gr.Textbox(label="Has tags", placeholder="e.g. gold, short", elem_id="review-tag-filter",
                          max_lines=1, min_width=110, scale=2)
        search = gr.Textbox(label="Search", placeholder="words in query, thinking or answer", elem_id="review-search",
                            max_lines=1, min_width=140, scale=3)
        apply = gr.Button("Apply", elem_id="review-apply", size="sm", min_width=70, scale=1)
    filters = [status, source, min_s, max_s, min_c, max_c, flags, tagf, search, min_j, max_j]
    with gr.Column(elem_id="review-table-mode") as table_col:  # focus mode replaces all of this
        with gr.Row(equal_height=True, elem_id="review-bulk-row"):
            count = gr.HTML("", elem_id="review-count", padding=False)
            to_focus = gr.Button("Focus mode: one at a time, with keys", elem_id="review-focus", size="sm",
                                 min_width=150, scale=0)
            bulk_action = gr.Dropdown(list(BULK), value=CHOOSE, show_label=False, container=False,
                                      elem_id="review-bulk-action", min_width=220, scale=0)
            bulk_btn = gr.Button("Apply to every match", elem_id="review-bulk", size="sm", min_width=150, scale=0)
        table = gr.Dataframe(headers=list(view.HEADERS), interactive=False, wrap=True, elem_id="review-table",
                             column_widths=list(view.COLUMN_WIDTHS), max_height=560, label="Queue: click a row to open it")
        header = gr.HTML(view.header_html({}), elem_id="review-header")
        with gr.Row(equal_height=False, elem_id="review-side"):
            with gr.Column(scale=4, min_width=300):
                ref = gr.HTML("", elem_id="review-reference")
            with gr.Column(scale=5, min_width=320):
                thinking = gr.Textbox(label="Thinking (trajectory): edit and Save as a new version", lines=14,
                                      max_lines=22, elem_id="review-thinking", interactive=True)
            with gr.Column(scale=4, min_width=280):
                answer = gr.Textbox(label="Answer", lines=12, max_lines=20, elem_id="review-answer", interactive=True)
                save = gr.Button("Save thinking and answer as a new version", elem_id="review-save", size="sm")
        with gr.Row(equal_height=True, elem_id="review-actions"):
            tid = gr.Number(None, label="Trajectory id", precision=0, elem_id="review-id", min_width=90, scale=1)
            accept = gr.Button("Accept", variant="primary", elem_id="review-accept", size="sm", elem_classes=["rv-btn"], min_width=80, scale=1)
            reject = gr.Button("Reject", variant="stop", elem_id="review-reject", size="sm", elem_classes=["rv-btn"], min_width=80, scale=1)
            reset = gr.Button("Back to pending", elem_id="review-reset", size="sm", elem_classes=["rv-btn"], min_width=90, scale=1)
            nxt = gr.Button("Next in queue →", elem_id="review-next", size="sm", elem_classes=["rv-btn"], min_width=90,
                            scale=1)
            rating = gr.Radio(list(RATINGS), value="none", label="Rating (1 poor … 5 excellent)", elem_id="review-rating",
                              min_width=380, scale=5)
        with gr.Row(equal_height=True, elem_id="review-notes-row"):
            tags = gr.Textbox(label="Tags (comma separated)", placeholder="gold, needs-work", elem_id="review-tags",
                              max_lines=1, scale=3, min_width=160)
            tag_add = gr.Button("Add tags", elem_id="review-tag-add", size="sm", elem_classes=["rv-btn"], min_width=80, scale=1)
            tag_del = gr.Button("Remove tags", elem_id="review-tag-remove", size="sm", elem_classes=["rv-btn"], min_width=80, scale=1)
            note = gr.Textbox(label="Note (also the reason when you Reject)", elem_id="review-note", max_lines=2,
                              scale=4, min_width=200)
            note_add = gr.Button("Add note", elem_id="review-note-add", size="sm", elem_classes=["rv-btn"], min_width=80, scale=1)
        msg = gr.HTML("", elem_id="review-msg")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                versions = gr.HTML("", elem_id="review-versions")
            with gr.Column(scale=1, min_width=180):
                rev_n = gr.Number(0, label="Version to restore", precision=0, minimum=0, elem_id="review-revert-version")
                revert = gr.Button("Restore it (as a new version)", elem_id="review-revert", size="sm")
        gr.HTML('<div class="sub">The trajectories in the table</div>', padding=False)
        plot = gr.Plot(value=view.summary_figure([]), elem_id="review-plots", show_label=False)
    with gr.Column(visible=False, elem_id="review-focus-mode") as focus_col:
        fm = focus.build(ctx, lambda *f: queue_rows(*f)[0], filters)

    list_out = [table, count, plot, source]
    detail_out = [tid, header, ref, thinking, answer, versions, rating, rev_n]

    # ---- views from the store --------------------------------------------------------------------
    def refresh(st, src, a, b, c, d, fl, tg, q, ja=None, jb=None) -> dict:
        """The queue and the summary for the filters."""
        choices = source_choices(store)
        src_out = gr.Dropdown(choices=choices, value=src if src in choices else ALL_SOURCES)
        try:
            rows, hidden = queue_rows(st, src, a, b, c, d, fl, tg, q, ja, jb)
        except (StoreError, ValueError, TypeError) as e:
            return {count: _msg(str(e), "error"), source: src_out}
        queries = {p["id"]: p["query"] for p in store.list_prompts()}
        cells = [view.row_cells({**r, "status": curation.queue_status(r)}, queries.get(r.get("prompt_id"), ""))
                 for r in rows[:MAX_ROWS]]
        by = {s: sum(curation.queue_status(r) == s for r in rows)
              for s in ("pending", "accepted", "rejected", curation.FAILED)}
        shown = f" (showing the first {MAX_ROWS})" if len(rows) > MAX_ROWS else ""
        text = (f"{len(rows)} trajectory(ies) match{shown}: {by['pending']} pending, {by['accepted']} accepted, "
                f"{by['rejected']} rejected" + (f", {by[curation.FAILED]} failed filters" if by[curation.FAILED] else "")
                + ".")
        note_ = (f'<span class="rv-hidden" data-hidden="{hidden}">{hidden} hidden: failed filters (Status → '
                 f'"{curation.FAILED}" lists them).</span>' if hidden else "")
        return {table: cells, count: f'<div class="rv-count" data-n="{len(rows)}">{html.escape(text)} {note_}</div>',
                plot: view.summary_figure(rows), source: src_out}

    def queue_rows(*filters_) -> tuple[list[dict], int]:
        """The trajectories the filters match, and how many more the status choice hides because their
        quality filters failed (pending ones only; "failed filters" lists them)."""
        flt = make_filter(*filters_)
        rows = [r for r in curation.list_trajectories(store, flt) if flags_match(r, filters_[6])]
        hidden = 0
        if flt.failed_pending is False:
            other = dataclasses.replace(flt, status="pending", failed_pending=True, limit=None)
            hidden = sum(flags_match(r, filters_[6]) for r in curation.list_trajectories(store, other))
        return rows, hidden

    def detail(traj_id) -> dict:
        """The selected trajectory's blocks; an empty view when none is selected."""
        if traj_id in (None, "", 0):
            return {tid: None, header: view.header_html({}), ref: "", thinking: "", answer: "", versions: "",
                    rating: "none", rev_n: 0}
        t = curation.show(store, int(traj_id))
        return {tid: t["id"], header: view.header_html(t), ref: view.reference_html(t), thinking: t["thinking"],
                answer: t["answer"], versions: view.versions_html(t),
                rating: str(t["rating"]) if t.get("rating") else "none", rev_n: t.get("version", 0)}

    def _need(traj_id) -> int:
        if traj_id in (None, "", 0):  # ids start at 1; an empty number box reads 0 in the browser
            raise BadValue("No trajectory open: click a row of the queue (or type its id) first.")
        return int(traj_id)

    def act(fn: Callable[[int], str]) -> Callable:
        """A review action: run fn(traj_id) -> message, then redraw the queue and the trajectory."""
        def handler(traj_id, *filters_):
            try:
                message = fn(_need(traj_id))
                kind = "ok"
            except (StoreError, ValueError) as e:
                message, kind = str(e), "error"
            out = refresh(*filters_)
            try:
                out.update(detail(traj_id))
            except NotFound as e:
                out.update(detail(None))
                message, kind = str(e), "error"
            if kind == "error":
                gr.Warning(message)
            return {**out, msg: _msg(message, kind)}
        return handler

    def _failed(out: dict) -> bool:
        return 'class="lib-msg error"' in out.get(msg, "")

    def open_one(traj_id, *filters_):
        return act(lambda t: f"Trajectory #{t} opened.")(traj_id, *filters_)

    def pick(evt: gr.SelectData):
        row = evt.row_value or []
        if not row or row[0] in (None, ""):
            return {msg: _msg("Click a row of the table to open its trajectory.", "warn")}
        try:
            return {**detail(int(row[0])), msg: _msg(f"Trajectory #{int(row[0])} opened.")}
        except (StoreError, ValueError) as e:
            return {msg: _msg(str(e), "error")}

    def next_id(traj_id, *filters_) -> int:
        """The queue's next trajectory after `traj_id` (in id order, wrapping round; the first when none)."""
        try:
            ids = [r["id"] for r in queue_rows(*filters_)[0]]
        except (StoreError, ValueError, TypeError) as e:
            raise BadValue(str(e)) from e
        if not ids:
            raise BadValue("The queue is empty: change the filters to see more trajectories.")
        cur = int(traj_id or 0)
        return next((i for i in ids if i > cur), ids[0])

    def do_next(traj_id, *filters_):
        try:
            t = next_id(traj_id, *filters_)
        except StoreError as e:
            return {msg: _msg(str(e), "warn")}
        return {**detail(t), msg: _msg(f"Trajectory #{t} opened (next in the queue).")}

    # ---- actions ---------------------------------------------------------------------------------
    def do_reject(traj_id, reason, *filters_):
        def fn(t):
            curation.reject(store, t, (reason or "").strip() or None)
            return f"Trajectory #{t} rejected" + (f" ({reason.strip()})." if (reason or "").strip() else ".")
        return {**act(fn)(traj_id, *filters_), note: ""}

    def do_rate(traj_id, value, *filters_):
        def fn(t):
            curation.rate(store, t, None if value in (None, "none") else int(value))
            return f"Trajectory #{t} rated {value}." if value not in (None, "none") else f"Rating of #{t} cleared."
        return act(fn)(traj_id, *filters_)

    def do_tag(traj_id, text, *filters_, remove=False):
        def fn(t):
            words = [w.strip() for w in (text or "").split(",") if w.strip()]
            if not words:
                raise BadValue("Tags: write one or more tags, separated by commas (e.g. gold, short).")
            now_tags = (curation.untag if remove else curation.tag)(store, t, *words)
            return f"Trajectory #{t} tags: {', '.join(now_tags) or 'none'}."
        return {**act(fn)(traj_id, *filters_), tags: ""}

    def do_note(traj_id, text, *filters_):
        def fn(t):
            curation.note(store, t, (text or "").strip())
            return f"Note added to trajectory #{t}."
        out = act(fn)(traj_id, *filters_)
        return out if _failed(out) else {**out, note: ""}

    def do_edit(traj_id, new_thinking, new_answer, *filters_):
        def fn(t):
            v = curation.edit(store, t, new_thinking, new_answer, author="studio")
            return f"Saved as version {v} of trajectory #{t} (earlier versions are kept)."
        out = act(fn)(traj_id, *filters_)
        if _failed(out):  # keep the person's unsaved text on screen
            out.pop(thinking, None)
            out.pop(answer, None)
        return out

    def do_revert(traj_id, version, *filters_):
        def fn(t):
            if version is None:
                raise BadValue("Version to restore: give a version number (0 = the original).")
            v = curation.revert(store, t, int(version), author="studio")
            return f"Version {int(version)} restored as version {v} of trajectory #{t}."
        return act(fn)(traj_id, *filters_)

    def do_bulk(choice, traj_id, tag_text, reason, *filters_):
        """One action on every trajectory the filters match (the count line says how many)."""
        try:
            if choice in (None, "", CHOOSE):
                raise BadValue("Bulk: choose an action from the menu beside the button first; nothing was changed.")
            action = BULK.get(choice)
            if action is None:
                raise BadValue(f"Bulk action {choice!r} is not known; pick one from the menu")
            ids = [r["id"] for r in queue_rows(*filters_)[0]]
            words = [w.strip() for w in (tag_text or "").split(",") if w.strip()]
            if action in ("tag", "untag") and not words:
                raise BadValue("Bulk tags: write the tags in the Tags box below (comma separated) first.")
            res = curation.bulk(store, ids, action, tags=words, reason=(reason or "").strip() or None)
            done = {"accept": "accepted", "reject": "rejected", "reset": "back to pending",
                    "tag": f"tagged {', '.join(words)}", "untag": f"untagged {', '.join(words)}"}[action]
            message, kind = f"{res.changed} trajectory(ies) {done}.", "ok"
            if res.skipped:  # never accepted in bulk: open one and Accept it to take it deliberately
                message += f" {res.skipped_text()}; open one and press Accept to take it anyway."
                kind = "warn"
        except (StoreError, ValueError, TypeError) as e:
            message, kind = str(e), "error"
            gr.Warning(message)
        out = refresh(*filters_)
        try:
            out.update(detail(traj_id))
        except (NotFound, ValueError):
            out.update(detail(None))
        return {**out, msg: _msg(message, kind)}

    def status_action(verb: str, fn: Callable[[int], None]) -> Callable:
        def f(t):
            fn(t)
            return f"Trajectory #{t} {verb}."
        return act(f)

    # ---- listeners (every act runs as the request's person: studio.users.by_person) --------------
    quick = dict(concurrency_limit=None, show_progress="minimal")
    every = [*list_out, *detail_out, msg]
    def enter_focus(traj_id, *filters_):
        """Table -> focus mode, on the record open in the table when it is in the queue."""
        out = fm.open(traj_id, *filters_, about=describe_filters(*filters_))
        return {head: gr.HTML(visible=False), filter_row: gr.Row(visible=False), table_col: gr.Column(visible=False),
                focus_col: gr.Column(visible=True), **out}

    def leave_focus(cur, *filters_):
        """Focus mode -> table, redrawn from the store, with focus mode's record open."""
        out = {head: gr.HTML(visible=True), filter_row: gr.Row(visible=True), table_col: gr.Column(visible=True),
               focus_col: gr.Column(visible=False), **refresh(*filters_)}
        try:
            out.update(detail(cur))
        except (NotFound, ValueError, TypeError):
            out.update(detail(None))
        return {**out, msg: ""}

    apply.click(refresh, filters, list_out, api_name="review_list", **quick)
    for tb in (tagf, search, min_s, max_s, min_j, max_j, min_c, max_c):
        tb.submit(refresh, filters, list_out, api_visibility="private", **quick)
    for dd in (status, source, flags):
        dd.input(refresh, filters, list_out, api_visibility="private", **quick)
    shown = [head, filter_row, table_col, focus_col]  # which of the two modes is on screen
    to_focus.click(enter_focus, [tid, *filters], [*shown, *fm.outputs], api_name="focus_open", **quick)
    fm.back.click(leave_focus, [fm.current, *filters], [*shown, *every], api_name="focus_back", **quick)
    table.select(pick, None, [*detail_out, msg], api_visibility="private", **quick)
    tid.submit(open_one, [tid, *filters], every, api_name="review_open", **quick)
    accept.click(by_person(status_action("accepted", lambda t: curation.accept(store, t))), [tid, *filters], every,
                 api_name="review_accept", **quick)
    reject.click(by_person(do_reject), [tid, note, *filters], [*every, note], api_name="review_reject", **quick)
    nxt.click(do_next, [tid, *filters], [*detail_out, msg], api_name="review_next", **quick)
    reset.click(by_person(status_action("back to pending", lambda t: curation.reset(store, t))), [tid, *filters], every,
                api_name="review_reset", **quick)
    rating.input(by_person(do_rate), [tid, rating, *filters], every, api_name="review_rate", **quick)
    tag_add.click(by_person(do_tag), [tid, tags, *filters], [*every, tags], api_name="review_tag", **quick)
    tag_del.click(by_person(lambda t, x, *f: do_tag(t, x, *f, remove=True)), [tid, tags, *filters], [*every, tags],
                  api_name="review_untag", **quick)
    note_add.click(by_person(do_note), [tid, note, *filters], [*every, note], api_name="review_note", **quick)
    save.click(by_person(do_edit), [tid, thinking, answer, *filters], every, api_name="review_edit", **quick)
    bulk_btn.click(by_person(do_bulk), [bulk_action, tid, tags, note, *filters], every, api_name="review_bulk", **quick)
    revert.click(by_person(do_revert), [tid, rev_n, *filters], every, api_name="review_revert", **quick)
    return ReviewPage(refresh=refresh, inputs=filters, outputs=list_out)
