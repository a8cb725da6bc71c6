"""REER over many items, as `palimpsest reer run` does: import, skip what is done, resume, record.

For each item, in input order: store it as a prompt (once per content, `Store.add_prompt`);
if a finished REER run of that prompt with the same settings and model is in the store, reuse
it; otherwise run it through `core.reer.jobs.reer_job`, which saves every event as it happens and
resumes this prompt's unfinished run (e.g. one a killed process left behind). Each item ends
as one `ItemOutcome` carrying the output record (`core.reer.jobs.run_record`), so a second pass
over the same input with the same store rewrites the same records without searching again.

A model error on one item is an outcome (status "failed"), not an exception: the caller goes
on with the next item. KeyboardInterrupt passes through; whatever was saved stays saved.
Knows nothing of files, progress bars or argument parsing (studio/cli.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

from core import events as ev
from core.data.items import Item
from core.models.lm import LM
from core.reer.config import ReerConfig
from core.reer.jobs import reer_job, run_record
from core.store import BadValue, Store, settings_key


@dataclass(frozen=True)
class ItemOutcome:
    item: Item  # the input item
    prompt_id: str  # its id in the store
    status: Literal["done", "cached", "failed"]  # searched now / found finished in the store / failed
    run_id: str | None = None  # the REER run (None if it failed before one was created)
    record: dict | None = None  # the output line (None when failed)
    error: str | None = None  # why it failed


def import_item(store: Store, item: Item, source: str | None = None) -> str:
    """The item's prompt id: stored now, or the existing prompt with the same content."""
    kwargs = dict(category=item.category, rubric=list(item.rubric) or None, source=source)
    try:
        pid, _ = store.add_prompt(item.query, item.reference, id=item.id, **kwargs)
    except BadValue:  # the id names another prompt already (e.g. "in.jsonl:3" of another file)
        pid, _ = store.add_prompt(item.query, item.reference, **kwargs)
    return pid


def finished_run(store: Store, prompt_id: str, cfg: ReerConfig, model: str) -> dict | None:
    """The newest finished REER run of this prompt with these settings and this model, if any."""
    run = store.finished_run_for(prompt_id, "reer", cfg.as_dict())
    if run is not None and run["model"] == model:
        return run
    key = settings_key(cfg.as_dict())
    return next((r for r in store.list_runs(kind="reer", status="finished", prompt_id=prompt_id)
                 if r["settings_key"] == key and r["model"] == model), None)


def item_record(store: Store, run_id: str, item: Item) -> dict:
    """The run's output record, under the input's own id (the store's prompt id kept beside it)."""
    rec = run_record(store, run_id)
    return {"id": item.id, "prompt_id": rec.pop("id"), **rec}


def reer_items(store: Store, items: Sequence[Item], cfg: ReerConfig, model: str,
               get_lm: Callable[[], LM], source: str | None = None,
               on_event: Callable[[Item, ev.Event], None] | None = None) -> Iterator[ItemOutcome]:
    """One outcome per item (module docstring). `model` is the name the loaded LM will carry
    (its spec); `get_lm` is called only when some item needs a search, so a pass over finished
    items loads no model. `on_event(item, event)` sees every event once it is saved."""
    for item in items:
        pid = import_item(store, item, source)
        done = finished_run(store, pid, cfg, model)
        if done is not None:
            yield ItemOutcome(item, pid, "cached", done["id"], item_record(store, done["id"], item))
            continue
        lm = get_lm()
        run_id, error, finished = None, None, False
        try:
            for event in reer_job(store, lm, pid, cfg):
                run_id = event.run_id
                if on_event is not None:
                    on_event(item, event)
                if isinstance(event, ev.RunError) and event.fatal:
                    error = f"{event.where or 'model'} error: {event.message}"
                finished = finished or isinstance(event, ev.RunFinished)
        except Exception as exc:  # noqa: BLE001  (one item's failure must not end the batch)
            error = f"{type(exc).__name__}: {exc}"
        if error is None and not finished:
            error = "the run ended without finishing"
        if error is not None:
            yield ItemOutcome(item, pid, "failed", run_id, None, error)
        else:
            yield ItemOutcome(item, pid, "done", run_id, item_record(store, run_id, item))
