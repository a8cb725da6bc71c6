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
field and the fix; the good records of a partly bad file are imported.

Records are read (streamed) and checked outside the write lock and written in batches: one
transaction per batch of at most `batch_rows` records (default 500, $PALIMPSEST_IMPORT_BATCH)
or `batch_seconds` of writing (0.2 s), each record inside its own savepoint, with a short pause
between batches. So another process's writer (a run, a review, another import) waits at most
about one batch, and readers never wait. A failure or a kill half way keeps the batches already
committed and nothing of the one being written; because duplicates are found by content, running
the same import again stores each of the remaining records once and counts the rest as duplicates.

Does not know: how runs are made (core.reer.search, core.r2.loop), curation (core.data.curation) or export
formats (core.export).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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

BATCH_ROWS = 500  # records per write transaction (default; $PALIMPSEST_IMPORT_BATCH overrides)
BATCH_ENV = "PALIMPSEST_IMPORT_BATCH"
BATCH_SECONDS = 0.2  # a batch commits early once it has been writing this long
BATCH_GAP_S = 0.02  # the least time between two batches' transactions: room for a waiting writer (core.store polls every 5 ms)


class ImportFailed(StoreError):
    """An import stopped half way: the batches committed before stay, the one being written was rolled back."""


@dataclass
class FileCount:
    read: int = 0  # good records read (bad ones are counted in skipped)
    prompts: int = 0  # new prompts stored
    trajectories: int = 0  # new trajectories stored
    duplicates: int = 0  # records already in the store (same content)
    skipped: int = 0  # bad records (each has a Problem)
    stopped: bool = False  # a file-level problem (bad encoding, over the size limit) ended reading it early


@dataclass
class ImportReport:
    """What one import did: counts per file, every problem, the ids it made."""
    files: dict[str, FileCount] = field(default_factory=dict)  # per input path
    problems: list[Problem] = field(default_factory=list)  # one per rejected record or unreadable file
    prompt_ids: list[str] = field(default_factory=list)  # prompts stored now
    trajectory_ids: list[int] = field(default_factory=list)  # trajectories stored now
    duplicate_ids: list[str] = field(default_factory=list)  # existing prompt ids the duplicates matched
    commits: int = 0  # write transactions committed (batches)
    stored: int = 0  # good records whose batch was committed

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


def batch_rows_setting() -> int:
    """Records per import batch: $PALIMPSEST_IMPORT_BATCH when set (a whole number, 1 or more), else BATCH_ROWS."""
    raw = os.environ.get(BATCH_ENV)
    if not raw:
        return BATCH_ROWS
    try:
        rows = int(raw)
    except ValueError:
        rows = 0
    if rows < 1:
        raise BadValue(f"{BATCH_ENV}={raw!r}: give the records per import batch as a whole number, 1 or more, e.g. 500")
    return rows


def _expand(paths: list[str | Path], format: str) -> list[str | Path]:
    """A folder of data files (not a datasets, HelloBench or .txt folder) becomes its files."""
    expanded: list[str | Path] = []
    for path in paths:
        p = Path(path)
        try:
            plain = format == "auto" and p.is_dir() and detect_format(p) == "folder"
        except InputError:
            plain = False
        expanded += data_files(p) if plain else [path]
    return expanded


def _good_records(paths: list[str | Path], format: str, report: ImportReport) -> Iterator[tuple[Record, str, FileCount]]:
    """(record, format, its file's count) for every good record of `paths`, read lazily; bad
    records and unreadable files go to the report as Problems."""
    for path in paths:
        count = report.files.setdefault(str(path), FileCount())
        try:
            fmt = detect_format(Path(path)) if format == "auto" else format
            for rec in read_records(path, format):
                if isinstance(rec, Problem):
                    report.problems.append(rec)
                    count.skipped += 1
                    continue
                count.read += 1
                yield rec, fmt, count
        except InputError as e:  # the rest of the file is not read; what came before is stored
            report.problems.append(Problem(str(path), 0, "", str(e).removeprefix(f"{path}: ")))
            count.skipped += 1
            count.stopped = True


def _chunks(it: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for x in it:
        chunk.append(x)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_one(store: Store, rec: Record, fmt: str, report: ImportReport, count: FileCount) -> None:
    """One record inside its own savepoint: a record the store refuses is a Problem, the rest stays."""
    store.db.execute("SAVEPOINT import_record")
    try:
        _store_record(store, rec, fmt, report, count)
    except BadValue as e:  # the store refused this record: skip it, keep the rest
        store.db.execute("ROLLBACK TO import_record")
        report.problems.append(Problem(rec.path, rec.line, "", str(e)))
        count.skipped += 1
    store.db.execute("RELEASE import_record")


def import_files(store: Store, paths: list[str | Path] | str | Path, format: str = "auto",
                 batch_rows: int | None = None, batch_seconds: float = BATCH_SECONDS) -> ImportReport:
    """Import every record of `paths` (files or folders) in batches (module docstring); returns the report.

    `batch_rows` records at most per transaction (None: batch_rows_setting()), which commits early
    after `batch_seconds` of writing. Bad records and unreadable files become Problems (the rest is
    imported). An unexpected failure rolls back the batch being written and raises ImportFailed,
    which says how much was stored before and that rerunning the import finishes it."""
    rows = batch_rows if batch_rows is not None else batch_rows_setting()
    if rows < 1 or not batch_seconds > 0:
        raise BadValue(f"import batches: batch_rows must be 1 or more and batch_seconds above 0, got {rows}, {batch_seconds}")
    paths = _expand([paths] if isinstance(paths, (str, Path)) else list(paths), format)
    report = ImportReport()
    last_commit = None
    try:
        for chunk in _chunks(_good_records(paths, format, report), rows):  # read outside the write lock
            i = 0
            while i < len(chunk):
                if last_commit is not None:  # a writer waiting for the lock gets in here
                    time.sleep(max(0.0, BATCH_GAP_S - (time.monotonic() - last_commit)))
                with store.transaction():
                    started, first = time.monotonic(), i
                    while i < len(chunk) and (i == first or time.monotonic() - started < batch_seconds):
                        _write_one(store, *chunk[i][:2], report, chunk[i][2])
                        i += 1
                last_commit = time.monotonic()
                report.commits += 1
                report.stored += i - first
    except (sqlite3.Error, StoreError) as e:
        where = ", ".join(map(str, paths))
        if not report.stored:
            raise ImportFailed(f"the import of {where} failed and was rolled back, nothing of it is stored: {e}") from e
        raise ImportFailed(f"the import of {where} stopped after {report.stored} record(s) were stored "
                           f"({report.commits} batch(es)); the batch it was writing was rolled back: {e}; run the "
                           "same import again to store the rest (what is stored counts as duplicates)") from e
    return report
