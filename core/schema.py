"""The store's schema: one function per migration, applied in order by core.dbfile.migrate (each
recorded in `_migrations`, so an old file is upgraded and reopening is a no-op).

Knows: the tables and indexes of prompts, runs and their events, trajectories and their human
versions, exports, training runs, run leases (m001-m007), and the annotators' and judging queues'
tables (m008-m011, below), in the order they must be applied: this is the one list. A new
migration is appended; an applied one is never edited.

The annotators' and judging tables:

- m008_annotators: `annotator` on trajectories (who made the last review act) and on versions (who
  wrote the edit; `author` stays as it was), and `review_log`, one row per review act (accept,
  reject, reset, rate, tag, untag, note, edit, revert) with its annotator and value. Rows saved
  before this migration have annotator NULL, which reads "unknown" (core.annotators.label).
- m009_judging: judging queues (a name, a rubric, the overlap k, the score scale, the time a handed
  task is held), their items (a stored draft by reference, with a copy of the text judged, so a
  later edit does not change what people scored), handed-out tasks (one per item and annotator,
  with the unix time it expires), judgments (one per item and annotator; people's count towards k,
  a model judge's, "model:<spec>", do not) and resolutions of disagreements (a lead's judgment or a
  note).
- m010_judging_handouts: `judging_handouts`, one row per item and annotator it was ever handed to
  (kept after the task expires or is submitted), so a submit for an item never handed to that
  person is refused; and `judging_queues.open_items` (1: any item of the queue may be submitted by
  id without a hand-out; 0, the default, refuses that). Live tasks at upgrade count as handed out.

- m011_judging_pairs: `judging_skips`, one row per item and annotator who gave its task back
  unjudged (such an item is handed to that person again only when nothing else waits for them);
  pairwise queues: `judging_queues.kind` ("scored", the default, or "pairwise"), `.policy` (which
  item `next` hands out: "fewest" judgments first, or "uncertain", the pair the current
  Bradley-Terry fit is least sure of) and `.seed` (of the order a pair is shown in); a pairwise
  item (`ref` "A vs B") holds two drafts, a (`ref_a`, query, thinking, text) and b (`ref_b`,
  `thinking_b`, `text_b`), with their sources (`source`, `source_b`: reer, r2, import, ...);
  `judging_handouts.swapped` (1: b was shown first to that person); `judging_judgments.prefer`
  ("a", "b" or "tie", in the item's own terms) and `.swapped` (the order the person saw).

Does not know: locking, reading or writing rows (core.store), how tasks are handed out or judgments
checked (core.judging.queue).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

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
    # exports: one row per export written (core.export): what, where, which filters, how many.
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


JUDGING_JSON_COLUMNS = {"judging_queues": ("rubric",), "judging_judgments": ("scores",),
                "judging_resolutions": ("scores",), "review_log": ("value",)}


def m008_annotators(db) -> None:
    db["trajectories"].add_column("annotator", str)  # who made the last review act; NULL: unknown (older rows)
    db["versions"].add_column("annotator", str)  # who wrote this edit; NULL: unknown
    db["review_log"].create({"id": int, "trajectory_id": int, "action": str, "value": str, "annotator": str,
                             "created_at": str},
                            pk="id", not_null={"trajectory_id", "action", "created_at"},
                            foreign_keys=[("trajectory_id", "trajectories", "id")])
    db["review_log"].create_index(["trajectory_id"])
    db["review_log"].create_index(["annotator"])


def m009_judging(db) -> None:
    db["judging_queues"].create({"name": str, "rubric": str, "overlap": int, "low": float, "high": float,
                                 "task_timeout_s": float, "created_by": str, "created_at": str},
                                pk="name", not_null={"rubric", "overlap", "low", "high", "task_timeout_s",
                                                     "created_at"})
    db["judging_items"].create({"id": int, "queue": str, "ref": str, "prompt_id": str, "query": str,
                                "thinking": str, "text": str, "added_by": str, "added_at": str},
                               pk="id", not_null={"queue", "ref", "text", "added_at"},
                               foreign_keys=[("queue", "judging_queues", "name")])
    db["judging_items"].create_index(["queue", "ref"], unique=True)
    db["judging_items"].create_index(["prompt_id"])
    db["judging_tasks"].create({"item_id": int, "annotator": str, "handed_at": str, "expires_at": float},
                               pk=("item_id", "annotator"), not_null={"item_id", "annotator", "expires_at"},
                               foreign_keys=[("item_id", "judging_items", "id")])
    db["judging_judgments"].create({"id": int, "item_id": int, "queue": str, "annotator": str, "role": str,
                                    "scores": str, "overall": float, "critique": str, "note": str,
                                    "created_at": str},
                                   pk="id", not_null={"item_id", "queue", "annotator", "role", "scores",
                                                      "created_at"},
                                   foreign_keys=[("item_id", "judging_items", "id")])
    db["judging_judgments"].create_index(["item_id", "annotator"], unique=True)
    db["judging_judgments"].create_index(["queue", "annotator"])
    db["judging_resolutions"].create({"id": int, "item_id": int, "resolver": str, "overall": float,
                                      "scores": str, "note": str, "created_at": str},
                                     pk="id", not_null={"item_id", "created_at"},
                                     foreign_keys=[("item_id", "judging_items", "id")])
    db["judging_resolutions"].create_index(["item_id"])


def m010_judging_handouts(db) -> None:
    db["judging_handouts"].create({"item_id": int, "annotator": str, "handed_at": str},
                                  pk=("item_id", "annotator"), not_null={"item_id", "annotator"},
                                  foreign_keys=[("item_id", "judging_items", "id")])
    db.execute("INSERT OR IGNORE INTO judging_handouts (item_id, annotator, handed_at) "
               "SELECT item_id, annotator, handed_at FROM judging_tasks")
    db["judging_queues"].add_column("open_items", int, not_null_default=0)


def m011_judging_pairs(db) -> None:
    db["judging_skips"].create({"item_id": int, "annotator": str, "skipped_at": str},
                               pk=("item_id", "annotator"), not_null={"item_id", "annotator"},
                               foreign_keys=[("item_id", "judging_items", "id")])
    db["judging_queues"].add_column("kind", str, not_null_default="scored")  # scored | pairwise
    db["judging_queues"].add_column("policy", str, not_null_default="fewest")  # fewest | uncertain
    db["judging_queues"].add_column("seed", int, not_null_default=0)  # seed of the order pairs are shown in
    for col in ("source", "ref_a", "ref_b", "thinking_b", "text_b", "source_b"):
        db["judging_items"].add_column(col, str)  # NULL on a scored queue's items
    db["judging_handouts"].add_column("swapped", int)  # pairwise: 1 when b was shown first
    db["judging_judgments"].add_column("prefer", str)  # pairwise: a, b or tie
    db["judging_judgments"].add_column("swapped", int)  # pairwise: the order the person saw


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    m001_prompts_runs_events, m002_trajectories, m003_trajectory_details, m005_curation, m006_training,
    m007_run_lease, m008_annotators, m009_judging, m010_judging_handouts,
    m011_judging_pairs]
