"""Curation: review status, rating, tags, notes and human edits of trajectories (REER, R2, import).

Knows the review fields of the trajectories table and the `versions` table (migration
m005_curation): a human edit adds version 1, 2, ... of a trajectory's thinking and answer;
the trajectory row itself is the original (version 0) and is never overwritten by an edit;
the highest version is the current one, which listings and exports use. Small typed
functions shared by the CLI (`palimpsest review`) and the studio.

Two score scales, never mixed: a trajectory's `final_score` column holds REER's score (clipped
log-perplexity of the reference, 0..2, lower is better) for REER runs, but the judge's overall
score (1..10 by default, higher is better) for R2 runs. `score_scale` says which a row carries;
`reer_score` / `judge_score` read each (None when the row is on the other scale), and listings
carry both as `reer_score` and `judge_score`. Filters bound each scale separately.

Annotators (migration m008_annotators, core.annotators): every act here (accept, reject, reset,
rate, tag, untag, note, edit, revert) records who did it: the `annotator` argument, else the one set
by `acting_as` around the call, else nobody (NULL, read "unknown"). The act is logged in
`review_log` (`history` reads it) and the trajectory's `annotator` column holds the last one to act;
an edit's version row holds its own. Logged in the same transaction as the act: both or neither.

Does not know: how trajectories are made (core.reer.search, core.r2.loop, core.data.imports) nor export formats
(core.export). Bad values raise core.store.BadValue naming the field and the fix; a missing
trajectory raises core.store.NotFound.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

from core import annotators as who
from core.store import TRAJECTORY_STATUSES, BadValue, Store, now

RATING_RANGE = (1, 5)  # ratings are 1 (poor) .. 5 (excellent)


@dataclass(frozen=True)
class TrajectoryFilter:
    status: str | None = None  # pending / accepted / rejected; None: any
    kind: str | None = None  # run kind: reer / r2 / import; None: any
    source: str | None = None  # where it came from (see source_of): reer / r2 / an imported file's source
    min_score: float | None = None  # REER score at least this (clipped log-PPL, lower is better); keeps only REER-scale rows
    max_score: float | None = None  # REER score at most this; keeps only REER-scale rows
    min_judge: float | None = None  # judge score at least this (R2 overall, higher is better); keeps only judged rows
    max_judge: float | None = None  # judge score at most this; keeps only judged rows
    min_chars: int | None = None  # current thinking at least this many characters
    max_chars: int | None = None  # current thinking at most this many characters
    passed_filters: bool | None = None  # True: only those whose quality filters passed; False: only failed
    failed_pending: bool | None = None  # False: leave out pending ones whose quality filters failed (the queue's
    #                                     default view; see queue_status); True: only those; None: both
    tags: tuple[str, ...] = ()  # carries every one of these tags
    search: str | None = None  # substring of the query, thinking or answer
    limit: int | None = None  # at most this many (in id order)


def source_of(row: dict) -> str:
    """Where a trajectory came from: its run kind, or for an import the source it was exported with."""
    if row.get("kind") == "import":
        details = row.get("details") or {}
        return str(details.get("source") or "import")
    return str(row.get("kind"))


SCALES = {"reer": "REER score (clipped log-perplexity of the reference, 0 to 2; lower is better)",
          "judge": "Judge score (R2 judge's overall score, 1 to 10 by default; higher is better)"}


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _imported_scores(row: dict) -> dict:
    scores = (row.get("details") or {}).get("scores") if row.get("kind") == "import" else None
    return scores if isinstance(scores, dict) else {}


def score_scale(row: dict) -> str:
    """"judge" for an R2 trajectory (or an import exported from one: source r2, or judge scores
    carried as `final_overall`), else "reer"."""
    if row.get("kind") == "r2":
        return "judge"
    if row.get("kind") == "import" and (source_of(row) == "r2" or _num(_imported_scores(row).get("final_overall"))):
        return "judge"
    return "reer"


def reer_score(row: dict, which: str = "final") -> float | None:
    """The REER score (`which`: initial or final) of a REER-scale row; None for judged rows."""
    v = row.get(f"{which}_score")
    return v if score_scale(row) == "reer" and _num(v) else None


def judge_score(row: dict, which: str = "final") -> float | None:
    """The judge's overall score (`which`: initial = the first draft's, final = the answer's) of a
    judged row; None for REER-scale rows. An R2 row keeps it in its score columns (and its record,
    the row's details, as `{which}_overall`); an import of an export in `scores.{which}_overall`
    (or, from exports older than the split, its score column)."""
    if score_scale(row) != "judge":
        return None
    v = row.get(f"{which}_score")
    if _num(v):
        return v
    if row.get("kind") == "r2":
        return _judged(row.get("details") or {}, which)
    v = _imported_scores(row).get(f"{which}_overall")
    return v if _num(v) else None


def _overall(j) -> float | None:
    return j.get("overall") if isinstance(j, dict) and _num(j.get("overall")) else None


def _judged(details: dict, which: str) -> float | None:
    """The judge's overall score of the first draft (`initial`) or of the answer (`final`) in an R2
    record: its own `{which}_overall`, else the judgment of the text that is the answer (a
    revision's `revision_judgment`, or a round draft's `judgment`), never merely the last round's."""
    if _num(details.get(f"{which}_overall")):
        return details[f"{which}_overall"]
    rounds = [r for r in details.get("rounds") or [] if isinstance(r, dict)]
    if which == "initial":
        return _overall(details.get("first_judgment") or (rounds[0].get("judgment") if rounds else None))
    final = details.get("final")
    for r in reversed(rounds):
        if final is not None and r.get("revision") == final and _overall(r.get("revision_judgment")) is not None:
            return _overall(r["revision_judgment"])
        if final is not None and r.get("draft") == final and _overall(r.get("judgment")) is not None:
            return _overall(r["judgment"])
    return None


FAILED = "failed filters"  # the queue status of a pending trajectory whose quality filters failed


def failed_filters(row: dict) -> bool:
    """Did the quality filters run on this trajectory and fail it? (A dropped REER run always has;
    R2 and most imports record none, so they never count as failed.)"""
    f = row.get("filters")
    return isinstance(f, dict) and not f.get("passed")


def queue_status(row: dict) -> str:
    """The status the review queue shows: the stored one, except that a pending trajectory whose
    filters failed reads "failed filters" (it is not work waiting for a decision; a person may still
    open it and accept or reject it one at a time)."""
    return FAILED if row.get("status") == "pending" and failed_filters(row) else str(row.get("status"))


def failed_reason(row: dict) -> str:
    """Why a trajectory failed its filters, in a few words: a dropped run, else the filters' reasons."""
    f = row.get("filters") if isinstance(row.get("filters"), dict) else {}
    reasons = [str(x) for x in f.get("reasons") or []]
    stop = (row.get("details") or {}).get("finish_reason") if isinstance(row.get("details"), dict) else None
    head = "dropped run" if stop == "dropped" else "failed the quality filters"
    return head + (f" ({'; '.join(reasons[:2])})" if reasons else "")


def versions(store: Store, traj_id: int) -> list[dict]:
    """The human edits of a trajectory, oldest first (version 1, 2, ...)."""
    store.get_trajectory(traj_id)
    rows = store.db.query("SELECT version, thinking, answer, author, annotator, note, created_at FROM versions "
                          "WHERE trajectory_id = ? ORDER BY version", [traj_id])
    return [{**r, "annotator": who.label(r["annotator"])} for r in rows]


def current(store: Store, traj_id: int, row: dict | None = None) -> dict:
    """{version, thinking, answer} in force: the newest edit, else the original (version 0)."""
    row = row or store.get_trajectory(traj_id)
    v = next(store.db.query("SELECT version, thinking, answer FROM versions WHERE trajectory_id = ? "
                            "ORDER BY version DESC LIMIT 1", [traj_id]), None)
    return v or {"version": 0, "thinking": row["thinking"] or "", "answer": row["answer"] or ""}


def _with_current(store: Store, row: dict) -> dict:
    cur = current(store, row["id"], row)
    return {**row, "original_thinking": row["thinking"], "original_answer": row["answer"],
            "thinking": cur["thinking"], "answer": cur["answer"], "version": cur["version"],
            "source": source_of(row), "tags": row.get("tags") or [], "scale": score_scale(row),
            "reer_score": reer_score(row), "judge_score": judge_score(row)}


def _outside(x: float | None, lo: float | None, hi: float | None) -> bool:
    """A bound on a scale leaves out rows with no score on it."""
    if lo is None and hi is None:
        return False
    return x is None or (lo is not None and x < lo) or (hi is not None and x > hi)


def list_trajectories(store: Store, flt: TrajectoryFilter = TrajectoryFilter()) -> list[dict]:
    """Trajectories matching `flt`, in id order, each with its current version applied (`thinking`,
    `answer`, `version`; the original text stays in `original_thinking` / `original_answer`) and its
    scores by scale (`scale`, `reer_score`, `judge_score`)."""
    if flt.status is not None and flt.status not in TRAJECTORY_STATUSES:
        raise BadValue(f"status: {flt.status!r} is not allowed; use one of {', '.join(TRAJECTORY_STATUSES)}")
    out = []
    for row in store.list_trajectories(status=flt.status, kind=flt.kind):
        r = _with_current(store, row)
        if flt.source is not None and flt.source != "all" and r["source"] != flt.source:
            continue
        if _outside(r["reer_score"], flt.min_score, flt.max_score) or \
                _outside(r["judge_score"], flt.min_judge, flt.max_judge):
            continue
        n = len(r["thinking"])
        if (flt.min_chars is not None and n < flt.min_chars) or (flt.max_chars is not None and n > flt.max_chars):
            continue
        if flt.passed_filters is not None and bool((r.get("filters") or {}).get("passed")) != flt.passed_filters:
            continue
        if flt.failed_pending is not None and (queue_status(r) == FAILED) != flt.failed_pending:
            continue
        if any(t not in r["tags"] for t in flt.tags):
            continue
        if flt.search:
            q = store.get_prompt(r["prompt_id"])["query"] if r.get("prompt_id") else ""
            if not any(flt.search.lower() in x.lower() for x in (q, r["thinking"], r["answer"])):
                continue
        out.append(r)
        if flt.limit is not None and len(out) >= flt.limit:
            break
    return out


def show(store: Store, traj_id: int) -> dict:
    """One trajectory with its current version, its prompt, its run, every edit and every review act
    (`history`); `annotator` is who acted last ("unknown" when nobody was recorded)."""
    r = _with_current(store, store.get_trajectory(traj_id))
    r["prompt"] = store.get_prompt(r["prompt_id"]) if r.get("prompt_id") else None
    r["run"] = store.get_run(r["run_id"])
    r["versions"] = versions(store, traj_id)
    r["history"] = history(store, traj_id)
    r["annotator"] = who.label(r.get("annotator"))
    return r


def log_act(store: Store, traj_id: int, action: str, value=None, annotator: str | None = None) -> str | None:
    """Record a review act in `review_log` and as the trajectory's last annotator (inside the caller's
    transaction when there is one); returns the annotator recorded (None: unknown)."""
    name = who.resolve(annotator)
    with store.transaction():
        store.db["review_log"].insert({"trajectory_id": traj_id, "action": action,
                                       "value": json.dumps(value, ensure_ascii=False), "annotator": name,
                                       "created_at": now()})
        store.db.execute("UPDATE trajectories SET annotator = ? WHERE id = ?", [name, traj_id])
    return name


def history(store: Store, traj_id: int) -> list[dict]:
    """The review acts on a trajectory, oldest first: {action, value, annotator ("unknown" when the act
    was saved without one), created_at}."""
    store.get_trajectory(traj_id)
    rows = store.db.query("SELECT action, value, annotator, created_at FROM review_log WHERE trajectory_id = ? "
                          "ORDER BY id", [traj_id])
    return [{**r, "value": json.loads(r["value"]) if r["value"] else None, "annotator": who.label(r["annotator"])}
            for r in rows]


def accept(store: Store, traj_id: int, annotator: str | None = None) -> None:
    with store.transaction():
        store.set_status(traj_id, "accepted")
        log_act(store, traj_id, "accept", None, annotator)


def reject(store: Store, traj_id: int, reason: str | None = None, annotator: str | None = None) -> None:
    """Reject a trajectory; a reason is appended to its notes."""
    with store.transaction():
        store.set_status(traj_id, "rejected")
        log_act(store, traj_id, "reject", reason, annotator)
        if reason:
            note(store, traj_id, f"rejected: {reason}", annotator=annotator)


def reset(store: Store, traj_id: int, annotator: str | None = None) -> None:
    """Back to pending."""
    with store.transaction():
        store.set_status(traj_id, "pending")
        log_act(store, traj_id, "reset", None, annotator)


def rate(store: Store, traj_id: int, rating: int | None, annotator: str | None = None) -> None:
    """Rate 1..5 (None clears the rating)."""
    with store.transaction():
        if rating is not None:
            lo, hi = RATING_RANGE
            if isinstance(rating, bool) or not isinstance(rating, int) or not lo <= rating <= hi:
                raise BadValue(f"trajectories.rating: must be an integer from {lo} to {hi}, got {rating!r}")
            store.annotate(traj_id, rating=rating)
        else:
            store.update_trajectory(traj_id, {"rating": None})
        log_act(store, traj_id, "rate", rating, annotator)


def _clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out = []
    for t in tags:
        if not isinstance(t, str) or not t.strip() or "," in t:
            raise BadValue(f"trajectories.tags: {t!r} is not a tag; use non-empty words without commas")
        out.append(t.strip())
    return out


def tag(store: Store, traj_id: int, *tags: str, annotator: str | None = None) -> list[str]:
    """Add tags (kept once each, in order added); returns the tags now."""
    new = _clean_tags(list(tags))
    with store.transaction():
        have = store.get_trajectory(traj_id).get("tags") or []
        now_tags = have + [t for i, t in enumerate(new) if t not in have and t not in new[:i]]
        store.annotate(traj_id, tags=now_tags)
        log_act(store, traj_id, "tag", new, annotator)
    return now_tags


def untag(store: Store, traj_id: int, *tags: str, annotator: str | None = None) -> list[str]:
    """Remove tags (absent ones are ignored); returns the tags now."""
    drop = _clean_tags(list(tags))
    with store.transaction():
        now_tags = [t for t in store.get_trajectory(traj_id).get("tags") or [] if t not in drop]
        store.update_trajectory(traj_id, {"tags": json.dumps(now_tags)})
        log_act(store, traj_id, "untag", drop, annotator)
    return now_tags


def note(store: Store, traj_id: int, text: str, replace: bool = False, annotator: str | None = None) -> str:
    """Append a line to the notes (or replace them); returns the notes now."""
    if not isinstance(text, str) or not text.strip():
        raise BadValue("trajectories.notes: the note is empty; write some text")
    with store.transaction():
        old = store.get_trajectory(traj_id).get("notes") or ""
        notes = text if replace or not old else f"{old}\n{text}"
        store.annotate(traj_id, notes=notes)
        log_act(store, traj_id, "note", {"text": text, "replace": replace}, annotator)
    return notes


def edit(store: Store, traj_id: int, thinking: str | None = None, answer: str | None = None,
         author: str | None = None, note: str | None = None, annotator: str | None = None) -> int:
    """Save a human edit as a new version (None keeps that part as it is now); returns its number.
    The original and earlier versions are kept. `annotator` (else the current one) is recorded on
    the version; `author` (free text, kept for older callers) defaults to the annotator, else "human"."""
    for name, value in (("thinking", thinking), ("answer", answer)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise BadValue(f"versions.{name}: must be a non-empty string; to drop a trajectory reject it instead")
    with store.transaction():
        cur = current(store, traj_id)
        new_thinking = cur["thinking"] if thinking is None else thinking
        new_answer = cur["answer"] if answer is None else answer
        if new_thinking == cur["thinking"] and new_answer == cur["answer"]:
            raise BadValue(f"versions: the edit of trajectory {traj_id} changes nothing; change the thinking or answer")
        version = cur["version"] + 1
        name = who.resolve(annotator)
        store.db["versions"].insert({"trajectory_id": traj_id, "version": version, "thinking": new_thinking,
                                     "answer": new_answer, "author": author or name or "human", "note": note,
                                     "annotator": name, "created_at": now()})
        store.update_trajectory(traj_id, {})
        log_act(store, traj_id, "edit", {"version": version, "note": note}, name)
    return version


def revert(store: Store, traj_id: int, version: int, author: str | None = None, annotator: str | None = None) -> int:
    """Make an earlier version (0 = the original) current again, as a new version; returns its number."""
    texts = {0: current_original(store, traj_id)} | {v["version"]: v for v in versions(store, traj_id)}
    if version not in texts:
        raise BadValue(f"versions: trajectory {traj_id} has no version {version}; see `palimpsest review show`")
    return edit(store, traj_id, texts[version]["thinking"], texts[version]["answer"], author=author,
                note=f"revert to version {version}", annotator=annotator)


BULK_ACTIONS = ("accept", "reject", "reset", "tag", "untag")  # what `bulk` can do to many at once


@dataclass(frozen=True)
class BulkResult:
    changed: int  # how many trajectories the action changed
    skipped: tuple[tuple[int, str], ...] = ()  # (id, why) of those left as they were (bulk accept skips failed filters)

    def skipped_text(self) -> str:
        """"2 skipped: failed the quality filters (#4, #7)" or "" when none was skipped."""
        if not self.skipped:
            return ""
        by: dict[str, list[int]] = {}
        for t, why in self.skipped:
            by.setdefault(why, []).append(t)
        parts = [f"{why} ({', '.join(f'#{t}' for t in ids[:8])}{', …' if len(ids) > 8 else ''})"
                 for why, ids in by.items()]
        return f"{len(self.skipped)} skipped: " + "; ".join(parts)


def bulk(store: Store, ids: Sequence[int], action: str, tags: Sequence[str] = (), reason: str | None = None,
         include_failed: bool = False, annotator: str | None = None) -> BulkResult:
    """One review action on many trajectories in one transaction: all of them or, on any error,
    none. `tags` for tag/untag, `reason` for reject. Accept skips trajectories whose quality
    filters failed (a dropped run among them) unless `include_failed`: accepting one of those
    must be a deliberate, one-at-a-time choice. Returns how many were changed and which were skipped, and why."""
    if action not in BULK_ACTIONS:
        raise BadValue(f"bulk action {action!r}: use one of {', '.join(BULK_ACTIONS)}")
    if action in ("tag", "untag"):
        tags = _clean_tags(list(tags))
        if not tags:
            raise BadValue("bulk tag: give one or more tags (words without commas)")
    ids = list(dict.fromkeys(int(i) for i in ids))
    if not ids:
        raise BadValue("bulk: no trajectories to change; loosen the filters")
    name = who.resolve(annotator)
    one = {"accept": lambda t: accept(store, t, name), "reject": lambda t: reject(store, t, reason, name),
           "reset": lambda t: reset(store, t, name), "tag": lambda t: tag(store, t, *tags, annotator=name),
           "untag": lambda t: untag(store, t, *tags, annotator=name)}[action]
    skipped, changed = [], 0
    with store.transaction():
        for t in ids:
            if action == "accept" and not include_failed:
                row = store.get_trajectory(t)
                if failed_filters(row):
                    skipped.append((t, failed_reason(row)))
                    continue
            one(t)
            changed += 1
    return BulkResult(changed, tuple(skipped))


def current_original(store: Store, traj_id: int) -> dict:
    row = store.get_trajectory(traj_id)
    return {"version": 0, "thinking": row["thinking"] or "", "answer": row["answer"] or ""}


# ---- walking a queue one record at a time (the studio's focus mode; a judging queue can reuse it) ----

@dataclass(frozen=True)
class QueueProgress:
    position: int  # 1-based place of the current record in the queue; 0 when it is not in it
    total: int  # records in the queue
    accepted: int  # of them, accepted
    rejected: int  # of them, rejected
    to_go: int  # of them, still pending (a pending one whose filters failed counts: it is undecided)

    def text(self) -> str:
        """"12 of 40 · 9 accepted · 2 rejected · 29 to go" ("– of 40" when the record left the queue)."""
        where = f"{self.position:,}" if self.position else "–"
        return (f"{where} of {self.total:,} · {self.accepted:,} accepted · {self.rejected:,} rejected · "
                f"{self.to_go:,} to go")


def queue_progress(rows: Sequence[dict], current: int | None) -> QueueProgress:
    """Where `current` (a trajectory id) stands in `rows` (a listing, in queue order) and how many of
    the rows are decided."""
    ids = [int(r["id"]) for r in rows]
    status = [str(r.get("status")) for r in rows]
    pos = ids.index(int(current)) + 1 if current is not None and int(current) in ids else 0
    return QueueProgress(pos, len(ids), status.count("accepted"), status.count("rejected"), status.count("pending"))


def next_pending(rows: Sequence[dict], current: int | None) -> int | None:
    """The first pending row after `current` in queue order, wrapping round to the start (never
    `current` itself); None when no other row is pending. With `current` None (or not in the queue:
    it was decided and left a "pending" filter), the first pending row after its id."""
    cur = int(current) if current is not None else 0
    pend = [int(r["id"]) for r in rows if r.get("status") == "pending" and int(r["id"]) != cur]
    if not pend:
        return None
    ids = [int(r["id"]) for r in rows]
    if cur in ids:  # queue order, from the record after `current`
        after = ids[ids.index(cur) + 1:] + ids[:ids.index(cur)]
        return next(i for i in after if i in pend)
    return next((i for i in pend if i > cur), pend[0])


def step_in_queue(rows: Sequence[dict], current: int | None, step: int) -> int | None:
    """The row `step` places from `current` (+1 next, -1 previous), wrapping round. When `current` is
    not in the queue (decided, it left a "pending" filter): the nearest row after (+) or before (-)
    its id. None for an empty queue."""
    ids = [int(r["id"]) for r in rows]
    if not ids:
        return None
    if current is not None and int(current) in ids:
        return ids[(ids.index(int(current)) + step) % len(ids)]
    cur = int(current) if current is not None else None
    if step >= 0:
        return next((i for i in ids if cur is not None and i > cur), ids[0])
    return next((i for i in reversed(ids) if cur is not None and i < cur), ids[-1])
