"""The store's schema: one function per migration, applied in order by core.store.migrate (each
recorded in `_migrations`, so an old file is upgraded and reopening is a no-op).

Knows: the tables and indexes of prompts, runs and their events, trajectories and their human
versions, exports, training runs, run leases (m001-m007), and the annotators' and judging queues'
tables declared in core.judging.tables (m008/m009), in the order they must be applied. A new
migration is appended; an applied one is never edited.

Does not know: locking, reading or writing rows (core.store).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from core.judging.tables import MIGRATIONS as JUDGING_MIGRATIONS

if TYPE_CHECKING:
    import sqlite_utils


def m001_prompts_runs_events(db: sqlite_utils.Database) -> None:
    db["prompts"].create({"id": str, "query": str, "reference": str, "category": str, "rubric": str,
                          "source": str, "content_hash": str, "created_at": str},
                         pk="id", not_null={"query", "reference", "content_hash", "created_at"})
    db["prompts"].create_index(["content_hash"], unique=True)
    db["runs"].create({"id": str, "kind": str, "prompt_id": str, "status": str, "model": str,
                       "settings": str, "settings_key": str, "finish_reason": str,
                       "created_at": str, "updated_at": str},
                      pk="id", not_null={"kind", "prompt_id", "status"}, defaults={"status": "running"},
                      foreign_keys=[("prompt_id", "prompts", "id")])
    db["runs"].create_index(["prompt_id", "kind", "status"])
    db["runs"].create_index(["status"])
    db["events"].create({"run_id": str, "seq": int, "kind": str, "payload": str, "created_at": str},
                        pk=("run_id", "seq"), not_null={"run_id", "seq", "kind", "payload"},
                        foreign_keys=[("run_id", "runs", "id")])


def m002_trajectories(db: sqlite_utils.Database) -> None:
    db["trajectories"].create(
        {"id": int, "run_id": str, "prompt_id": str, "kind": str, "thinking": str, "answer": str,
         "initial_score": float, "final_score": float, "initial_ppl": float, "final_ppl": float,
         "filters": str, "status": str, "rating": int, "tags": str, "notes": str,
         "created_at": str, "updated_at": str},
        pk="id", not_null={"run_id", "status"}, defaults={"status": "pending", "tags": "[]"},
        foreign_keys=[("run_id", "runs", "id"), ("prompt_id", "prompts", "id")])
    db["trajectories"].create_index(["run_id"], unique=True)
    db["trajectories"].create_index(["status", "kind"])
    db["trajectories"].create_index(["prompt_id"])


def m003_trajectory_details(db: sqlite_utils.Database) -> None:
    # details: the run's whole output record as JSON (REER: core.reer.state.record_from_events;
    # R2: its round-by-round record), so review and export never need to replay events.
    db["trajectories"].add_column("details", str)


def m005_curation(db: sqlite_utils.Database) -> None:
    # query_pending: 1 for a reference imported without its query (a folder of .txt files); its
    # query is stored as "" until the user or the model writes one (core.data.imports.write_query).
    db["prompts"].add_column("query_pending", int, not_null_default=0)
    # versions: human edits of a trajectory, numbered 1, 2...; the trajectory row itself is the
    # original (version 0) and is never overwritten by an edit; the highest version is current.
    db["versions"].create({"id": int, "trajectory_id": int, "version": int, "thinking": str, "answer": str,
                           "author": str, "note": str, "created_at": str},
                          pk="id", not_null={"trajectory_id", "version", "thinking", "answer", "created_at"},
                          foreign_keys=[("trajectory_id", "trajectories", "id")])
    db["versions"].create_index(["trajectory_id", "version"], unique=True)
    # exports: one row per export written (core.data.export): what, where, which filters, how many.
    db["exports"].create({"id": int, "format": str, "out": str, "status": str, "source": str, "count": int,
                          "skipped": str, "stats": str, "settings": str, "created_at": str},
                         pk="id", not_null={"format", "out", "count", "created_at"})


def m006_training(db: sqlite_utils.Database) -> None:
    # training runs (core.train.trainer) have no prompt, so they get their own tables: one row per run
    # (its TrainConfig as JSON, where its model goes) and its typed events, one row each, so the
    # studio can plot the loss while the run goes on.
    db["train_runs"].create({"id": str, "status": str, "model": str, "data": str, "out_dir": str,
                             "config": str, "finish_reason": str, "created_at": str, "updated_at": str},
                            pk="id", not_null={"status", "out_dir"}, defaults={"status": "running"})
    db["train_runs"].create_index(["out_dir", "status"])
    db["train_events"].create({"run_id": str, "seq": int, "kind": str, "step": int, "payload": str,
                               "created_at": str},
                              pk=("run_id", "seq"), not_null={"run_id", "seq", "kind", "payload"},
                              foreign_keys=[("run_id", "train_runs", "id")])


def m007_run_lease(db: sqlite_utils.Database) -> None:
    # lease_owner: who drives the run now ("host:pid:token", see core.runs.lease); lease_until: unix time
    # after which the lease has expired and another process may take the run over.
    db["runs"].add_column("lease_owner", str)
    db["runs"].add_column("lease_until", float)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    m001_prompts_runs_events, m002_trajectories, m003_trajectory_details, m005_curation, m006_training,
    m007_run_lease, *JUDGING_MIGRATIONS]
