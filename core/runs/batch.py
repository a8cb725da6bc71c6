"""Many items through one engine, as `palimpsest reer run` and `palimpsest r2 run` do: import,
skip what is done, resume, record.

For each item, in input order: store it as a prompt (once per content, `Store.add_prompt`); if
a finished run of that prompt with the same kind, settings and model is in the store, reuse it
("cached"); otherwise open the prompt's unfinished run (or a new one, core.runs.driver.open_run_for)
and drive it with the engine's job, which saves every event as it happens and resumes what a
killed process left behind. Each item ends as one `ItemOutcome` carrying the output record, so a
second pass over the same input with the same store rewrites the same records without running
again. A run that stops to wait for a person (R2's human judging) is "paused".

Several processes may run the same items on one store: an item whose run another live process
drives (it holds the run's lease, core.runs.lease) is "held", with `holder` "PID n", and is
skipped, not failed; the other process finishes it. The look-up of a finished run and the
opening of an unfinished one share one write transaction, so an item finished by the other
process in between is "cached", never run twice.

A model error on one item is an outcome (status "failed"), not an exception: the caller goes on
with the next item. KeyboardInterrupt passes through; whatever was saved stays saved.
Knows nothing of files, progress bars or argument parsing (studio/cli), nor of any engine's logic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

from core import events as ev
from core.data.items import Item
from core.runs.driver import open_run_for
from core.runs.engine import Engine
from core.runs.lease import RunBusy
from core.store import BadValue, Store, settings_key


@dataclass(frozen=True)
class ItemOutcome:
    item: Item  # the input item
    prompt_id: str  # its id in the store
    # run now / finished before (or by another process) / waits for a person / driven by another live process / failed
    status: Literal["done", "cached", "paused", "held", "failed"]
    run_id: str | None = None  # the run (None if it failed before one was created)
    record: dict | None = None  # the output line (None when held or failed)
    error: str | None = None  # why it failed, or the lease message when held
    holder: str | None = None  # who holds a held item's run: "PID n" (core.runs.lease.describe_owner)


def import_item(store: Store, item: Item, source: str | None = None) -> str:
    """The item's prompt id: stored now, or the existing prompt with the same content."""
    kwargs = dict(category=item.category, rubric=list(item.rubric) or None, source=source)
    try:
        pid, _ = store.add_prompt(item.query, item.reference, id=item.id, **kwargs)
    except BadValue:  # the id names another prompt already (e.g. "in.jsonl:3" of another file)
        pid, _ = store.add_prompt(item.query, item.reference, **kwargs)
    return pid


def finished_run(store: Store, kind: str, prompt_id: str, settings: dict, model: str) -> dict | None:
    """The newest finished run of this kind, prompt, settings and model, if any."""
    key = settings_key(settings)
    return next((r for r in store.list_runs(kind=kind, status="finished", prompt_id=prompt_id)
                 if r["settings_key"] == key and r["model"] == model), None)


def as_is(record: dict, item: Item) -> dict:
    """An output record unchanged (the default `item_record` of `run_items`)."""
    return record


def run_items(store: Store, items: Sequence[Item], engine: Engine, settings: dict, model: str,
              get_job: Callable[[], Callable[[str, str], Iterator[ev.Event]]], source: str | None = None,
              on_event: Callable[[Item, ev.Event], None] | None = None,
              item_record: Callable[[dict, Item], dict] = as_is) -> Iterator[ItemOutcome]:
    """One outcome per item (module docstring). `settings` and `model` are what the runs record.
    `get_job()` loads the engine's models and returns `job(prompt_id, run_id)`, which drives one
    run; it is called only when an item needs running (a pass over finished items loads no model),
    and a model that cannot load ends the batch with its own error. `on_event(item, event)` sees
    every event once it is saved; `item_record(record, item)` shapes the line written for an item."""
    for item in items:
        pid = import_item(store, item, source)
        done = finished_run(store, engine.kind, pid, settings, model)
        if done is not None:
            yield ItemOutcome(item, pid, "cached", done["id"], item_record(engine.run_record(store, done["id"]), item))
            continue
        job = get_job()
        run_id, error, last = None, None, None
        try:
            with store.transaction():  # checked again with the open: another process may have just finished it
                done = finished_run(store, engine.kind, pid, settings, model)
                if done is None:
                    run_id, _ = open_run_for(store, engine.kind, pid, settings, model)
            if done is not None:
                yield ItemOutcome(item, pid, "cached", done["id"], item_record(engine.run_record(store, done["id"]), item))
                continue
            for event in job(pid, run_id):
                last = event
                if on_event is not None:
                    on_event(item, event)
                if isinstance(event, ev.RunError) and event.fatal:
                    error = f"{event.where or 'model'} error: {event.message}"
        except RunBusy as exc:  # another live process drives this run: it is theirs to finish
            yield ItemOutcome(item, pid, "held", run_id, None, str(exc), exc.holder)
            continue
        except Exception as exc:  # noqa: BLE001  (one item's failure must not end the batch)
            error = f"{type(exc).__name__}: {exc}"
        status = store.get_run(run_id)["status"] if run_id is not None and error is None else None
        if error is None and isinstance(last, engine.finish):
            yield ItemOutcome(item, pid, "done", run_id, item_record(engine.run_record(store, run_id), item))
        elif status == "finished":  # finished by another process between our open and our claim
            yield ItemOutcome(item, pid, "cached", run_id, item_record(engine.run_record(store, run_id), item))
        elif status == "paused":
            yield ItemOutcome(item, pid, "paused", run_id, item_record(engine.run_record(store, run_id), item))
        else:
            yield ItemOutcome(item, pid, "failed", run_id, None, error or "the run ended without finishing")
