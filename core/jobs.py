"""Running REER over stored prompts: every event saved as it happens, unfinished runs resumed.

`reer_job` is what the CLI and the studio call: it finds this prompt's unfinished run with
the same settings (or creates one), replays its history, continues the search, appends each
event to the store before passing it on, and saves the trajectory when the run finishes.
A kill at any point leaves the store consistent; calling `reer_job` again continues.
"""
from __future__ import annotations

from typing import Iterator

from core import events as ev
from core.lm import LM
from core.reer import Controls, ReerConfig, reer_search
from core.reer_state import record_from_events
from core.store import Store, settings_key


def open_run_for(store: Store, prompt_id: str, cfg: ReerConfig, model: str) -> tuple[str, list[ev.Event]]:
    """(run id, history): the newest unfinished REER run of this prompt and settings, or a new one."""
    key = settings_key(cfg.as_dict())
    for run in store.list_runs(kind="reer", prompt_id=prompt_id):
        if run.get("settings_key") == key and run["status"] in ("running", "paused") and run["model"] == model:
            return run["id"], store.events(run["id"])
    return store.create_run("reer", prompt_id, cfg.as_dict(), model), []


def reer_job(store: Store, lm: LM, prompt_id: str, cfg: ReerConfig = ReerConfig(),
             controls: Controls | None = None, run_id: str | None = None) -> Iterator[ev.Event]:
    """Run or resume REER on a stored prompt; yields each event after it is saved."""
    prompt = store.get_prompt(prompt_id)
    model = getattr(lm, "name", "?")
    if run_id is None:
        run_id, history = open_run_for(store, prompt_id, cfg, model)
    else:
        history = store.events(run_id)
        cfg = ReerConfig.from_dict(store.get_run(run_id)["settings"])
    for event in reer_search(lm, run_id, prompt_id, prompt["query"], prompt["reference"], cfg,
                             controls=controls, history=history):
        store.append_event(event)
        if isinstance(event, ev.RunFinished):
            save_trajectory(store, run_id)
        yield event


def save_trajectory(store: Store, run_id: str) -> int:
    """Write (or refresh) the trajectory row of a finished run from its events."""
    rec = record_from_events(store.events(run_id))
    return store.save_trajectory(run_id, thinking=rec["thinking"], answer=rec["reference"] or "",
                                 initial_score=rec["initial_score"], final_score=rec["final_score"],
                                 initial_ppl=rec["initial_ppl"], final_ppl=rec["final_ppl"], filters=rec["filters"],
                                 details=rec)


def run_record(store: Store, run_id: str) -> dict:
    """The output record of a stored run (see core.reer_state.record_from_events)."""
    return record_from_events(store.events(run_id))
