"""Input records as the engines' Items (core/item.py: query, reference, optional thinking, id,
category, rubric), read through core.data.records, the one reader every command shares.

`score`, `reer run`, `r2 run`, training data and the studio's samples therefore accept every
shape `import` accepts (JSONL/JSON with any alias, CSV, Parquet, datasets folders, HelloBench
files or folder, REER release outputs, Palimpsest's exports), and report each bad record as
the same Problem naming file, line and field. This module only turns a Record into an Item:
what the engines do not use (review fields, search history, a chat's system turn) is dropped,
and a reference without its query (a plain-text import) is a Problem here, since nothing can
be scored or searched without the task.

Does not know: file shapes, aliases or JSON (core.data.records), the store, the engines.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.records import (  # noqa: F401 - InputError and Problem are re-exported for callers
    InputError,
    Problem,
    Record,
    normalise,
    read_records,
)
from core.item import Item  # noqa: F401  (what read_items returns; importers of the reader take it from here too)


def to_item(rec: Record | Problem) -> Item | Problem:
    """The Item of a Record (a Problem passes through); a reference waiting for its query is a Problem."""
    if isinstance(rec, Problem):
        return rec
    if rec.query_pending:
        return Problem(rec.path, rec.line, "query", "missing; this is a reference without its task (a text "
                       "file): import it and write its query in the Library, or give a file with a query per record")
    rid = rec.id if rec.id else f"{Path(rec.path).name}:{rec.line}"
    return Item(rid, rec.query, rec.reference, rec.thinking or "", rec.category, rec.rubric)


def parse_record(record: Any, path: str, line: int) -> Item | Problem:
    """One decoded record (e.g. a JSON line) as an Item, or the Problem that rejects it."""
    return to_item(normalise(record, path, line))


def read_items(path: str | Path, format: str = "auto") -> tuple[list[Item], list[Problem]]:
    """All good items of a file or folder of any shape core.data.records reads, and a Problem for
    each bad record (blank lines are skipped). Raises InputError when it cannot be read at all."""
    items: list[Item] = []
    problems: list[Problem] = []
    for got in read_records(path, format):
        got = to_item(got)
        (items if isinstance(got, Item) else problems).append(got)
    return items, problems
