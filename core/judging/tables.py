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

- m011_judging_pairs: `judging_skips`, one row per item and annotator who gave its task back
  unjudged (such an item is handed to that person again only when nothing else waits for them);
  pairwise queues: `judging_queues.kind` ("scored", the default, or "pairwise"), `.policy` (which
  item `next` hands out: "fewest" judgments first, or "uncertain", the pair the current
  Bradley-Terry fit is least sure of) and `.seed` (of the order a pair is shown in); a pairwise
  item (`ref` "A vs B") holds two drafts, a (`ref_a`, query, thinking, text) and b (`ref_b`,
  `thinking_b`, `text_b`),
  with their sources (`source`, `source_b`: reer, r2, import, ...); `judging_handouts.swapped` (1:
  b was shown first to that person); `judging_judgments.prefer` ("a", "b" or "tie", in the item's
  own terms) and `.swapped` (the order the person saw).

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


MIGRATIONS = [m008_annotators, m009_judging, m010_judging_handouts, m011_judging_pairs]
