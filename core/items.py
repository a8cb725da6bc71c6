"""Reading scoring/search inputs: JSONL lines of query, optional thinking, reference, optional id.

Knows the field aliases of common files (HelloBench's instruction/response, prompt/completion,
question/solution) and reports every bad line with its file, line number, field and fix. The
full importer for the studio's library (CSV, Parquet, datasets folders...) is core.io.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ALIASES = {
    "query": ("query", "instruction", "prompt", "question", "x"),
    "reference": ("reference", "response", "completion", "solution", "answer", "y"),
    "thinking": ("thinking", "trajectory", "z"),
}


class InputError(Exception):
    """An input file cannot be read at all (missing, not a file)."""


@dataclass(frozen=True)
class Item:
    id: str  # the record's id, or "<file>:<line>" when it has none
    query: str  # the task x
    reference: str  # the good answer y
    thinking: str = ""  # a trajectory z, may be empty


@dataclass(frozen=True)
class Problem:
    path: str  # the file
    line: int  # 1-based line number
    field: str  # the field at fault ("" for the whole line)
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" + (f" field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


def _pick(record: dict, name: str):
    for key in ALIASES[name]:
        if key in record:
            return key, record[key]
    return None, None


def parse_record(record, path: str, line: int) -> Item | Problem:
    if not isinstance(record, dict):
        return Problem(path, line, "", "expected a JSON object like {\"query\": ..., \"reference\": ...}")
    values = {}
    for name in ("query", "reference", "thinking"):
        key, value = _pick(record, name)
        if value is not None and not isinstance(value, str):
            return Problem(path, line, key, f"must be a string, got {type(value).__name__}")
        values[name] = value
    if values["reference"] is None:
        return Problem(path, line, "reference", "missing; add a 'reference' (or 'response') string")
    if not values["reference"].strip():
        return Problem(path, line, "reference", "is empty; give the answer text to score")
    if values["query"] is None:
        return Problem(path, line, "query", "missing; add a 'query' (or 'instruction') string")
    rid = record.get("id", record.get("uid"))
    rid = str(rid) if rid is not None else f"{Path(path).name}:{line}"
    return Item(rid, values["query"], values["reference"], values["thinking"] or "")


def read_jsonl(path: str | Path) -> tuple[list[Item], list[Problem]]:
    """All good items of a JSONL file, and a Problem for each bad line (blank lines are skipped)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file; give a JSONL file with one JSON object per line")
    items, problems = [], []
    with p.open(encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(Problem(str(path), n, "", f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            got = parse_record(record, str(path), n)
            (items if isinstance(got, Item) else problems).append(got)
    return items, problems
