"""What the REER and R2 pages share about a prompt's runs: the run menu and which run to show.

Knows: the label of a run in a menu (its finish reason in words, `finish_words`), the menu of a prompt's runs of one kind, which run a page
reattaches to on load (the newest run in the first of the given statuses that has one, else the
newest of any status), the badge of a run's trajectory, the status line of a run waiting in the
app's line for a slot (`queued_html`), and the key a page's timer compares to redraw only when
the run changed (its place in line included). Reads the store only; does not know either algorithm.
"""
from __future__ import annotations

import html

import gradio as gr

from core.data import curation
from core.store import NotFound, Store
from studio.views.r2 import REASONS as R2_REASONS
from studio.views.reer import REASONS as REER_REASONS

FINISH_WORDS = {"reer": REER_REASONS, "r2": R2_REASONS}  # each engine's finish reasons, in words


def finish_words(kind: str, reason: str | None) -> str:
    """A run's finish reason as a person reads it ("all rounds done", not `max_rounds`); "" for none."""
    if not reason:
        return ""
    return FINISH_WORDS.get(kind, {}).get(reason) or reason.replace("_", " ")


def run_label(run: dict) -> str:
    words = finish_words(run.get("kind") or "", run.get("finish_reason"))
    reason = f" ({words})" if words else ""
    return f"{run['id'][:8]} · {run['status']}{reason} · {str(run.get('created_at', ''))[:19].replace('T', ' ')}"


def runs_menu(store: Store, kind: str, prompt_id: str | None, run_id: str | None = None) -> gr.Dropdown:
    rs = store.list_runs(kind=kind, prompt_id=prompt_id) if prompt_id else []
    return gr.Dropdown(choices=[(run_label(r), r["id"]) for r in rs], value=run_id)


def attach_target(store: Store, kind: str, prompt_id: str | None, live: tuple[str, ...],
                  choices: list) -> tuple[str | None, str | None]:
    """(prompt id, run id) a page shows: `prompt_id` and its newest run; with None, the newest run
    in the first status of `live` that has one (else the newest at all), else the first prompt."""
    run_id = None
    if prompt_id is None:
        for st in (*live, None):
            rs = store.list_runs(kind=kind, status=st)
            if rs:
                run_id, prompt_id = rs[0]["id"], rs[0]["prompt_id"]
                break
    elif prompt_id:
        rs = store.list_runs(kind=kind, prompt_id=prompt_id)
        run_id = rs[0]["id"] if rs else None
    if prompt_id is None and choices:
        prompt_id = choices[0][1]
    return prompt_id, run_id


def review_badge(store: Store, run_id: str | None) -> str:
    """The review status of the run's trajectory as a small badge ("" while it has none)."""
    t = store.trajectory_for_run(run_id) if run_id else None
    if t is None:
        return ""
    status = html.escape(str(t["status"]))
    return (f'<div class="reer-review {status}" data-status="{status}">Trajectory #{t["id"]}: '
            f"<b>{status}</b></div>")


def run_key(store: Store, runner, run_id: str | None, *extra) -> str:
    """What a page's timer compares: it redraws only when this changes (new events, status,
    driver, error, review, or a view setting in `extra`). "none" and "gone" for no run / a deleted one."""
    if not run_id:
        return "none"
    try:
        run = store.get_run(run_id)
    except NotFound:
        return "gone"
    parts = (run_id, store.last_seq(run_id), run["status"], runner.is_driving(run_id), runner.error(run_id),
             runner.queue_place(run_id), *extra)
    return ":".join(map(str, parts)) + ":" + review_badge(store, run_id)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def queue_text(place: tuple[int, list[str]]) -> str:
    """"queued: 2nd in line, waiting for run ab12cd34" from a runner's `queue_place`."""
    n, driven = place
    who = ("run " if len(driven) == 1 else "runs ") + ", ".join(r[:8] for r in driven) if driven else "a free slot"
    return f"queued: {_ordinal(n)} in line, waiting for {who}"


def queued_html(runner, run_id: str | None) -> str | None:
    """The status line of a run waiting in the app's line for a slot (None when it is not): its
    place, the runs it waits for, the cap, and that Stop takes it out of the line."""
    place = runner.queue_place(run_id) if run_id else None
    if place is None:
        return None
    limit = runner.slots.limit
    return (f'<div class="reer-status queued" data-state="queued" data-run="{html.escape(run_id)}" '
            f'data-place="{place[0]}"><span class="rid" title="run id">run {html.escape(run_id[:8])}</span> · '
            f'<span class="state">{html.escape(queue_text(place))}</span> · <span>it starts by itself when a '
            f'slot frees (this studio drives {limit} run{"s" if limit != 1 else ""} at a time); Stop takes it '
            "out of the line</span></div>")


def status_moved(key: str, seen_key: str) -> bool:
    """True when the run's status differs between two run_key values (its menu label is stale)."""
    return (key.split(":") + [""] * 3)[2] != (seen_key.split(":") + [""] * 3)[2]


def attach_view(store: Store, kind: str, prompt_id: str | None, live: tuple[str, ...],
                choices: list) -> tuple[gr.Dropdown, str | None, gr.Dropdown]:
    """(prompt menu, run id, run menu) a page shows on load or on a prompt picked elsewhere (attach_target)."""
    prompt_id, run_id = attach_target(store, kind, prompt_id, live, choices)
    return gr.Dropdown(choices=choices, value=prompt_id), run_id, runs_menu(store, kind, prompt_id, run_id)


def error_block(message: str) -> str:
    """A page's error line under its status (escaped: messages may quote user or model text)."""
    return f'<div class="reer-error" role="alert">{html.escape(message)}</div>'


def menus(store: Store, kind: str, choices: list) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The prompt menu and the run menu at the top of a run page (ids `{kind}-prompt`, `{kind}-runs`)."""
    prompt = gr.Dropdown(choices=choices, value=None, label="Prompt", elem_id=f"{kind}-prompt", scale=5,
                         min_width=300, interactive=True, allow_custom_value=True)
    runs = gr.Dropdown(choices=[], value=None, label="Run of this prompt", elem_id=f"{kind}-runs", scale=3,
                       min_width=200, interactive=True, allow_custom_value=True)
    return prompt, runs


def set_review(store: Store, run_id: str | None, verdict: str) -> str | None:
    """Accept or reject the trajectory of the run on screen through core.data.curation (as Review and
    focus mode do), so the review log records the act and its person (the caller's, studio.users.by_person);
    the reason when it cannot be done yet."""
    if not run_id:
        return "No run on screen."
    t = store.trajectory_for_run(run_id)
    if t is None:
        return "The run has not finished: let it finish or Stop it, then accept or reject its trajectory."
    {"accepted": curation.accept, "rejected": curation.reject}[verdict](store, t["id"])
    return None


def live_parts(runner, run_id: str | None, pause_point, live, writing, pause_btn, stop_btn) -> tuple[str, dict]:
    """(key, {live line, writing box, Pause and Stop buttons}) of a run's transient progress in this
    process (studio.views.progress); `pause_point(progress)` says where this engine pauses, in words.
    A page compares the key with what it last drew, to redraw only what moved."""
    from studio.views import progress as live_view

    p = runner.progress(run_id) if run_id else None
    asked = runner.asked(run_id) if run_id else None
    driving = bool(run_id) and runner.is_driving(run_id)
    labels = live_view.button_labels(asked)
    return live_view.live_key(p, asked, driving), {
        live: live_view.progress_html(p, asked, pause_point(p)),
        writing: live_view.writing_html(p),
        pause_btn: gr.Button(value=labels["pause"][0], interactive=labels["pause"][1]),
        stop_btn: gr.Button(value=labels["stop"][0], interactive=labels["stop"][1]),
    }
