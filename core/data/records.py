"""Reading files of every supported shape into Records (or Problems), one record at a time: the
one input reader behind every command (`import` and the Library page read Records; `score`,
`reer run`, `r2 run`, training and the studio's samples read them as core.data.items.Item;
training reads the raw rows through `read_raw`).

Knows the shapes users arrive with: JSONL / JSON / CSV / Parquet records with `query` and
`reference` or an alias (instruction/response, prompt/completion, question/solution, x/y,
q/ref, Alpaca's instruction+input/output), an optional `thinking` (alias trajectory, z), chat
`messages` (and ShareGPT `conversations`), Hugging Face `datasets` folders (save_to_disk), a
folder of plain-text files (each a reference whose query is written later), HelloBench files or
folder (tasks joined with their responses on id), REER release outputs (pretty-printed JSON
objects with q, ref, uid, alist[...]) and DeepWriting-style parquet (chat-list `prompt`,
`solution` = `<think>...</think>` + answer), and Palimpsest's own exports. Every rejected
record is a Problem naming file, line (row for CSV/Parquet/datasets, 0 for the whole file),
field and the fix; a file that cannot be read at all raises InputError.

Knows the input limits (`Limits`, from $PALIMPSEST_MAX_RECORD_MB and $PALIMPSEST_MAX_FILE_MB):
files are streamed, never read whole. A file over the file limit is refused before it is
opened; a record over the record limit (a JSONL line, a CSV row, a JSON value, a .txt file, a
Parquet or datasets row) is a Problem, and only a bounded piece of it is ever held in memory.
Text is strict UTF-8: a bad byte is an InputError naming the line and byte offset, never a
U+FFFD scored or trained in its place. Think tags and chat-template special tokens in a query,
thinking or reference are refused (core.format.reserved_tag): the assistant turn could not be
read back, and training would refuse or silently learn them.

Does not know: the store (core.data.imports writes Records into it), runs, curation or export.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from core.data.streams import (  # noqa: F401  (InputError, Limits, Problem are re-exported for callers)
    MB,
    InputError,
    Limits,
    Problem,
    check_file,
    csv_rows,
    hf_rows,
    json_values,
    open_bounded,
    parquet_rows,
    record_limit_text,
)
from core.format import reserved_tag

FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "hf", "text", "hellobench", "reer-release", "deepwriting")
QUERY_KEYS = ("query", "instruction", "prompt", "question", "x", "q")
REFERENCE_KEYS = ("reference", "response", "completion", "solution", "answer", "output", "y", "ref")
THINKING_KEYS = ("thinking", "trajectory", "z")  # a finished trajectory z given beside its answer
RUBRIC_KEYS = ("rubric", "checklists")  # a list of criteria (HelloBench calls them checklists)
HELLOBENCH_TASKS = "heuristic_text_generation.jsonl"  # id, category, instruction, checklists
HELLOBENCH_RESPONSES = "heuristic_text_generation_claude35_responses.jsonl"  # id, instruction, response
STATUSES = ("pending", "accepted", "rejected")
SCORE_COLUMNS = ("initial_score", "final_score", "initial_ppl", "final_ppl")
THINK_RE = re.compile(r"^\s*<think>\n?(.*?)\n?</think>\s*(.*)$", re.S)
ANSWER_RE = re.compile(r"^\s*<answer>\n?(.*?)\n?</answer>\s*$", re.S)
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")  # a lone surrogate (a JSON \\udcff escape): not text
@dataclass(frozen=True)
class Record:
    """One importable unit, whatever file it came from."""
    path: str  # the file it came from
    line: int  # its line (JSONL/JSON/text), row (CSV/Parquet/datasets), 0 for a whole file
    query: str  # the task x ("" with query_pending for a reference without its query)
    reference: str  # the answer y (after any think block)
    thinking: str | None = None  # a finished trajectory's thinking; None = a plain prompt
    id: str | None = None  # the record's own id (id / uid), if any
    category: str | None = None  # e.g. HelloBench's "argumentative_writing"
    rubric: tuple[str, ...] = ()  # criteria a judge scores against
    query_pending: bool = False  # the query is to be written later (text-folder import)
    extra: dict = field(default_factory=dict)  # scores, status, rating, tags, notes, source, model, history


def _text_records(path: Path, lim: Limits) -> Iterator[Record | Problem]:
    files = sorted(f for f in path.glob("*.txt") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        try:
            size = f.stat().st_size
        except OSError:
            size = 0
        if size > lim.record_bytes:
            yield Problem(str(f), 0, "reference", "the file " + record_limit_text(lim, f"{size:,} bytes"))
            continue
        with open_bounded(f, lim) as fh:
            raw = fh.read(lim.record_bytes + 1)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            yield Problem(str(f), raw[:e.start].count(b"\n") + 1, "", f"not UTF-8 text ({e.reason} at byte "
                                                                       f"{e.start}); save it as UTF-8")
            continue
        if not text.strip():
            yield Problem(str(f), 0, "reference", "the file is empty; remove it or write the reference in it")
            continue
        yield _checked(Record(str(f), 0, "", text.strip("\n"), id=f.stem, query_pending=True,
                              extra={"source": "text"}))


def detect_format(path: Path) -> str:
    """The format `auto` picks for a path (by folder content or file suffix)."""
    if path.is_dir():
        if (path / HELLOBENCH_RESPONSES).is_file() or (path / HELLOBENCH_TASKS).is_file():
            return "hellobench"
        if _hf_folder(path) is not None:
            return "hf"
        if any(path.glob("*.txt")):
            return "text"
        if data_files(path):
            return "folder"
        raise InputError(f"{path}: a folder with no .txt files, no data files (.jsonl/.json/.csv/.parquet), no "
                         "datasets save_to_disk files and no HelloBench files; give a data file or such a folder")
    if not path.is_file():
        check_file(path, Limits())  # names what it is: missing, a FIFO, a device...
    if path.name in (HELLOBENCH_TASKS, HELLOBENCH_RESPONSES):
        return "hellobench"
    suffix = path.suffix.lower()
    by_suffix = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text",
                 ".ndjson": "jsonl", ".tsv": "csv"}
    if suffix not in by_suffix:
        raise InputError(f"{path}: unknown file type {suffix or '(none)'}; use .jsonl, .json, .csv, .parquet, "
                         "a .txt file or folder, a datasets folder, or pass --format")
    return by_suffix[suffix]


DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".ndjson", ".tsv")


def _hf_folder(path: Path) -> Path | None:
    """The save_to_disk folder at `path`, or in its `data/` (how `palimpsest export --format hf` writes it)."""
    for p in (path, path / "data"):
        if (p / "state.json").is_file() or (p / "dataset_dict.json").is_file():
            return p
    return None


def data_files(folder: Path) -> list[Path]:
    """The data files anywhere under a folder (e.g. a dataset repository's data/train-*.parquet)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                  and not p.name.startswith(".") and p.name != "dataset_info.json")


def _hellobench_records(path: Path, lim: Limits) -> Iterator[Record | Problem]:
    """HelloBench's records: it ships tasks (`heuristic_text_generation.jsonl`: id, category,
    instruction, checklists) and answers (`..._claude35_responses.jsonl`: id, instruction,
    response) as two files. Given the task file or the folder, tasks are joined with the
    responses file beside them on id, in task order; given the responses file, the tasks beside
    it (if present) add category and rubric. A task without a response is a Problem on the
    task's line; each Record names the file and line it was read from."""
    if path.is_dir():
        tasks, responses = path / HELLOBENCH_TASKS, path / HELLOBENCH_RESPONSES
        if not responses.is_file():
            raise InputError(f"{path}: a folder without {HELLOBENCH_RESPONSES}; give a data file, or the "
                             "HelloBench folder holding its task and responses files")
        lead = "tasks" if tasks.is_file() else "responses"
    elif path.name == HELLOBENCH_TASKS:
        tasks, responses, lead = path, path.with_name(HELLOBENCH_RESPONSES), "tasks"
        if not responses.is_file():
            raise InputError(f"{path}: HelloBench tasks have no answers; put {HELLOBENCH_RESPONSES} "
                             "(their reference responses) beside it")
    else:  # the responses file (or any file read with --format hellobench)
        tasks, responses, lead = path.with_name(HELLOBENCH_TASKS), path, "responses"
    extra = {"source": "hellobench"}
    problems: list[Problem] = []
    if not tasks.is_file():  # answers alone: an ordinary data file
        got = [raw if isinstance(raw, Problem) else normalise(raw, str(responses), n)
               for n, raw in json_values(responses, lim)]
        yield from sorted([g for g in got if isinstance(g, Problem)], key=lambda p: p.line)
        for g in got:
            if isinstance(g, Record):
                yield replace(g, extra={**extra, **g.extra})
        return
    task_rows, resp_rows = _by_id(tasks, problems, lim), _by_id(responses, problems, lim)
    out: list[Record | Problem] = []
    if lead == "tasks":
        for rid, (n, task) in task_rows.items():
            if rid not in resp_rows:
                problems.append(Problem(str(tasks), n, "id", f"no response with id {rid!r} in {responses.name}; "
                                        "the task is skipped"))
                continue
            m, resp = resp_rows[rid]
            answer = normalise(resp, str(responses), m)  # the response's faults name its own file
            if isinstance(answer, Problem):
                out.append(answer)
                continue
            joined = {**task, "response": answer.reference}
            if answer.thinking is not None:
                joined["thinking"] = answer.thinking
            out.append(normalise(joined, str(tasks), n))
    else:
        for rid, (m, resp) in resp_rows.items():
            task = task_rows.get(rid, (0, {}))[1]
            added = {k: task[k] for k in ("category", *RUBRIC_KEYS) if k in task and k not in resp}
            out.append(normalise({**resp, **added}, str(responses), m))
    problems += [g for g in out if isinstance(g, Problem)]
    yield from sorted(problems, key=lambda p: (p.path, p.line))
    for g in out:
        if isinstance(g, Record):
            yield replace(g, extra={**extra, **g.extra})


def _by_id(path: Path, problems: list[Problem], lim: Limits) -> dict[str, tuple[int, dict]]:
    """The objects of a HelloBench file by id (with their lines); lines without a usable id are Problems."""
    rows: dict[str, tuple[int, dict]] = {}
    for n, record in json_values(path, lim):
        if isinstance(record, Problem):
            problems.append(record)
        elif not isinstance(record, dict):
            problems.append(Problem(str(path), n, "", "expected a JSON object"))
        elif record.get("id") is None:
            problems.append(Problem(str(path), n, "id", "missing; HelloBench files are joined on id"))
        elif str(record["id"]) in rows:
            problems.append(Problem(str(path), n, "id", f"{record['id']!r} repeats line {rows[str(record['id'])][0]}"))
        else:
            rows[str(record["id"])] = (n, record)
    return rows


def _empty(path: Path) -> Problem:
    return Problem(str(path), 0, "", "the file is empty: it holds no records; add records, or leave the file out")


def _format_of(path: str | Path, format: str, lim: Limits) -> tuple[Path, str]:
    p = Path(path)
    if format not in FORMATS:
        raise InputError(f"{path}: unknown format {format!r}; use one of {', '.join(FORMATS)}")
    fmt = detect_format(p) if format == "auto" else format
    if not p.is_dir():
        check_file(p, lim)  # missing, not a regular file, or over the file limit: before anything is read
    return p, fmt


def read_raw(path: str | Path, format: str = "auto", limits: Limits | None = None) -> Iterator[tuple[int, Any]]:
    """(line, decoded value) of each record of a JSONL/JSON/CSV/Parquet file or a datasets folder,
    before any field is read (training reads chat records this way), with a Problem in place of
    each value that could not be decoded or is over the record limit. A file without a record
    gives one Problem saying it is empty. Raises InputError when the file cannot be read at all."""
    lim = limits or Limits.from_env()
    p, fmt = _format_of(path, format, lim)
    if fmt in ("jsonl", "json", "reer-release"):
        rows = json_values(p, lim)
    elif fmt == "csv":
        rows = csv_rows(p, lim, QUERY_KEYS + REFERENCE_KEYS)
    elif fmt in ("parquet", "deepwriting"):
        rows = parquet_rows(p, lim)
    elif fmt == "hf":
        rows = hf_rows(p, lim, _hf_folder(p))
    else:
        raise InputError(f"{path}: a {fmt} input holds no records of its own; give a JSONL, JSON, CSV or Parquet "
                         "file or a datasets folder")
    seen = False
    for line, raw in rows:
        seen = True
        yield line, raw
    if not seen:
        yield 0, _empty(p)


def read_records(path: str | Path, format: str = "auto", limits: Limits | None = None) -> Iterator[Record | Problem]:
    """Each record of one file or folder, normalised, or a Problem for each bad one (a file that
    holds no record is one Problem saying so).

    Raises InputError when the file cannot be read at all (missing, not a regular file, over the
    file limit, unknown type, not UTF-8)."""
    lim = limits or Limits.from_env()
    p, fmt = _format_of(path, format, lim)
    if fmt == "folder":
        for f in data_files(p):
            yield from read_records(f, limits=lim)
        return
    if fmt == "text":
        yield from _text_records(p, lim)
        return
    if fmt == "hellobench":
        yield from _hellobench_records(p, lim)
        return
    for line, raw in read_raw(p, fmt, lim):
        yield raw if isinstance(raw, Problem) else normalise(raw, str(p), line)


# ---- one raw record -> Record | Problem -------------------------------------------------------

def split_think(text: str) -> tuple[str | None, str]:
    """(thinking, answer) of `<think>...</think> answer` (an <answer> wrapper is removed);
    (None, text) when there is no think block."""
    m = THINK_RE.match(text)
    if not m:
        return None, text
    answer = m.group(2)
    wrapped = ANSWER_RE.match(answer)
    return m.group(1), (wrapped.group(1) if wrapped else answer)


def _chat(turns: Any, path: str, line: int, key: str) -> tuple[str | None, str | None, str | None] | Problem:
    """(system, last user content, last assistant content) of a chat list (role/content or from/value)."""
    roles = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
    if not isinstance(turns, list) or not turns:
        return Problem(path, line, key, "must be a non-empty list of {\"role\": ..., \"content\": ...} turns")
    system = user = assistant = None
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            return Problem(path, line, f"{key}[{i}]", "must be an object with role and content")
        role = roles.get(t.get("role", t.get("from")))
        content = t.get("content", t.get("value"))
        if role is None:
            return Problem(path, line, f"{key}[{i}].role", f"{t.get('role', t.get('from'))!r} is not a known role; "
                                                          "use system, user or assistant")
        if not isinstance(content, str):
            return Problem(path, line, f"{key}[{i}].content", f"must be a string, got {type(content).__name__}")
        if role == "system":
            system = content
        elif role == "user":
            user = content
        else:
            assistant = content
    return system, user, assistant


def _first(record: dict, keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        if k in record and record[k] is not None:
            return k, record[k]
    return None, None


def _nul_field(record: Any) -> str | None:
    """The first field (dotted path; "" for the record itself) whose text holds a NUL character, or None."""
    stack = [("", record)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return where
        elif isinstance(node, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(node))
    return None


def normalise(record: Any, path: str, line: int) -> Record | Problem:
    """One raw record (dict) as a Record, or the Problem that rejects it (reserved tags included, and a
    NUL character anywhere: not text, it was stored silently and cut strings in C-string tools)."""
    nul = _nul_field(record)
    if nul is not None:
        return Problem(path, line, nul, "holds a NUL character (\\u0000): not text; remove it")
    got = _normalise(record, path, line)
    return _checked(got) if isinstance(got, Record) else got


def _checked(rec: Record) -> Record | Problem:
    """The record, or the Problem naming a field that holds a think tag or a chat-template special
    token (the assistant turn could not be read back, and training would refuse it or learn the
    token), or a lone surrogate escape (not text: it would be scored as U+FFFD)."""
    fields = (("query", rec.query), ("thinking", rec.thinking), ("reference", rec.reference),
              ("system", rec.extra.get("system")))
    for name, text in fields:
        if not isinstance(text, str) or not text:
            continue
        tag = reserved_tag(text)
        if tag is not None:
            return Problem(rec.path, rec.line, name, f"contains {tag!r}, a think tag or chat-template special token "
                                                     "that would break the assistant turn; remove or reword it")
        bad = SURROGATE_RE.search(text)
        if bad is not None:
            return Problem(rec.path, rec.line, name, f"holds an unpaired surrogate \\u{ord(bad.group()):04x} at "
                                                     f"character {bad.start()}: not text; fix the escape")
    return rec


def _normalise(record: Any, path: str, line: int) -> Record | Problem:
    if not isinstance(record, dict):
        return Problem(path, line, "", "expected an object like {\"query\": ..., \"reference\": ...}")
    if "alist" in record or ("q" in record and "ref" in record):
        return _release_record(record, path, line)
    extra: dict = {}
    query = answer = None
    qkey = rkey = None
    chat_key = "messages" if "messages" in record else "conversations" if "conversations" in record else None
    if chat_key:
        got = _chat(record[chat_key], path, line, chat_key)
        if isinstance(got, Problem):
            return got
        system, query, answer = got
        qkey = rkey = chat_key
        if system is not None:
            extra["system"] = system
        if query is None:
            return Problem(path, line, chat_key, "has no user turn; the user's message is the query")
        if answer is None and not _first(record, REFERENCE_KEYS)[0]:
            return Problem(path, line, chat_key, "has no assistant turn; the assistant's message is the reference")
    if query is None:
        qkey, query = _first(record, QUERY_KEYS)
        if isinstance(query, list):  # DeepWriting: prompt is a chat list
            got = _chat(query, path, line, qkey)
            if isinstance(got, Problem):
                return got
            system, query, _ = got
            if system is not None:
                extra["system"] = system
            if query is None:
                return Problem(path, line, qkey, "has no user turn; the user's message is the query")
    if answer is None:
        rkey, answer = _first(record, REFERENCE_KEYS)
    if query is None:
        return Problem(path, line, "query", "missing; add a 'query' (or 'instruction', 'prompt', 'question') "
                                            "string or chat 'messages'")
    if not isinstance(query, str):
        return Problem(path, line, qkey, f"must be a string, got {type(query).__name__}")
    inp = record.get("input")
    if qkey == "instruction" and isinstance(inp, str) and inp.strip():  # Alpaca's instruction + input
        query = f"{query}\n\n{inp}"
    if not query.strip():
        return Problem(path, line, qkey, "is empty; write the query (or import the text as a reference-only file)")
    if answer is None:
        return Problem(path, line, "reference", "missing; add a 'reference' (or 'response', 'completion', "
                                                "'solution', 'output') string")
    if not isinstance(answer, str):
        return Problem(path, line, rkey, f"must be a string, got {type(answer).__name__}")
    thinking, answer = split_think(answer)
    tkey, given = _first(record, THINKING_KEYS)
    if given is not None:
        if not isinstance(given, str):
            return Problem(path, line, tkey, f"must be a string, got {type(given).__name__}")
        if given.strip():
            thinking = given
    if not answer.strip():
        return Problem(path, line, rkey, "has no answer text (empty, or nothing after </think>); give the answer")
    if thinking is not None and not thinking.strip():
        return Problem(path, line, rkey, "has an empty think block; remove it or write the thinking")
    category = record.get("category")
    if category is not None and not isinstance(category, str):
        return Problem(path, line, "category", f"must be a string, got {type(category).__name__}")
    rkey2, rubric = _first(record, RUBRIC_KEYS)
    rubric = _maybe_json(rubric)
    if rubric is not None and not (isinstance(rubric, list) and all(isinstance(c, str) for c in rubric)):
        return Problem(path, line, rkey2, "must be a list of criteria (strings)")
    got = _review_fields(record, path, line, extra)
    if isinstance(got, Problem):
        return got
    if isinstance(record.get("steps"), list) and thinking is not None:  # `palimpsest reer run --out` records
        extra.setdefault("source", "reer")
        extra.setdefault("details", {k: v for k, v in record.items() if k not in ("query", "reference")})
        extra.setdefault("scores", {k: record[k] for k in SCORE_COLUMNS if _num(record.get(k))})
    rid = record.get("id", record.get("uid"))
    return Record(path, line, query, answer, thinking, None if rid is None else str(rid), category,
                  tuple(rubric or ()), extra=extra)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _maybe_json(value: Any) -> Any:
    """CSV cells hold lists and dicts as JSON text; decode those that look like it."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
    return value


def _review_fields(record: dict, path: str, line: int, extra: dict) -> Problem | None:
    """Optional scores, status, rating, tags, notes, source, model (as Palimpsest exports them)."""
    scores = _maybe_json(record.get("scores"))
    if scores is not None:
        if not isinstance(scores, dict) or not all(isinstance(v, (int, float, type(None))) and not isinstance(v, bool)
                                                    for v in scores.values()):
            return Problem(path, line, "scores", "must be an object of numbers, like {\"final_ppl\": 1.9}")
        extra["scores"] = scores
    status = record.get("status")
    if status is not None:
        if status not in STATUSES:
            return Problem(path, line, "status", f"{status!r} is not a review status; use {', '.join(STATUSES)}")
        extra["status"] = status
    rating = record.get("rating")
    if isinstance(rating, str) and rating.strip().lstrip("-").isdigit():
        rating = int(rating)
    if rating is not None:
        if isinstance(rating, float) and rating.is_integer():
            rating = int(rating)
        if isinstance(rating, bool) or not isinstance(rating, int):
            return Problem(path, line, "rating", f"must be an integer, got {rating!r}")
        extra["rating"] = rating
    tags = _maybe_json(record.get("tags"))
    if tags is not None:
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            return Problem(path, line, "tags", "must be a list of strings")
        extra["tags"] = tags
    for key in ("notes", "source", "model"):
        v = record.get(key)
        if v is not None:
            if not isinstance(v, str):
                return Problem(path, line, key, f"must be a string, got {type(v).__name__}")
            extra[key] = v
    details = _maybe_json(record.get("details"))
    if isinstance(details, dict):
        extra["details"] = details
    return None


def _release_record(record: dict, path: str, line: int) -> Record | Problem:
    """A REER release output object: q, ref, uid, alist[...] (each entry a search of the item:
    initial_response, thinking_segments, possible_refinements per step, corrected_thinking).
    The last entry's corrected_thinking (else its segments, else its initial response) is the
    trajectory; the whole alist is kept as the search history."""
    for key in ("q", "ref"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            return Problem(path, line, key, "missing or empty; a REER release record needs q (query) and ref (answer)")
    alist = record.get("alist")
    if alist is None or alist == []:
        thinking = None
    elif not isinstance(alist, list) or not all(isinstance(a, dict) for a in alist):
        return Problem(path, line, "alist", "must be a list of search objects (initial_response, thinking_segments, "
                                            "possible_refinements, corrected_thinking)")
    else:
        last = alist[-1]
        thinking = last.get("corrected_thinking")
        if isinstance(thinking, list):
            thinking = "\n\n".join(str(s) for s in thinking)
        if not (isinstance(thinking, str) and thinking.strip()):
            segs = last.get("thinking_segments")
            thinking = "\n\n".join(str(s) for s in segs) if isinstance(segs, list) and segs else None
        if thinking is None and isinstance(last.get("initial_response"), str):
            thinking = split_think(last["initial_response"])[0] or last["initial_response"]
        if not (isinstance(thinking, str) and thinking.strip()):
            return Problem(path, line, "alist", "its last entry has no corrected_thinking, thinking_segments or "
                                                "initial_response to take the trajectory from")
        t2, _ = split_think(thinking)
        thinking = t2 if t2 is not None else thinking
    _, answer = split_think(record["ref"])
    if not answer.strip():
        return Problem(path, line, "ref", "has no answer text after </think>")
    uid = record.get("uid", record.get("id"))
    scores = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
              and any(w in k.lower() for w in ("ppl", "score"))}
    extra = {"source": "reer", "format": "reer-release",
             "details": {"format": "reer-release", "id": None if uid is None else str(uid), "history": alist or [],
                         **{k: v for k, v in record.items() if k not in ("q", "ref", "alist")}}}
    if scores:
        extra["scores"] = scores
    return Record(path, line, record["q"], answer, thinking, None if uid is None else str(uid), extra=extra)


