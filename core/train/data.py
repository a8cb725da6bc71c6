"""Training data: reading the chat export, checking it, and tokenizing it with the loss mask.

Knows the chat JSONL contract the export writes, one object per line:
  {"id": ..., "messages": [{"role": "user", "content": QUERY},
                           {"role": "assistant", "content": assistant_turn(THINKING, ANSWER)}]}
(the assistant turn as core.format writes and reads it; an optional leading system message and
earlier turns are allowed; only the LAST message, which must be the assistant's, is trained on).
Lines holding query/reference (+ thinking) instead, as in data/samples.jsonl, are turned into
that shape (`chat_record`), so a sample file trains as it is. The file is read through
core.data.records (`read_raw`: strict UTF-8, the size limits, JSON/CSV/Parquet too) and what a
chat may hold is core.data.template_check.chat_problem's to say, the same check
`export --check-template` runs. Every bad line is a `core.data.items.Problem` naming file, line
and field.

Knows the loss mask: the labels are the token ids of the last assistant turn's content plus
the end-of-turn token (`<|im_end|>` for SmolLM2) and -100 everywhere else (system, user,
the assistant header, the newline the template puts after the end-of-turn token). It is
computed from the chat template's own rendering: the prompt (every message but the last,
with the generation prompt) must render as a prefix of the whole conversation, and the
content is located in what follows by character offsets, so no template needs special
markers. Does not know models, training loops or the store.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from core.data.items import InputError, Item, Problem, parse_record
from core.data.records import read_raw
from core.data.template_check import chat_problem
from core.format import assistant_turn, split_assistant_turn

IGNORE = -100  # label of tokens that carry no loss


class DataError(InputError):
    """The training data cannot be used; the message names the file, line and field and the fix."""


@dataclass(frozen=True)
class ChatRecord:
    id: str  # the record's id, or "<file>:<line>"
    messages: tuple[dict, ...]  # the conversation; the last message is the assistant turn to learn
    line: int = 0  # 1-based line in the source file (0 when built in memory)

    @property
    def query(self) -> str:
        """The last user message before the trained turn."""
        return next(m["content"] for m in reversed(self.messages[:-1]) if m["role"] == "user")

    @property
    def thinking(self) -> str:
        """The think block's text of the trained turn ("" when it has none)."""
        return split_assistant_turn(self.messages[-1]["content"])[0]

    @property
    def answer(self) -> str:
        """The trained turn's text after the think block (the whole turn when it has none)."""
        return split_assistant_turn(self.messages[-1]["content"])[1]


@dataclass(frozen=True)
class Example:
    id: str  # the record's id
    input_ids: list[int]  # the whole conversation, tokenized
    labels: list[int]  # input_ids on the trained turn's tokens, IGNORE elsewhere

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def chat_record(id: str, query: str, thinking: str, answer: str, line: int = 0) -> ChatRecord:
    """A chat record in the export's shape from a query, a trajectory and its answer."""
    return ChatRecord(str(id), ({"role": "user", "content": query},
                                {"role": "assistant", "content": assistant_turn(thinking, answer)}), line)


def items_to_chat_jsonl(items: Iterable[Item], path: str | Path) -> int:
    """Write items (query, thinking, reference) as chat JSONL in the export's shape; returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            rec = chat_record(it.id, it.query, it.thinking, it.reference)
            f.write(json.dumps({"id": rec.id, "messages": list(rec.messages)}, ensure_ascii=False) + "\n")
            n += 1
    return n


def parse_chat(record, path: str, line: int) -> ChatRecord | Problem:
    """One decoded line as a ChatRecord, or the Problem that stops it."""
    if not isinstance(record, dict):
        return Problem(path, line, "", 'expected a JSON object like {"id": ..., "messages": [...]}')
    if "messages" not in record:
        got = parse_record(record, path, line)  # query/reference(/thinking) lines become chats
        if isinstance(got, Problem):
            if got.field in ("query", "reference") and "missing" in got.message:
                return Problem(path, line, "messages", "missing; give a list of chat messages "
                               "(user, then assistant) or query/thinking/reference fields")
            return got
        if not got.query.strip():
            return Problem(path, line, "query", "is empty; give the task the answer responds to")
        rec = chat_record(got.id, got.query, got.thinking, got.reference, line)
        refused = chat_problem(list(rec.messages))
        return rec if refused is None else Problem(path, line, *refused)
    msgs = record["messages"]
    refused = chat_problem(msgs)
    if refused is not None:
        return Problem(path, line, *refused)
    rid = record.get("id")
    rid = str(rid) if rid is not None else f"{Path(path).name}:{line}"
    clean = tuple({"role": m["role"], "content": m["content"]} for m in msgs)
    return ChatRecord(rid, clean, line)


def read_chat_jsonl(path: str | Path) -> list[ChatRecord]:
    """Every record of a chat file (JSONL as the export writes it, or any JSON/CSV/Parquet/datasets
    input core.data.records reads, strict UTF-8, within its size limits); any bad record (or none
    at all) raises DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file; give the chat JSONL written by the export "
                        "(one {\"messages\": [...]} object per line)")
    records, problems = [], []
    try:
        for n, decoded in read_raw(p):
            if isinstance(decoded, Problem):
                if decoded.line == 0 and "holds no records" in decoded.message:
                    break  # reported below, with the fix for training
                problems.append(decoded)
                continue
            got = parse_chat(decoded, str(path), n)
            (records if isinstance(got, ChatRecord) else problems).append(got)
    except InputError as exc:
        raise DataError(f"{exc}; training reads nothing from it") from None
    if problems:
        more = f" (and {len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        raise DataError(f"{problems[0]}{more}; fix or remove the line(s) before training")
    if not records:
        raise DataError(f"{path}: the file has no records; export some accepted trajectories first")
    seen: dict[str, int] = {}
    for r in records:
        if r.id in seen:
            raise DataError(f"{path}:{r.line} field 'id': {r.id!r} repeats line {seen[r.id]}; ids must be unique "
                            "(the held-out split is made by id)")
        seen[r.id] = r.line
    return records


def json_lines(path: str | Path, fmt: str) -> list[tuple[int, object]]:
    """(line number, parsed JSON) of every non-blank line of an `export --format fmt` file (the
    preference and step readers' first pass); DataError naming the line and the fix."""
    path = Path(path)
    hint = f"give an `export --format {fmt}` train.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it ({exc}); {hint}") from None
    out = []
    for n, text in enumerate(lines, 1):
        if text.strip():
            try:
                out.append((n, json.loads(text)))
            except ValueError:
                raise DataError(f"{path}:{n}: not JSON; {hint}") from None
    return out


def split_records(records: Sequence[ChatRecord], eval_frac: float, seed: int) -> tuple[list, list]:
    """(train, held-out): a seeded shuffle puts round(eval_frac * n) records, at least one when
    eval_frac > 0, in the held-out set; at least one record always stays for training."""
    if not 0 <= eval_frac < 1:
        raise DataError(f"eval fraction {eval_frac}: must be at least 0 and below 1")
    n_eval = 0 if eval_frac == 0 else max(1, round(eval_frac * len(records)))
    if n_eval >= len(records):
        raise DataError(f"{len(records)} record(s) leave nothing to train on with eval fraction {eval_frac}; "
                        "lower --eval-frac or add records")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def encode(tokenizer, record: ChatRecord) -> Example:
    """Tokenize a record with the loss mask on its last assistant turn (module docstring)."""
    msgs = list(record.messages)
    prompt = tokenizer.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    content = msgs[-1]["content"]
    if not full.startswith(prompt):
        raise DataError(f"record {record.id}: the chat template does not render the prompt as a prefix of the "
                        "conversation, so the assistant turn cannot be masked; use a model whose template does")
    start = full.find(content, len(prompt))
    if start < 0:
        raise DataError(f"record {record.id}: the chat template changes the assistant turn (e.g. drops the think "
                        "block); train a model whose template keeps it verbatim")
    end = start + len(content)
    eos = tokenizer.eos_token or ""
    if eos and full.startswith(eos, end):
        end += len(eos)  # learn to stop: the end-of-turn token is trained too
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [t if (a >= start and b <= end and b > a) else IGNORE for t, (a, b) in zip(ids, offsets)]
    # a token straddling the start (BPE merging the header's "\n" with the content) is trained too
    for i, (a, b) in enumerate(offsets):
        if a < start < b:
            labels[i] = ids[i]
    return Example(record.id, list(ids), labels)


def check_lengths(examples: Sequence[Example], records: Sequence[ChatRecord], max_length: int, path: str) -> None:
    """DataError naming every record longer than `max_length` tokens (nothing is cut silently)."""
    long = [(r, len(e.input_ids)) for r, e in zip(records, examples) if len(e.input_ids) > max_length]
    if long:
        where = ", ".join(f"{path}:{r.line} (id {r.id}, {n} tokens)" for r, n in long[:5])
        more = f" and {len(long) - 5} more" if len(long) > 5 else ""
        raise DataError(f"{len(long)} record(s) do not fit the {max_length}-token context: {where}{more}; "
                        "shorten or drop them, or raise --max-length (up to the model's window)")


def collate(batch: Sequence[dict], pad_id: int) -> dict:
    """Right-pad a batch of {"input_ids", "labels"} into tensors (labels padded with IGNORE)."""
    import torch

    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = torch.tensor(b["input_ids"])
        labels[i, :n] = torch.tensor(b["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
