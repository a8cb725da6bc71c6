"""What the REER and R2 pages share about a prompt's runs: the run menu and which run to show.

Knows: the label of a run in a menu, the menu of a prompt's runs of one kind, and which run a
page reattaches to on load (the newest run in the first of the given statuses that has one,
else the newest of any status). Reads the store only; does not know either algorithm.
"""
from __future__ import annotations

import gradio as gr

from core.store import Store


def run_label(run: dict) -> str:
    reason = f" ({run['finish_reason']})" if run.get("finish_reason") else ""
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
