"""Judging queues: stored drafts handed to named annotators, each judged by k people, nobody seeing
another's scores before submitting their own.

Knows:
- A queue (`create_queue`) has a name, a rubric (the criteria an R2 judge scores by,
  core.r2.judge.DEFAULT_RUBRIC unless given), the overlap k (how many people judge each item), the
  score scale (1 to 10 by default, as the R2 judge's) and how long a handed-out task is held
  (`task_timeout_s`).
- An item is any stored draft, named by a reference: `traj:ID` (or a bare number) is a trajectory
  (REER, R2 or imported; its current version's answer is judged, its thinking shown beside it), and
  `r2:RUN_ID:VERSION` is one text of an R2 run (0 = the first draft, r = the revision of round r).
  The text judged is copied into the item when it is added, so a later edit changes nothing already
  scored.
- `next_task(queue, annotator)` hands the annotator their own task again if they hold a live one
  (a reload or a killed client gets it back); else an item they have neither judged nor hold,
  whose people's judgments plus live tasks are below k, preferring the fewest judgments, then the
  oldest item. The choice and the hand-out are one write transaction (BEGIN IMMEDIATE), so two
  processes asking at once never push an item past k. A task not submitted within the timeout
  expires and its slot goes back to the queue.
- `submit` saves a judgment (scores per criterion, overall, critique, note, annotator, time) in one
  transaction and drops the annotator's task; refused when the annotator judged the item already,
  when k people have (or hold live tasks on) it, or when the item was never handed to that
  annotator (`next_task` records every hand-out for good) unless the queue was made with
  `open_items=True` (`judge queue create --open-items`: anyone may judge any item by its id). A judgment saved is never lost (each is committed,
  the store's WAL keeps it across a kill).
- `scores_visible(item, annotator)` is False until that annotator has submitted on the item;
  `judgments(item, viewer)` raises ScoresHidden until then (a lead reads them with `as_lead=True`);
  `judged_items(queue, viewer)` are the items whose scores that viewer may see (the Agreement and
  Calibration views of a person who is not a lead are limited to them).
- A model judge's judgments (annotator "model:<spec>", core.judging.calibration) are stored beside
  people's with role "model"; they never count towards k and are never handed tasks.
- `progress` per queue and per annotator.

Does not know: agreement statistics (core.judging.agreement), model judges (core.judging.calibration),
how a task is shown (the studio's judging page, the CLI's `judge next`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Sequence

from core import annotators as who
from core.store import NotFound, Store, StoreError, now

DEFAULT_OVERLAP = 2  # people per item unless the queue says otherwise
DEFAULT_TIMEOUT_S = 30 * 60.0  # a handed-out task is held this long, then goes back to the queue
MAX_OVERLAP = 50  # more people per item than this is surely a typo


class JudgingError(StoreError):
    """A judging request the queue cannot carry out; the message names the queue, item or field and the fix."""


class ScoresHidden(JudgingError):
    """Another annotator's scores were asked for before the asker submitted their own."""


@dataclass(frozen=True)
class Task:
    """One item handed to one annotator."""
    item_id: int  # the queue item (judging_items.id)
    queue: str  # the queue's name
    ref: str  # the draft it copies (traj:ID or r2:RUN:VERSION)
    query: str  # the task the draft answers
    thinking: str  # the draft's thinking, shown beside it ("" for an R2 draft)
    text: str  # the text to judge
    rubric: tuple[str, ...]  # criteria to score, in order
    low: float  # lowest score
    high: float  # highest score
    annotator: str  # who holds it
    expires_at: float  # unix time after which the task goes back to the queue

    def as_dict(self) -> dict:
        return {**asdict(self), "rubric": list(self.rubric)}


def _queue_row(store: Store, name: str) -> dict:
    row = next(store.db.query("SELECT * FROM judging_queues WHERE name = ?", [name]), None)
    if row is None:
        raise NotFound(f"judging queue {name!r} does not exist; create it with `palimpsest judge queue create {name}`")
    row["rubric"] = json.loads(row["rubric"])
    return row


def get_queue(store: Store, name: str) -> dict:
    """The queue's row: name, rubric (list), overlap, low, high, task_timeout_s, created_by, created_at."""
    with store.reading():
        return _queue_row(store, name)


def list_queues(store: Store) -> list[dict]:
    with store.reading():
        names = [r["name"] for r in store.db.query("SELECT name FROM judging_queues ORDER BY created_at, name")]
        return [_queue_row(store, n) for n in names]


def create_queue(store: Store, name: str, rubric: Sequence[str] | None = None, overlap: int = DEFAULT_OVERLAP,
                 low: float = 1, high: float = 10, task_timeout_s: float = DEFAULT_TIMEOUT_S,
                 created_by: str | None = None, open_items: bool = False) -> dict:
    """A new queue; JudgingError naming the field when a value is not allowed or the name is taken.
    `open_items`: anyone may submit any item by id, handed out or not (module docstring)."""
    from core.r2.judge import DEFAULT_RUBRIC

    if not isinstance(name, str) or not name.strip() or len(name) > 100 or any(not c.isprintable() for c in name):
        raise JudgingError(f"queue name: {str(name)[:40]!r}; give 1 to 100 printable characters, e.g. week-12")
    name = name.strip()
    crit = [c.strip() for c in (rubric if rubric is not None else DEFAULT_RUBRIC) if isinstance(c, str) and c.strip()]
    if not crit or len(set(crit)) != len(crit):
        raise JudgingError(f"queue {name!r} rubric: give one or more distinct criteria")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 1 <= overlap <= MAX_OVERLAP:
        raise JudgingError(f"queue {name!r} overlap: {overlap!r}; give a whole number of people per item, 1 to {MAX_OVERLAP}")
    if not (_finite(low) and _finite(high) and low < high):
        raise JudgingError(f"queue {name!r} scale: {low!r} to {high!r}; give numbers with low below high")
    if not (_finite(task_timeout_s) and task_timeout_s > 0):
        raise JudgingError(f"queue {name!r} task timeout: {task_timeout_s!r}; give seconds above 0")
    by = who.resolve(created_by)
    with store.transaction():
        if store.db["judging_queues"].count_where("name = ?", [name]):
            raise JudgingError(f"judging queue {name!r} exists already; add items to it or pick another name")
        store.db["judging_queues"].insert({"name": name, "rubric": json.dumps(crit, ensure_ascii=False),
                                           "overlap": overlap, "low": float(low), "high": float(high),
                                           "task_timeout_s": float(task_timeout_s), "created_by": by,
                                           "created_at": now(), "open_items": int(bool(open_items))})
    return get_queue(store, name)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---- items -------------------------------------------------------------------------------------

def draft(store: Store, ref: str | int) -> dict:
    """{ref, prompt_id, query, thinking, text} of a stored draft; JudgingError for a reference that
    names nothing stored (the message shows the two forms)."""
    from core.data import curation

    forms = "use traj:ID (a trajectory) or r2:RUN_ID:VERSION (a text of an R2 run)"
    raw = str(ref).strip()
    if raw.isdigit():
        raw = f"traj:{raw}"
    kind, _, rest = raw.partition(":")
    if kind == "traj" and rest.isdigit():
        try:
            row = store.get_trajectory(int(rest))
        except NotFound:
            raise JudgingError(f"item {raw}: no trajectory {rest}; see `palimpsest review list`") from None
        cur = curation.current(store, row["id"], row)
        query = store.get_prompt(row["prompt_id"])["query"] if row.get("prompt_id") else ""
        return {"ref": raw, "prompt_id": row.get("prompt_id"), "query": query, "thinking": cur["thinking"],
                "text": cur["answer"]}
    if kind == "r2" and ":" in rest:
        run_id, _, version = rest.rpartition(":")
        if not version.isdigit():
            raise JudgingError(f"item {raw}: the version must be a whole number; {forms}")
        try:
            run = store.get_run(run_id)
        except NotFound:
            raise JudgingError(f"item {raw}: no run {run_id!r}; see `palimpsest r2 list`") from None
        if run["kind"] != "r2":
            raise JudgingError(f"item {raw}: run {run_id!r} is a {run['kind']} run; r2: names R2 runs' texts")
        text = _r2_text(store, run_id, int(version))
        if text is None:
            raise JudgingError(f"item {raw}: run {run_id!r} has no text of version {version} "
                               "(0 = first draft, r = the revision of round r)")
        query = store.get_prompt(run["prompt_id"])["query"]
        return {"ref": f"r2:{run_id}:{int(version)}", "prompt_id": run["prompt_id"], "query": query,
                "thinking": "", "text": text}
    raise JudgingError(f"item {str(ref)[:60]!r}: not a draft reference; {forms}")


def _r2_text(store: Store, run_id: str, version: int) -> str | None:
    for e in store.events(run_id):
        if version == 0 and e.kind == "r2_drafted":
            return e.draft
        if version > 0 and e.kind == "r2_revised" and e.round == version:
            return e.text
    return None


def add_items(store: Store, queue: str, refs: Sequence[str | int], added_by: str | None = None) -> tuple[list[int], int]:
    """Put drafts in the queue, in one transaction (all or none); returns (new item ids, how many
    were there already)."""
    q = get_queue(store, queue)
    drafts = [draft(store, r) for r in refs]
    if not drafts:
        raise JudgingError(f"queue {queue!r}: no items given; name drafts as traj:ID or r2:RUN_ID:VERSION")
    by = who.resolve(added_by)
    new, dup = [], 0
    with store.transaction():
        for d in drafts:
            if not d["text"].strip():
                raise JudgingError(f"item {d['ref']}: the text is empty; nothing to judge")
            if store.db["judging_items"].count_where("queue = ? AND ref = ?", [q["name"], d["ref"]]):
                dup += 1
                continue
            new.append(store.db["judging_items"].insert({**d, "queue": q["name"], "added_by": by,
                                                         "added_at": now()}).last_pk)
    return new, dup


def items(store: Store, queue: str) -> list[dict]:
    """The queue's items in order: id, ref, prompt_id, query, thinking, text, added_by, added_at."""
    get_queue(store, queue)
    with store.reading():
        return list(store.db.query("SELECT * FROM judging_items WHERE queue = ? ORDER BY id", [queue]))


def get_item(store: Store, item_id: int) -> dict:
    with store.reading():
        row = next(store.db.query("SELECT * FROM judging_items WHERE id = ?", [item_id]), None)
    if row is None:
        raise NotFound(f"judging item {item_id!r} does not exist; see `palimpsest judge status QUEUE --items`")
    return row


# ---- handing out and taking in -------------------------------------------------------------------

def _task(q: dict, item: dict, annotator: str, expires_at: float) -> Task:
    return Task(item_id=item["id"], queue=q["name"], ref=item["ref"], query=item["query"] or "",
                thinking=item["thinking"] or "", text=item["text"], rubric=tuple(q["rubric"]), low=q["low"],
                high=q["high"], annotator=annotator, expires_at=expires_at)


def _person(annotator: str, where: str = "annotator") -> str:
    name = who.resolve(annotator)
    if name is None:
        raise JudgingError(f"{where}: say who is judging (--annotator NAME)")
    return name


def next_task(store: Store, queue: str, annotator: str, now_s: float | None = None,
              exclude: Sequence[int] = (), rank: Sequence[int] = ()) -> Task | None:
    """The annotator's next task (see the module docstring), or None when nothing is left for them.
    Items this person skipped (`release`) come last, oldest skip first: they get one back only when
    nothing else waits for them. `exclude`: item ids not to hand out now, unless one is the task they
    still hold. `rank`: item ids in the order to prefer them (a policy's, core.judging.pairwise),
    before fewest-judgments-first."""
    name = _person(annotator)
    skip = sorted({int(i) for i in exclude})
    t = time.time() if now_s is None else now_s
    with store.transaction():
        q = _queue_row(store, queue)
        store.db.execute("DELETE FROM judging_tasks WHERE expires_at <= ? AND item_id IN "
                         "(SELECT id FROM judging_items WHERE queue = ?)", [t, q["name"]])
        held = next(store.db.query(
            "SELECT i.*, t.expires_at FROM judging_tasks t JOIN judging_items i ON i.id = t.item_id "
            "WHERE i.queue = ? AND t.annotator = ? ORDER BY i.id LIMIT 1", [q["name"], name]), None)
        if held is not None:
            return _task(q, held, name, held["expires_at"])
        row = next(store.db.query(
            "SELECT i.*, "
            " (SELECT count(*) FROM judging_judgments j WHERE j.item_id = i.id AND j.role = 'person') AS done, "
            " (SELECT count(*) FROM judging_tasks t WHERE t.item_id = i.id) AS held, "
            " COALESCE((SELECT s.skipped_at FROM judging_skips s WHERE s.item_id = i.id AND s.annotator = ?), '') "
            "   AS skipped "
            "FROM judging_items i WHERE i.queue = ? "
            " AND NOT EXISTS (SELECT 1 FROM judging_judgments j WHERE j.item_id = i.id AND j.annotator = ?) "
            + (f" AND i.id NOT IN ({', '.join('?' * len(skip))}) " if skip else "") +
            " AND (SELECT count(*) FROM judging_judgments j WHERE j.item_id = i.id AND j.role = 'person') "
            "   + (SELECT count(*) FROM judging_tasks t WHERE t.item_id = i.id) < ? "
            "ORDER BY skipped, " + ("CASE " + " ".join(f"WHEN i.id = {int(i)} THEN {r}" for r, i in
                                                       enumerate(rank)) + f" ELSE {len(rank)} END, " if rank else "")
            + "done, done + held, i.id LIMIT 1", [name, q["name"], name, *skip, q["overlap"]]), None)
        if row is None:
            return None
        expires = t + q["task_timeout_s"]
        store.db["judging_tasks"].insert({"item_id": row["id"], "annotator": name, "handed_at": now(),
                                          "expires_at": expires})
        store.db.execute("INSERT OR IGNORE INTO judging_handouts (item_id, annotator, handed_at) VALUES (?, ?, ?)",
                         [row["id"], name, now()])
        return _task(q, row, name, expires)


def release(store: Store, item_id: int, annotator: str) -> bool:
    """Give a held task back unjudged (skip); True when the annotator held it. The skip is recorded,
    so `next_task` hands the item to this person again only when nothing else waits for them."""
    name = _person(annotator)
    with store.transaction():
        cur = store.db.execute("DELETE FROM judging_tasks WHERE item_id = ? AND annotator = ?", [item_id, name])
        if cur.rowcount == 1:
            store.db.execute("INSERT OR REPLACE INTO judging_skips (item_id, annotator, skipped_at) VALUES (?, ?, ?)",
                             [item_id, name, now()])
        return cur.rowcount == 1


def check_scores(q: dict, scores: dict | None, overall, where: str = "judgment") -> tuple[dict, float | None]:
    """({criterion: score or None} over the whole rubric, overall): `scores` may name criteria by
    their text or their 1-based number; every score on the queue's scale. A missing overall is the
    mean of the criteria when all are scored; else JudgingError naming the field."""
    rubric, low, high = q["rubric"], q["low"], q["high"]
    out: dict = {c: None for c in rubric}
    for key, value in (scores or {}).items():
        k = str(key).strip()
        crit = rubric[int(k) - 1] if k.isdigit() and 1 <= int(k) <= len(rubric) else k
        if crit not in out:
            raise JudgingError(f"{where}.scores: {str(key)[:60]!r} is not a criterion of queue {q['name']!r}; "
                               f"use the criterion's number (1 to {len(rubric)}) or its text")
        if value is not None and not (_finite(value) and low <= value <= high):
            raise JudgingError(f"{where}.scores[{k[:40]!r}]: {value!r} is not a number from {low:g} to {high:g}")
        out[crit] = value
    if overall is None:
        vals = list(out.values())
        if not all(v is not None for v in vals):
            raise JudgingError(f"{where}.overall: missing; give an overall score from {low:g} to {high:g} "
                               "(or score every criterion)")
        overall = round(sum(vals) / len(vals), 2)
    if not (_finite(overall) and low <= overall <= high):
        raise JudgingError(f"{where}.overall: {overall!r} is not a number from {low:g} to {high:g}")
    return out, overall


def submit(store: Store, item_id: int, annotator: str, scores: dict | None = None, overall: float | None = None,
           critique: str = "", note: str = "", now_s: float | None = None) -> int:
    """Save a person's judgment of a queue item, in one transaction; returns its id. Refused when the
    annotator judged it already, or when k people have judged it or hold live tasks on it (a task
    that timed out and was taken by someone else)."""
    name = _person(annotator)
    t = time.time() if now_s is None else now_s
    with store.transaction():
        item = get_item(store, item_id)
        q = _queue_row(store, item["queue"])
        if q.get("kind") == "pairwise":
            raise JudgingError(f"item {item_id}: queue {q['name']!r} is pairwise; say which draft you prefer "
                               "(`judge submit ITEM --prefer first|second|tie`)")
        got, total = check_scores(q, scores, overall)
        admit(store, item, q, name, t)
        jid = store.db["judging_judgments"].insert({
            "item_id": item_id, "queue": q["name"], "annotator": name, "role": "person",
            "scores": json.dumps(got, ensure_ascii=False), "overall": total, "critique": critique or "",
            "note": note or "", "created_at": now()}).last_pk
        store.db.execute("DELETE FROM judging_tasks WHERE item_id = ? AND annotator = ?", [item_id, name])
    return jid


def admit(store: Store, item: dict, q: dict, name: str, t: float) -> None:
    """Inside a write transaction: JudgingError unless `name` may submit a judgment of `item` now
    (not judged by them yet, handed to them unless the queue has open items, fewer than k others)."""
    item_id = item["id"]
    if store.db["judging_judgments"].count_where("item_id = ? AND annotator = ?", [item_id, name]):
        raise JudgingError(f"item {item_id}: {name} judged it already; each person judges an item once")
    if not q.get("open_items") and not store.db["judging_handouts"].count_where(
            "item_id = ? AND annotator = ?", [item_id, name]):
        raise JudgingError(f"item {item_id}: it was never handed to {name}; take tasks with `judge next "
                           f"{q['name']}` (queue {q['name']!r} takes only items handed out; a queue made with "
                           "--open-items takes any)")
    done = store.db["judging_judgments"].count_where("item_id = ? AND role = 'person'", [item_id])
    others = store.db["judging_tasks"].count_where("item_id = ? AND annotator != ? AND expires_at > ?",
                                                   [item_id, name, t])
    if done + others >= q["overlap"]:
        raise JudgingError(f"item {item_id}: {q['overlap']} people have judged it or hold it now (your task "
                           "timed out and went back to the queue); take the next task")


def record_model_judgment(store: Store, item_id: int, model: str, scores: dict, overall: float | None,
                          critique: str = "", note: str = "") -> int:
    """Save (or replace) a model judge's judgment of an item as annotator `model` ("model:<spec>");
    overall None keeps an unparsed reply on record (its note says why). Never counts towards k."""
    if not who.is_model(model):
        raise JudgingError(f"model judge {model!r}: name it model:<spec> (core.annotators.model_name)")
    with store.transaction():
        item = get_item(store, item_id)
        q = _queue_row(store, item["queue"])
        if overall is not None:
            got, overall = check_scores(q, {k: v for k, v in scores.items() if k in q["rubric"]}, overall,
                                        where="model judgment")
        else:
            got = {c: scores.get(c) for c in q["rubric"]}
        store.db.execute("DELETE FROM judging_judgments WHERE item_id = ? AND annotator = ?", [item_id, model])
        return store.db["judging_judgments"].insert({
            "item_id": item_id, "queue": q["name"], "annotator": model, "role": "model",
            "scores": json.dumps(got, ensure_ascii=False), "overall": overall, "critique": critique or "",
            "note": note or "", "created_at": now()}).last_pk


# ---- reading ----------------------------------------------------------------------------------

def scores_visible(store: Store, item_id: int, annotator: str) -> bool:
    """May this annotator see others' scores of the item? Only once they have submitted their own."""
    name = who.resolve(annotator)
    if name is None:
        return False
    with store.reading():
        return bool(store.db["judging_judgments"].count_where("item_id = ? AND annotator = ?", [item_id, name]))


def judged_items(store: Store, queue: str, viewer: str | None) -> set[int]:
    """The queue's items `viewer` has submitted a judgment on: the ones whose scores they may see."""
    name = who.resolve(viewer)
    if name is None:
        return set()
    with store.reading():
        return {r["item_id"] for r in store.db.query(
            "SELECT item_id FROM judging_judgments WHERE queue = ? AND annotator = ?", [queue, name])}


def _decoded(r: dict) -> dict:
    return {**r, "scores": json.loads(r["scores"]) if r.get("scores") else {}}


def judgments(store: Store, item_id: int, viewer: str | None = None, as_lead: bool = False) -> list[dict]:
    """Every judgment of the item (people's and models'), oldest first. A viewer sees them only after
    submitting their own (ScoresHidden before); `as_lead` reads them regardless (agreement, export)."""
    get_item(store, item_id)
    if not as_lead and not scores_visible(store, item_id, viewer or ""):
        raise ScoresHidden(f"item {item_id}: submit your own judgment first; others' scores stay hidden until then")
    with store.reading():
        rows = list(store.db.query("SELECT * FROM judging_judgments WHERE item_id = ? ORDER BY id", [item_id]))
    return [_decoded(r) for r in rows]


def queue_judgments(store: Store, queue: str, role: str | None = "person") -> list[dict]:
    """Every judgment in the queue (of `role`, or all when None), in item then id order."""
    get_queue(store, queue)
    sql = "SELECT * FROM judging_judgments WHERE queue = ?" + (" AND role = ?" if role else "") + " ORDER BY item_id, id"
    with store.reading():
        return [_decoded(r) for r in store.db.query(sql, [queue] + ([role] if role else []))]


def progress(store: Store, queue: str, now_s: float | None = None) -> dict:
    """{queue, overlap, items, judgments (people's), needed (items x k), complete (items with k),
    open_tasks (live), percent, annotators: {name: {judged, open}}, models: {name: judged}}."""
    q = get_queue(store, queue)
    t = time.time() if now_s is None else now_s
    with store.reading():
        n_items = store.db["judging_items"].count_where("queue = ?", [queue])
        per_item = store.db.execute(
            "SELECT i.id, (SELECT count(*) FROM judging_judgments j WHERE j.item_id = i.id AND j.role = 'person') "
            "FROM judging_items i WHERE i.queue = ?", [queue]).fetchall()
        people = store.db.execute("SELECT annotator, role, count(*) FROM judging_judgments WHERE queue = ? "
                                  "GROUP BY annotator, role ORDER BY annotator", [queue]).fetchall()
        tasks = store.db.execute("SELECT t.annotator, count(*) FROM judging_tasks t JOIN judging_items i "
                                 "ON i.id = t.item_id WHERE i.queue = ? AND t.expires_at > ? GROUP BY t.annotator",
                                 [queue, t]).fetchall()
    judged = sum(min(n, q["overlap"]) for _, n in per_item)
    annotators: dict[str, dict] = {}
    models: dict[str, int] = {}
    for name, role, n in people:
        if role == "model":
            models[name] = n
        else:
            annotators.setdefault(name, {"judged": 0, "open": 0})["judged"] = n
    for name, n in tasks:
        annotators.setdefault(name, {"judged": 0, "open": 0})["open"] = n
    needed = n_items * q["overlap"]
    return {"queue": queue, "overlap": q["overlap"], "items": n_items, "judgments": judged, "needed": needed,
            "complete": sum(1 for _, n in per_item if n >= q["overlap"]),
            "open_tasks": sum(n for _, n in tasks), "percent": round(100 * judged / needed, 1) if needed else 0.0,
            "annotators": annotators, "models": models}
