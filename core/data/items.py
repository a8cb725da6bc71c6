"""Reading scoring/search inputs: JSONL lines of query, optional thinking, reference, optional id.

Knows the field aliases of common files (HelloBench's instruction/response, prompt/completion,
question/solution), optional `category` and `rubric` (alias `checklists`), and HelloBench's
layout: `read_items` also takes the HelloBench task file (tasks without answers, joined by id
with the responses file beside it) or the HelloBench folder itself. Reports every bad line
with its file, line number, field and fix. The full importer for the studio's library (CSV,
Parquet, datasets folders...) is core.data.imports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ALIASES = {
    "query": ("query", "instruction", "prompt", "question", "x"),
    "reference": ("reference", "response", "completion", "solution", "answer", "y"),
    "thinking": ("thinking", "trajectory", "z"),
}
RUBRIC_KEYS = ("rubric", "checklists")  # a list of criteria (HelloBench calls them checklists)
HELLOBENCH_TASKS = "heuristic_text_generation.jsonl"  # id, category, instruction, checklists
HELLOBENCH_RESPONSES = "heuristic_text_generation_claude35_responses.jsonl"  # id, instruction, response


class InputError(Exception):
    """An input file cannot be read at all (missing, not a file)."""


@dataclass(frozen=True)
class Item:
    id: str  # the record's id, or "<file>:<line>" when it has none
    query: str  # the task x
    reference: str  # the good answer y
    thinking: str = ""  # a trajectory z, may be empty
    category: str | None = None  # e.g. HelloBench's "argumentative_writing"
    rubric: tuple[str, ...] = ()  # criteria a judge scores against (HelloBench checklists)


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
    extras = _extras(record, path, line)
    if isinstance(extras, Problem):
        return extras
    rid = record.get("id", record.get("uid"))
    rid = str(rid) if rid is not None else f"{Path(path).name}:{line}"
    return Item(rid, values["query"], values["reference"], values["thinking"] or "", *extras)


def _extras(record: dict, path: str, line: int) -> tuple[str | None, tuple[str, ...]] | Problem:
    """(category, rubric) of a record, both optional."""
    category = record.get("category")
    if category is not None and not isinstance(category, str):
        return Problem(path, line, "category", f"must be a string, got {type(category).__name__}")
    key = next((k for k in RUBRIC_KEYS if k in record), None)
    rubric = record.get(key) if key else None
    if rubric is None:
        rubric = []
    if not (isinstance(rubric, list) and all(isinstance(c, str) for c in rubric)):
        return Problem(path, line, key or "rubric", "must be a list of criteria (strings)")
    return category, tuple(rubric)


def _records(path: Path, problems: list[Problem]) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON) of each non-blank line; undecodable lines become Problems."""
    if not path.is_file():
        raise InputError(f"{path}: no such file; give a JSONL file with one JSON object per line")
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield n, json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(Problem(str(path), n, "", f"not valid JSON ({exc.msg} at column {exc.colno})"))


def read_jsonl(path: str | Path) -> tuple[list[Item], list[Problem]]:
    """All good items of a JSONL file, and a Problem for each bad line (blank lines are skipped)."""
    items, problems = [], []
    for n, record in _records(Path(path), problems):
        got = parse_record(record, str(path), n)
        (items if isinstance(got, Item) else problems).append(got)
    return items, problems


def read_items(path: str | Path) -> tuple[list[Item], list[Problem]]:
    """Items from a JSONL file (as `read_jsonl`), a HelloBench task file, or the HelloBench folder.

    HelloBench ships tasks (`heuristic_text_generation.jsonl`: id, category, instruction,
    checklists) and answers (`..._claude35_responses.jsonl`: id, instruction, response) as two
    files. Given the task file or the folder, tasks are joined with the responses file beside
    them on id, in task order; given the responses file, the tasks beside it (if present) add
    category and rubric. A task without a response is a Problem on the task's line.
    """
    p = Path(path)
    if p.is_dir():
        tasks, responses = p / HELLOBENCH_TASKS, p / HELLOBENCH_RESPONSES
        if not responses.is_file():
            raise InputError(f"{path}: a folder without {HELLOBENCH_RESPONSES}; give a JSONL file, or the "
                             "HelloBench folder holding its task and responses files")
        return _join_hellobench(tasks if tasks.is_file() else None, responses, lead="tasks")
    if p.name == HELLOBENCH_TASKS:
        responses = p.with_name(HELLOBENCH_RESPONSES)
        if not responses.is_file():
            if not p.is_file():
                raise InputError(f"{path}: no such file; give a JSONL file with one JSON object per line")
            raise InputError(f"{path}: HelloBench tasks have no answers; put {HELLOBENCH_RESPONSES} "
                             "(their reference responses) beside it")
        return _join_hellobench(p, responses, lead="tasks")
    if p.name == HELLOBENCH_RESPONSES and p.with_name(HELLOBENCH_TASKS).is_file():
        return _join_hellobench(p.with_name(HELLOBENCH_TASKS), p, lead="responses")
    return read_jsonl(p)


def _by_id(path: Path, problems: list[Problem]) -> dict[str, tuple[int, dict]]:
    rows: dict[str, tuple[int, dict]] = {}
    for n, record in _records(path, problems):
        if not isinstance(record, dict):
            problems.append(Problem(str(path), n, "", "expected a JSON object"))
        elif record.get("id") is None:
            problems.append(Problem(str(path), n, "id", "missing; HelloBench files are joined on id"))
        elif str(record["id"]) in rows:
            problems.append(Problem(str(path), n, "id", f"{record['id']!r} repeats line {rows[str(record['id'])][0]}"))
        else:
            rows[str(record["id"])] = (n, record)
    return rows


def _join_hellobench(tasks: Path | None, responses: Path, lead: str) -> tuple[list[Item], list[Problem]]:
    problems: list[Problem] = []
    task_rows = _by_id(tasks, problems) if tasks is not None else {}
    resp_rows = _by_id(responses, problems)
    items = []
    if lead == "tasks" and tasks is not None:
        for rid, (n, task) in task_rows.items():
            if rid not in resp_rows:
                problems.append(Problem(str(tasks), n, "id", f"no response with id {rid!r} in {responses.name}; "
                                        "the task is skipped"))
                continue
            m, resp = resp_rows[rid]
            answer = parse_record(resp, str(responses), m)  # the response's faults name its own file
            got = answer if isinstance(answer, Problem) else \
                parse_record({**task, "response": answer.reference}, str(tasks), n)
            items.append(got) if isinstance(got, Item) else problems.append(got)
    else:
        for rid, (m, resp) in resp_rows.items():
            task = task_rows.get(rid, (0, {}))[1]
            extra = {k: task[k] for k in ("category", *RUBRIC_KEYS) if k in task and k not in resp}
            got = parse_record({**resp, **extra}, str(responses), m)
            items.append(got) if isinstance(got, Item) else problems.append(got)
    problems.sort(key=lambda p: (p.path, p.line))
    return items, problems
