"""The shared run machinery (core.runs): opening a run is atomic under concurrent callers, per-step
seeds keep the values stored runs were made with, the controls' command queue, and the batch loop
(skip finished items, a failed item is an outcome). No model: fake events and tests/r2_fakes.FakeLM."""
from __future__ import annotations

import threading

import pytest

from core.data.items import Item
from core.r2.config import R2Config
from core.r2.jobs import r2_items
from core.runs.controls import ControlsBase
from core.runs.driver import open_run_for
from core.runs.seeds import step_seed
from core.store import open_store
from r2_fakes import FakeLM

SETTINGS = {"candidates": 2, "seed": 0}


def _race(open_store_for_thread, n_threads: int = 8) -> list[str]:
    """n threads call open_run_for on one prompt at the same instant; their run ids."""
    barrier, ids, errors = threading.Barrier(n_threads), [], []

    def one():
        store = open_store_for_thread()
        try:
            barrier.wait()
            ids.append(open_run_for(store, "reer", "p1", SETTINGS, "m")[0])
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return ids


@pytest.mark.parametrize("shared", [False, True], ids=["a store each (processes)", "one shared store (studio)"])
def test_concurrent_open_run_for_callers_get_one_run(tmp_path, shared):
    for trial in range(20):  # the select-then-insert race made a duplicate in 19 trials of 20
        db = tmp_path / f"race{trial}.db"
        with open_store(db) as store:
            store.add_prompt("Write a poem about rain.", "Rain on the roof.", id="p1")
            ids = _race((lambda: store) if shared else (lambda: open_store(db)))
            assert len(set(ids)) == 1, f"trial {trial}: {len(set(ids))} runs opened for one prompt"
            assert [r["id"] for r in store.list_runs(kind="reer")] == ids[:1]


def test_open_run_for_reuses_only_an_unfinished_run_of_the_same_kind_settings_and_model(store):
    store.add_prompt("Write a poem about rain.", "Rain on the roof.", id="p1")
    run, history = open_run_for(store, "reer", "p1", SETTINGS, "m")
    assert history == [] and open_run_for(store, "reer", "p1", SETTINGS, "m")[0] == run
    others = {open_run_for(store, "r2", "p1", SETTINGS, "m")[0], open_run_for(store, "reer", "p1", SETTINGS, "m2")[0],
              open_run_for(store, "reer", "p1", {**SETTINGS, "seed": 1}, "m")[0]}
    assert len(others) == 3 and run not in others
    store.db.execute("UPDATE runs SET status = 'finished' WHERE id = ?", [run])
    assert open_run_for(store, "reer", "p1", SETTINGS, "m")[0] != run  # a finished run is not reopened


def test_step_seed_keeps_the_values_stored_runs_were_made_with():
    # REER's former _step_seed(seed, step) and R2's former _seed(seed, round, stage): a stored run
    # resumed by this version must draw the very samples it drew before
    assert [step_seed(s, t) for s, t in [(0, 1), (4, 2), (12345, 10), (2 ** 31 - 1, 3)]] == \
        [7919, 4015850, 1607697985, 2146507402]
    assert [step_seed(s, r, st) for s, r, st in [(0, 0, 1), (0, 0, 2), (0, 2, 3), (7, 1, 4), (99999, 3, 5)]] == \
        [104729, 209458, 330025, 7426856, 1215599591]
    assert all(0 <= step_seed(s, t, st) < 2 ** 31 for s in (0, 10 ** 12) for t in (0, 99) for st in (0, 5))


def test_controls_queue_gives_the_oldest_command_of_the_kinds_asked():
    c = ControlsBase()
    c._queue("edit", 1, "a")
    c._queue("skip")
    c._queue("edit", 2, "b")
    assert c.take(("force",)) is None
    assert c.take(("skip", "force")) == ("skip",)
    assert c.take(("edit",)) == ("edit", 1, "a") and c.take(("edit",)) == ("edit", 2, "b")
    assert c.take(("edit",)) is None and not c.stopped()
    c.stop()
    assert c.stopped()


def test_batch_skips_finished_items_and_a_failing_item_does_not_end_it(tmp_path):
    items = [Item(id="a", query="Write a short story about a lighthouse keeper who finds a letter.",
                  reference="ref a", rubric=("Is it vivid?",)),
             Item(id="b", query="Write a short story about a lighthouse keeper's last night.", reference="ref b")]
    cfg = R2Config(max_rounds=1, threshold=9)
    loads = []

    def lms(fail_on=None):
        def get():
            loads.append(fail_on)
            lm = FakeLM(fail_on=fail_on)
            return lm, lm
        return get

    with open_store(tmp_path / "b.db") as store:
        class Broken(FakeLM):
            def generate(self, messages, config, prefix=""):
                raise RuntimeError("the model fell over")

        out = list(r2_items(store, items, cfg, "w", "j", lambda: (Broken(), Broken())))
        assert [o.status for o in out] == ["failed", "failed"] and "the model fell over" in out[0].error
        out = list(r2_items(store, items, cfg, "w", "j", lms()))
        assert [o.status for o in out] == ["done", "done"] and [o.record["id"] for o in out] == ["a", "b"]
        assert len(store.list_runs(kind="r2")) == 2  # the failed runs were resumed, not doubled
        loads.clear()
        again = list(r2_items(store, items, cfg, "w", "j", lms()))
        assert [o.status for o in again] == ["cached", "cached"] and loads == []  # nothing loaded
        assert [o.record for o in again] == [o.record for o in out]
