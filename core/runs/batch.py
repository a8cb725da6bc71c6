"""Many items through one engine, as `palimpsest reer run` and `palimpsest r2 run` do: import,
skip what is done, resume, record, with up to `concurrency` items in flight.

For each item: store it as a prompt (once per content, `Store.add_prompt`); if a finished run of
that prompt with the same kind, settings and model is in the store, reuse it ("cached");
otherwise open the prompt's unfinished run (or a new one, core.runs.driver.open_run_for) and
drive it with the engine's job, which saves every event as it happens and resumes what a killed
process left behind. Each item ends as one `ItemOutcome` carrying the output record and the
item's position in the input (`index`), so a second pass over the same input with the same store
rewrites the same records without running again. A run that stops to wait for a person (R2's
human judging) is "paused".

Concurrency: with `concurrency` 1 the items run one after another in this thread and the
outcomes come in input order. With N > 1, N worker threads each take the next item and drive
it to its end; outcomes come as items finish (not in input order: `index` says where each
belongs; studio/cli/batch.py writes the file in input order). The items are stored as prompts
in input order before any worker starts, so each content's prompt id is the same as one at a
time would give it (the first item with that content names it). The store is the single writer:
one `Store` shared by the threads, whose lock serialises its one connection, so every event is
still committed as it happens. Two items of one input with the same content (one prompt) never
run at once: the second waits for the first and is then "cached". The engine's models are
loaded once (`get_job` is called under a lock). A model that cannot run two calls at once
(a local model holds a lock, core.models.hf) is still correct, only no faster.

Several processes may run the same items on one store: an item whose run another live process
drives (it holds the run's lease, core.runs.lease) is "held", with `holder` "PID n", and is
skipped, not failed; the other process finishes it. The look-up of a finished run and the
opening of an unfinished one share one write transaction, so an item finished by the other
process in between is "cached", never run twice.

A model error on one item is an outcome (status "failed"), not an exception: the caller goes on
with the next item. KeyboardInterrupt passes through; whatever was saved stays saved (with
workers, a stop flag ends each worker at its run's next event; a worker waiting on a model call
is a daemon thread and dies with the process; a run it leaves behind resumes on the next pass,
its lease taken over from the dead process).
Knows nothing of files, progress bars or argument parsing (studio/cli), nor of any engine's logic.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

from core import events as ev
from core.item import Item
from core.runs.driver import open_run_for
from core.runs.engine import Engine
from core.runs.lease import RunBusy
from core.store import BadValue, Store, settings_key

MAX_CONCURRENCY = 1024  # more threads than this helps no server and only costs memory


class BatchStopped(Exception):
    """A worker saw the batch's stop flag between two events (the batch was interrupted)."""


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
    index: int = 0  # the item's position in the input (outcomes of a concurrent batch come as items finish)


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
              item_record: Callable[[dict, Item], dict] = as_is, concurrency: int = 1) -> Iterator[ItemOutcome]:
    """One outcome per item (module docstring). `settings` and `model` are what the runs record.
    `get_job()` loads the engine's models and returns `job(prompt_id, run_id)`, which drives one
    run; it is called only when an item needs running (a pass over finished items loads no model),
    and a model that cannot load ends the batch with its own error. `on_event(item, event)` sees
    every event once it is saved (from the worker's thread when `concurrency` > 1);
    `item_record(record, item)` shapes the line written for an item. `concurrency`: items in
    flight at once (1: in order, in this thread)."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency {concurrency}: must be between 1 and {MAX_CONCURRENCY}")
    one = _ItemRunner(store, engine, settings, model, get_job, source, on_event, item_record)
    if concurrency == 1:
        for index, item in enumerate(items):
            yield one.run(index, item)
        return
    yield from _pooled(one, items, concurrency)


class _ItemRunner:
    """Runs one item to its outcome; shared by the workers of a concurrent batch."""

    def __init__(self, store, engine, settings, model, get_job, source, on_event, item_record):
        self.store, self.engine, self.settings, self.model = store, engine, settings, model
        self.source, self.on_event, self.item_record = source, on_event, item_record
        self._get_job, self._job_lock = get_job, threading.Lock()
        self._prompt_locks: dict[str, threading.Lock] = {}  # one per prompt: equal items never run at once
        self._locks_lock = threading.Lock()
        self.stop = threading.Event()  # set when the batch is interrupted: workers end at the next event

    def get_job(self):
        with self._job_lock:  # one model load however many workers need it at once
            return self._get_job()

    def prompt_lock(self, pid: str) -> threading.Lock:
        with self._locks_lock:
            return self._prompt_locks.setdefault(pid, threading.Lock())

    def record(self, run_id: str, item: Item) -> dict:
        return self.item_record(self.engine.run_record(self.store, run_id), item)

    def run(self, index: int, item: Item, pid: str | None = None) -> ItemOutcome:
        """The item's outcome; `pid` is its prompt id when it was already imported."""
        store, engine = self.store, self.engine
        pid = pid if pid is not None else import_item(store, item, self.source)
        with self.prompt_lock(pid):
            done = finished_run(store, engine.kind, pid, self.settings, self.model)
            if done is not None:
                return ItemOutcome(item, pid, "cached", done["id"], self.record(done["id"], item), index=index)
            job = self.get_job()
            run_id, error, last = None, None, None
            try:
                with store.transaction():  # checked again with the open: another process may have just finished it
                    done = finished_run(store, engine.kind, pid, self.settings, self.model)
                    if done is None:
                        run_id, _ = open_run_for(store, engine.kind, pid, self.settings, self.model)
                if done is not None:
                    return ItemOutcome(item, pid, "cached", done["id"], self.record(done["id"], item), index=index)
                events = job(pid, run_id)
                try:
                    for event in events:
                        last = event
                        if self.on_event is not None:
                            self.on_event(item, event)
                        if isinstance(event, ev.RunError) and event.fatal:
                            error = f"{event.where or 'model'} error: {event.message}"
                        if self.stop.is_set():
                            raise BatchStopped(f"run {run_id} stopped by the batch's interrupt")
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()  # the driver releases the lease now, not when the generator is collected
            except RunBusy as exc:  # another live process drives this run: it is theirs to finish
                return ItemOutcome(item, pid, "held", run_id, None, str(exc), exc.holder, index=index)
            except BatchStopped:
                raise
            except Exception as exc:  # noqa: BLE001  (one item's failure must not end the batch)
                error = f"{type(exc).__name__}: {exc}"
            status = store.get_run(run_id)["status"] if run_id is not None and error is None else None
        if error is None and isinstance(last, engine.finish):
            return ItemOutcome(item, pid, "done", run_id, self.record(run_id, item), index=index)
        if status == "finished":  # finished by another process between our open and our claim
            return ItemOutcome(item, pid, "cached", run_id, self.record(run_id, item), index=index)
        if status == "paused":
            return ItemOutcome(item, pid, "paused", run_id, self.record(run_id, item), index=index)
        return ItemOutcome(item, pid, "failed", run_id, None, error or "the run ended without finishing",
                           index=index)


def _pooled(one: _ItemRunner, items: Sequence[Item], concurrency: int) -> Iterator[ItemOutcome]:
    """The outcomes of `items` run by `concurrency` daemon worker threads, as they finish. An
    exception that is not an item's failure (a model that cannot load, a store that stays busy)
    stops the other workers and is raised here; so is KeyboardInterrupt, after setting the stop flag."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for index, item in enumerate(items):  # imported here, in input order: the prompt ids do not depend on the race
        todo.put((index, item, import_item(one.store, item, one.source)))
    results: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        while not one.stop.is_set():
            try:
                index, item, pid = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.put(one.run(index, item, pid))
            except BatchStopped:
                return
            except BaseException as exc:  # noqa: BLE001  (handed to the consuming thread, which raises it)
                results.put(exc)
                return

    workers = [threading.Thread(target=work, daemon=True, name=f"batch-{i}")
               for i in range(min(concurrency, len(items)))]
    for w in workers:
        w.start()
    try:
        for _ in range(len(items)):
            got = results.get()
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        one.stop.set()  # on an error, an interrupt or a consumer that stops early: no worker starts anything new
