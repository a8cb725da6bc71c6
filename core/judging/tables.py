"""The store's schema for annotators and judging (registered by core.store into its MIGRATIONS).

Knows two migrations, written like core.store's own (sqlite_utils calls on the Database only, so
this module imports nothing from core.store and core.store can import it):

- m008_annotators: `annotator` on trajectories (who made the last review act) and on versions (who
  wrote the edit; `author` stays as it was), and `review_log`, one row per review act (accept,
  reject, reset, rate, tag, untag, note, edit, revert) with its annotator and value. Rows saved
  before this migration have annotator NULL, which reads "unknown" (core.judging.annotator.label).
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

Does not know: how tasks are handed out or judgments checked (core.judging.queue).
"""
from __future__ import annotations

JSON_COLUMNS = {"judging_queues": ("rubric",), "judging_judgments": ("scores",),
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


MIGRATIONS = [m008_annotators, m009_judging, m010_judging_handouts]
