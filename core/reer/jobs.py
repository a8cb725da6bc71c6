"""Running REER over stored prompts, one or many: every event saved as it happens, unfinished runs resumed.

`reer_job` is what the CLI and the studio call: it finds this prompt's unfinished run with the
same settings and model (or creates one), and drives `core.reer.search.reer_search` on it through
the shared machinery (core.runs.driver.drive): under the run's lease (a second driver gets
`core.runs.lease.RunBusy`), resumed from the stored history, each event appended to the store
before it is passed on, and the trajectory saved when `ReerFinished` is stored. A kill at any
point leaves the store consistent; calling `reer_job` again continues. `run_record` and
`save_trajectory` rebuild a stored run's record and trajectory row from its events.

`reer_items` is the batch form `palimpsest reer run` uses (core.runs.batch.run_items: skips
finished items, one outcome per item); its records carry the input's own id.

R2's jobs module is its mirror. Does not know: the search itself (core.reer.search), argument
parsing or progress bars.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from core import events as ev
from core.item import Item
from core.models.lm import LM, LMError, require
from core.reer.config import ReerConfig
from core.reer.search import Controls, reer_search
from core.reer.state import record_from_events, trajectory_fields
from core.runs.batch import ItemOutcome, run_items
from core.runs.driver import drive, open_run_for
from core.runs.engine import Engine
from core.runs.lease import LEASE_TTL_S
from core.store import Store

REER = Engine(kind="reer", finish=ev.ReerFinished, record=record_from_events, trajectory=trajectory_fields)


def check_scorer(scorer: LM, cfg: ReerConfig) -> None:
    """LMError, in one line naming the template that works, when `scorer` cannot score REER's layout:
    a model with no chat template (a base model) scores only template `none`; a server must return
    prompt log-probs. Called before any text is generated."""
    needs = {"score"} | ({"chat_template"} if cfg.template != "none" else set())
    missing = getattr(scorer, "missing", None)
    lacking = missing(needs) if callable(missing) else ""
    if not lacking:
        return
    if cfg.template != "none" and not (callable(missing) and missing(needs - {"chat_template"})):
        raise LMError(f"REER: the scorer {scorer.name} cannot score --template {cfg.template}: {lacking}; use "
                      f"--template none (x, z and y as plain text, docs/assistant-turn.md)")
    raise LMError(f"REER: the scorer {scorer.name}: {lacking}")


def reer_job(store: Store, lm: LM, prompt_id: str, cfg: ReerConfig = ReerConfig(),
             controls: Controls | None = None, run_id: str | None = None, owner: str | None = None,
             lease_ttl_s: float = LEASE_TTL_S, scorer: LM | None = None) -> Iterator[ev.Event]:
    """Run or resume REER on a stored prompt; yields each event after it is saved. `run_id`: drive
    that run with its own stored settings. `scorer`: the model that scores (loaded by the caller
    from the settings' `scorer` spec; None: `lm` scores). Raises RunBusy before any event when
    another live owner drives the run; `owner` defaults to a fresh lease owner."""
    prompt = store.get_prompt(prompt_id)
    if run_id is not None:
        cfg = ReerConfig.from_dict(store.get_run(run_id)["settings"])
    if scorer is None and cfg.scorer.strip():  # never score with the writer a run whose settings name another
        raise LMError(f"REER: this run is scored by {cfg.scorer.strip()!r}: load that model and pass it as the scorer")
    sc = scorer if scorer is not None else lm
    check_scorer(sc, cfg)  # refused before the draft, not after
    require(lm, {"prefix", "count_tokens"}, "REER")  # the writer: a server that cannot is refused here too
    if run_id is None:
        run_id, _ = open_run_for(store, REER.kind, prompt_id, cfg.as_dict(), lm.name)

    def search(history: Sequence[ev.Event]) -> Iterator[ev.Event]:
        return reer_search(lm, run_id, prompt_id, prompt["query"], prompt["reference"], cfg,
                           controls=controls, history=history, scorer=sc)

    yield from drive(store, REER, run_id, search, owner, lease_ttl_s)


# run_record(store, run_id): a stored run's output record (core.reer.state.record_from_events);
# save_trajectory(store, run_id): write or refresh its trajectory row (core.reer.state.trajectory_fields)
run_record, save_trajectory = REER.run_record, REER.save_trajectory


# ---- many items (the CLI) ---------------------------------------------------------------------

def under_item_id(rec: dict, item: Item) -> dict:
    """A run's output record under the input's own id (the store's prompt id kept beside it)."""
    rec = dict(rec)
    return {"id": item.id, "prompt_id": rec.pop("id"), **rec}


def reer_items(store: Store, items: Sequence[Item], cfg: ReerConfig, model: str, get_lm: Callable[[], LM],
               source: str | None = None,
               on_event: Callable[[Item, ev.Event], None] | None = None,
               concurrency: int = 1, get_scorer: Callable[[], LM] | None = None) -> Iterator[ItemOutcome]:
    """One outcome per item (core.runs.batch: in order with `concurrency` 1, else as items finish,
    each with its `index`). `model` is the name the loaded LM will carry (its spec); `get_lm` (and
    `get_scorer`, the model of `cfg.scorer`) is called only when some item needs a search. The
    scorer is loaded and checked (check_scorer) first, so a scorer that cannot score the layout is
    refused (LMError, ending the batch) before the writer loads or any item is searched."""
    def get_job():
        sc = get_scorer() if get_scorer is not None and cfg.scorer.strip() else None
        if sc is not None:
            check_scorer(sc, cfg)
        lm = get_lm()
        return lambda prompt_id, run_id: reer_job(store, lm, prompt_id, cfg, run_id=run_id, scorer=sc)

    return run_items(store, items, REER, cfg.as_dict(), model, get_job, source, on_event, under_item_id,
                     concurrency=concurrency)
