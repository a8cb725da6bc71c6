"""Pairwise judging queues: two drafts side by side, a person says which is better (or a tie).

Knows:
- A pairwise queue (`create_pairwise_queue`) is a judging queue (core.judging.queue) of kind
  "pairwise" with one criterion (the question asked, e.g. "Which is the better essay?"), the
  overlap k, a next-item policy ("fewest": fewest judgments first, as scored queues; "uncertain":
  the pair the current Bradley-Terry fit is least sure of, core.judging.ranking.uncertain_order)
  and a seed for the order pairs are shown in.
- An item is a pair of stored drafts a and b (the two refs in sorted order, so a pair is added
  once whichever way it is named), with each draft's source (core.data.curation.source_of: reer,
  r2, import or an export's source). `all_pairs` names every pair of some drafts; `source_pairs`,
  for every prompt, every pair of its trajectories whose sources differ (so systems are compared on
  the same prompt).
- `next_pair` hands out a task as `next_task` does (the same overlap, timeout, hand-out record,
  skip rule); which draft is shown first is drawn per (item, person) from the queue's seed and
  stored on the hand-out (`judging_handouts.swapped`), so position bias can be measured and a
  person who reloads sees the same order.
- `submit_pair` takes "first", "second" or "tie" in the order that person saw, stores it in the
  item's terms (`prefer` a, b or tie, with `swapped`), under the same rules as a scored judgment
  (core.judging.queue.admit): handed out, once per person, at most k people, nobody sees another's
  choice before their own (core.judging.queue.judgments).

Does not know: the fit and its intervals (core.judging.ranking), how a pair is shown.
"""
from __future__ import annotations

import itertools
import random
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from core import annotators as who
from core.judging import queue as jq
from core.store import Store, now

POLICIES = ("fewest", "uncertain")
PREFER = ("first", "second", "tie")
DEFAULT_CRITERION = "Which draft is better writing for this task?"


@dataclass(frozen=True)
class PairTask:
    """One pair handed to one person, in the order they see it."""
    item_id: int  # the queue item (judging_items.id)
    queue: str  # the queue's name
    query: str  # the task both drafts answer (the first draft's prompt)
    criterion: str  # the question asked
    first: dict  # {ref, source, thinking, text} of the draft shown first (left)
    second: dict  # the same of the draft shown second (right)
    swapped: bool  # True when the item's b is shown first
    annotator: str  # who holds it
    expires_at: float  # unix time after which the task goes back to the queue
    kind: str = "pairwise"  # tells a pairwise task from a scored one (core.judging.queue.Task)

    def as_dict(self) -> dict:
        return asdict(self)


def is_pairwise(q: dict) -> bool:
    return q.get("kind") == "pairwise"


def create_pairwise_queue(store: Store, name: str, criterion: str | None = None, overlap: int = jq.DEFAULT_OVERLAP,
                          policy: str = "fewest", seed: int = 0, task_timeout_s: float = jq.DEFAULT_TIMEOUT_S,
                          created_by: str | None = None, open_items: bool = False) -> dict:
    """A new pairwise queue; JudgingError naming the field when a value is not allowed."""
    if policy not in POLICIES:
        raise jq.JudgingError(f"queue {name!r} policy: {policy!r}; use one of {', '.join(POLICIES)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise jq.JudgingError(f"queue {name!r} seed: {seed!r}; give a whole number")
    with store.transaction():
        q = jq.create_queue(store, name, [criterion or DEFAULT_CRITERION], overlap=overlap, low=0, high=1,
                            task_timeout_s=task_timeout_s, created_by=created_by, open_items=open_items)
        store.db.execute("UPDATE judging_queues SET kind = 'pairwise', policy = ?, seed = ? WHERE name = ?",
                         [policy, seed, q["name"]])
    return jq.get_queue(store, q["name"])


def pairwise_queue(store: Store, queue: str) -> dict:
    """The queue's row; JudgingError when it is not a pairwise queue."""
    q = jq.get_queue(store, queue)
    if not is_pairwise(q):
        raise jq.JudgingError(f"queue {queue!r} scores one draft at a time; pairs go in a queue made with "
                              f"`palimpsest judge queue create NAME --pairwise`")
    return q


def source(store: Store, ref: str) -> str:
    """The source of a stored draft: a trajectory's (core.data.curation.source_of), "r2" for r2: texts."""
    from core.data import curation

    kind, _, rest = ref.partition(":")
    if kind == "traj":
        return curation.source_of(store.get_trajectory(int(rest)))
    return kind


def all_pairs(refs: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair of the given drafts (each unordered pair once)."""
    uniq = list(dict.fromkeys(str(r).strip() for r in refs))
    return list(itertools.combinations(uniq, 2))


def source_pairs(store: Store, sources: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """For every prompt, every pair of its trajectories whose sources differ (only `sources` when
    given): the pairs that compare systems on the same task."""
    from core.data import curation

    by_prompt: dict[str, list[tuple[str, str]]] = {}
    for row in store.list_trajectories():
        src = curation.source_of(row)
        if row.get("prompt_id") and (not sources or src in sources):
            by_prompt.setdefault(row["prompt_id"], []).append((f"traj:{row['id']}", src))
    out = []
    for rows in by_prompt.values():
        out += [(a, b) for (a, sa), (b, sb) in itertools.combinations(rows, 2) if sa != sb]
    return out


def add_pairs(store: Store, queue: str, pairs: Sequence[tuple[str, str]], added_by: str | None = None
              ) -> tuple[list[int], int]:
    """Put pairs of drafts in a pairwise queue, in one transaction (all or none); returns (new item
    ids, how many were there already). A pair of a draft with itself is refused."""
    q = pairwise_queue(store, queue)
    if not pairs:
        raise jq.JudgingError(f"queue {queue!r}: no pairs given; name two or more drafts (traj:ID or r2:RUN_ID:VERSION)")
    by = who.resolve(added_by)
    rows = []
    for a, b in pairs:
        da, db_ = jq.draft(store, a), jq.draft(store, b)
        if da["ref"] == db_["ref"]:
            raise jq.JudgingError(f"pair {a},{b}: a draft cannot be compared with itself; name two different drafts")
        da, db_ = sorted((da, db_), key=lambda d: d["ref"])
        for d in (da, db_):
            if not d["text"].strip():
                raise jq.JudgingError(f"item {d['ref']}: the text is empty; nothing to judge")
        rows.append({"ref": f"{da['ref']} vs {db_['ref']}", "ref_a": da["ref"], "prompt_id": da["prompt_id"],
                     "query": da["query"], "thinking": da["thinking"], "text": da["text"],
                     "source": source(store, da["ref"]), "ref_b": db_["ref"], "thinking_b": db_["thinking"],
                     "text_b": db_["text"], "source_b": source(store, db_["ref"])})
    new, dup = [], 0
    with store.transaction():
        for r in rows:
            if store.db["judging_items"].count_where("queue = ? AND ref = ?", [q["name"], r["ref"]]):
                dup += 1
                continue
            new.append(store.db["judging_items"].insert({**r, "queue": q["name"], "added_by": by,
                                                         "added_at": now()}).last_pk)
    return new, dup


def _side(item: dict, b: bool) -> dict:
    if b:
        return {"ref": item["ref_b"], "source": item["source_b"], "thinking": item["thinking_b"] or "",
                "text": item["text_b"]}
    return {"ref": item["ref_a"], "source": item["source"], "thinking": item["thinking"] or "", "text": item["text"]}


def _draw(seed: int, item_id: int, annotator: str) -> int:
    """1 when b is shown first to this person: a fair coin seeded by (queue seed, item, person)."""
    return int(random.Random(f"{seed}:{item_id}:{annotator}").random() < 0.5)


def next_pair(store: Store, queue: str, annotator: str, now_s: float | None = None,
              exclude: Sequence[int] = ()) -> PairTask | None:
    """The person's next pair (core.judging.queue.next_task's rules, ranked by the queue's policy),
    or None when nothing is left for them."""
    q = pairwise_queue(store, queue)
    rank: list[int] = []
    if q["policy"] == "uncertain":
        from core.judging.ranking import uncertain_order

        rank = uncertain_order(store, queue)
    t = jq.next_task(store, queue, annotator, now_s=now_s, exclude=exclude, rank=rank)
    if t is None:
        return None
    with store.transaction():
        row = next(store.db.query("SELECT swapped FROM judging_handouts WHERE item_id = ? AND annotator = ?",
                                  [t.item_id, t.annotator]))
        swapped = row["swapped"]
        if swapped is None:
            swapped = _draw(q["seed"], t.item_id, t.annotator)
            store.db.execute("UPDATE judging_handouts SET swapped = ? WHERE item_id = ? AND annotator = ?",
                             [swapped, t.item_id, t.annotator])
    item = jq.get_item(store, t.item_id)
    return PairTask(item_id=t.item_id, queue=q["name"], query=item["query"] or "", criterion=q["rubric"][0],
                    first=_side(item, bool(swapped)), second=_side(item, not swapped), swapped=bool(swapped),
                    annotator=t.annotator, expires_at=t.expires_at)


def submit_pair(store: Store, item_id: int, annotator: str, prefer: str, note: str = "",
                now_s: float | None = None) -> int:
    """Save a person's choice ("first", "second" or "tie", in the order they were shown) of a pair;
    returns the judgment's id. The rules of core.judging.queue.admit apply."""
    if prefer not in PREFER:
        raise jq.JudgingError(f"judgment.prefer: {prefer!r}; say first, second or tie")
    name = who.resolve(annotator)
    if name is None:
        raise jq.JudgingError("annotator: say who is judging (--annotator NAME)")
    t = time.time() if now_s is None else now_s
    with store.transaction():
        item = jq.get_item(store, item_id)
        q = jq.get_queue(store, item["queue"])
        if not is_pairwise(q):
            raise jq.JudgingError(f"item {item_id}: queue {q['name']!r} is scored, not pairwise; give scores "
                                  "(`judge submit ITEM --score 1=7 ...`)")
        jq.admit(store, item, q, name, t)
        row = next(store.db.query("SELECT swapped FROM judging_handouts WHERE item_id = ? AND annotator = ?",
                                  [item_id, name]), None)
        swapped = int(row["swapped"] or 0) if row else 0
        side = "tie" if prefer == "tie" else ("a" if (prefer == "first") != bool(swapped) else "b")
        jid = store.db["judging_judgments"].insert({
            "item_id": item_id, "queue": q["name"], "annotator": name, "role": "person", "scores": "{}",
            "overall": None, "critique": "", "note": note or "", "prefer": side, "swapped": swapped,
            "created_at": now()}).last_pk
        store.db.execute("DELETE FROM judging_tasks WHERE item_id = ? AND annotator = ?", [item_id, name])
    return jid


def preference_pairs(store: Store, queue: str) -> list[dict]:
    """The pairs people settled, for a preference export (issue 25's pairs, `source: "people"`): per
    pair of drafts of the same prompt whose people's majority chose one side (more votes for it than
    for the other side and for a tie): {prompt_id, prompt, chosen, rejected, chosen_ref, rejected_ref,
    votes: {a, b, tie}, source: "people"}. Pairs of different prompts are left out."""
    pairwise_queue(store, queue)
    votes: dict[int, dict] = {}
    for j in jq.queue_judgments(store, queue, role="person"):
        votes.setdefault(j["item_id"], {"a": 0, "b": 0, "tie": 0})[j["prefer"]] += 1
    out = []
    for it in jq.items(store, queue):
        v = votes.get(it["id"])
        if not v or not it["prompt_id"] or jq.draft(store, it["ref_b"])["prompt_id"] != it["prompt_id"]:
            continue
        win = "a" if v["a"] > max(v["b"], v["tie"]) else "b" if v["b"] > max(v["a"], v["tie"]) else None
        if win is None:
            continue
        sides = {"a": (it["ref_a"], it["text"]), "b": (it["ref_b"], it["text_b"])}
        (cref, ctext), (rref, rtext) = sides[win], sides["b" if win == "a" else "a"]
        out.append({"prompt_id": it["prompt_id"], "prompt": it["query"] or "", "chosen": ctext, "rejected": rtext,
                    "chosen_ref": cref, "rejected_ref": rref, "votes": v, "source": "people"})
    return out
