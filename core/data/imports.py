"""Importing prompts, references and finished trajectories into the store from files.

The files are read by core.data.records (every supported shape, one Record or Problem per record);
this module writes those Records into the store. A record whose answer
carries a think block (or a `thinking` field, or a REER release search) is imported as a
finished trajectory: a run of kind "import" (status finished) and its trajectory row, with the
original search history and scores in `details`. Palimpsest's own exports read back too, so
import -> export -> import keeps every field (status, rating, tags and notes included).

A reference without a query (the text-folder import) is stored with query "" and
prompts.query_pending = 1 until `write_query` gives it one; exports skip such prompts.

Duplicates are found by content (store.content_hash of query and reference; a trajectory
also by its thinking and answer) and counted, not stored twice. Every rejected record is a
core.data.records.Problem naming file, line (row for CSV/Parquet/datasets, 0 for the whole file),
field and the fix; the good records of a partly bad file are imported. One `import_files`
call is one transaction (each record inside its own savepoint): a failure half way (or a kill)
leaves the store as it was before the call.

Does not know: how runs are made (core.reer.search, core.r2.loop), curation (core.data.curation) or export
formats (core.data.export).
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.data.records import (
    SCORE_COLUMNS,
    InputError,
    Problem,
    Record,
    data_files,
    detect_format,
    read_records,
)
from core.store import BadValue, Store, StoreError, content_hash, now


class ImportFailed(StoreError):
    """An import stopped half way; nothing of it was kept (the store is as it was before)."""


@dataclass
class FileCount:
    read: int = 0  # good records read (bad ones are counted in skipped)
    prompts: int = 0  # new prompts stored
    trajectories: int = 0  # new trajectories stored
    duplicates: int = 0  # records already in the store (same content)
    skipped: int = 0  # bad records (each has a Problem)


@dataclass
class ImportReport:
    """What one import did: counts per file, every problem, the ids it made."""
    files: dict[str, FileCount] = field(default_factory=dict)  # per input path
    problems: list[Problem] = field(default_factory=list)  # one per rejected record or unreadable file
    prompt_ids: list[str] = field(default_factory=list)  # prompts stored now
    trajectory_ids: list[int] = field(default_factory=list)  # trajectories stored now
    duplicate_ids: list[str] = field(default_factory=list)  # existing prompt ids the duplicates matched

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.files.values())

    def summary(self) -> str:
        return (f"imported {self.total('prompts')} new prompt(s) and {self.total('trajectories')} trajectory(ies) "
                f"from {len(self.files)} file(s); {self.total('duplicates')} duplicate(s) already stored; "
                f"skipped {self.total('skipped')} bad record(s)")

# ---- writing Records into the store -------------------------------------------------------------

def _add_pending_prompt(store: Store, rec: Record, source: str) -> tuple[str, bool]:
    """A reference stored without its query (query "", query_pending 1), once per content."""
    h = content_hash("", rec.reference)
    row = next(store.db.query("SELECT id FROM prompts WHERE content_hash = ?", [h]), None)
    if row:
        return row["id"], False
    pid = h[:16]
    store.db["prompts"].insert({"id": pid, "query": "", "reference": rec.reference, "category": rec.category,
                                "rubric": None, "source": source, "content_hash": h, "created_at": now(),
                                "query_pending": 1})
    return pid, True


def write_query(store: Store, prompt_id: str, query: str) -> None:
    """Give a reference-only prompt its query (written by the user or the model); clears query_pending."""
    if not isinstance(query, str) or not query.strip():
        raise BadValue("prompts.query: must be a non-empty string")
    with store.transaction():
        p = store.get_prompt(prompt_id)
        h = content_hash(query, p["reference"])
        other = next(store.db.query("SELECT id FROM prompts WHERE content_hash = ? AND id != ?", [h, prompt_id]), None)
        if other:
            raise BadValue(f"prompts: {other['id']!r} already holds this query and reference; use that prompt")
        store.db["prompts"].update(prompt_id, {"query": query, "content_hash": h, "query_pending": 0})


def _same_trajectory(store: Store, prompt_id: str, thinking: str, answer: str) -> int | None:
    row = next(store.db.query("SELECT id FROM trajectories WHERE prompt_id = ? AND thinking = ? AND answer = ?",
                              [prompt_id, thinking, answer]), None)
    return row["id"] if row else None


def _store_record(store: Store, rec: Record, fmt: str, report: ImportReport, count: FileCount) -> None:
    source = rec.extra.get("source") or fmt
    if rec.query_pending:
        pid, new = _add_pending_prompt(store, rec, source=f"{source}:{Path(rec.path).name}")
    else:
        kwargs = dict(category=rec.category, rubric=list(rec.rubric) or None, source=f"{source}:{Path(rec.path).name}")
        try:
            pid, new = store.add_prompt(rec.query, rec.reference, id=rec.id, **kwargs)
        except BadValue as e:
            if "already holds" not in str(e):
                raise
            pid, new = store.add_prompt(rec.query, rec.reference, **kwargs)  # the id names another prompt
    if new:
        count.prompts += 1
        report.prompt_ids.append(pid)
    if rec.thinking is None:
        if not new:
            count.duplicates += 1
            report.duplicate_ids.append(pid)
        return
    if _same_trajectory(store, pid, rec.thinking, rec.reference) is not None:
        count.duplicates += 1
        report.duplicate_ids.append(pid)
        return
    scores = dict(rec.extra.get("scores") or {})
    settings = {"format": fmt, "file": Path(rec.path).name}
    run_id = store.create_run("import", pid, settings, rec.extra.get("model") or "import", uuid.uuid4().hex)
    store.db.execute("UPDATE runs SET status = 'finished', finish_reason = 'imported' WHERE id = ?", [run_id])
    details = dict(rec.extra.get("details") or {})
    details.update({"id": details.get("id") or rec.id, "query": rec.query, "thinking": rec.thinking,
                    "answer": rec.reference, "source": source, "imported_from": rec.path, "line": rec.line,
                    "scores": scores})
    if "system" in rec.extra:
        details["system"] = rec.extra["system"]
    cols = {k: scores.get(k) for k in SCORE_COLUMNS if isinstance(scores.get(k), (int, float))}
    filters = details.get("filters") if isinstance(details.get("filters"), dict) else None
    tid = store.save_trajectory(run_id, rec.thinking, rec.reference, details=details, filters=filters, **cols)
    review = {k: rec.extra[k] for k in ("status", "rating", "notes") if k in rec.extra}
    if "tags" in rec.extra:
        review["tags"] = json.dumps(rec.extra["tags"])
    if review:
        store.db["trajectories"].update(tid, review)
    count.trajectories += 1
    report.trajectory_ids.append(tid)


def import_files(store: Store, paths: list[str | Path] | str | Path, format: str = "auto") -> ImportReport:
    """Import every record of `paths` (files or folders) in one transaction; returns the report.

    Bad records and unreadable files become Problems (the rest is imported). An unexpected
    failure raises ImportFailed after rolling the whole import back."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    expanded: list[str | Path] = []
    for path in paths:  # a folder of data files (not a datasets, HelloBench or .txt folder): each file
        p = Path(path)
        try:
            plain = format == "auto" and p.is_dir() and detect_format(p) == "folder"
        except InputError:
            plain = False
        expanded += data_files(p) if plain else [path]
    paths = expanded
    report = ImportReport()
    try:
        with store.transaction():
            for path in paths:
                count = report.files.setdefault(str(path), FileCount())
                try:
                    fmt = detect_format(Path(path)) if format == "auto" else format
                    records = list(read_records(path, format))
                except InputError as e:
                    report.problems.append(Problem(str(path), 0, "", str(e).removeprefix(f"{path}: ")))
                    count.skipped += 1
                    continue
                for rec in records:
                    if isinstance(rec, Problem):
                        report.problems.append(rec)
                        count.skipped += 1
                        continue
                    count.read += 1
                    store.db.execute("SAVEPOINT import_record")
                    try:
                        _store_record(store, rec, fmt, report, count)
                    except BadValue as e:  # the store refused this record: skip it, keep the rest
                        store.db.execute("ROLLBACK TO import_record")
                        report.problems.append(Problem(rec.path, rec.line, "", str(e)))
                        count.skipped += 1
                    store.db.execute("RELEASE import_record")
    except (sqlite3.Error, StoreError) as e:
        raise ImportFailed(f"the import of {', '.join(map(str, paths))} failed and was rolled back, nothing of it "
                           f"is stored: {e}") from e
    return report
