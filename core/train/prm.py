"""The prm export as token-classification rows, in the layout TRL's PRMTrainer read.

Knows: reading an `export --format prm` train.jsonl (prompt; `completions`, or `steps` under its
older name: R2's reflections; `labels`: the round's reward total > 0) with a DataError naming
the line for anything else; and tokenising a record as TRL's PRMTrainer did (TRL up to 0.2x;
TRL 1.16 has no PRM trainer): the tokenizer's bos token, the prompt's tokens, then each step's
tokens followed by the separator's tokens (default "\\n", PRMConfig's); the labels are -100
everywhere but the separator's last token after each step, which carries that step's label
(1 good, 0 bad). Those rows train a token-classification model (AutoModelForTokenClassification,
num_labels=2) with transformers' `Trainer` and `DataCollatorForTokenClassification`
(docs/training.md); at inference the model's class at each separator scores the step before it.

Does not know: how the steps are made (core.export.prm_records), the SFT/DPO runs (core.train.loop).
"""
from __future__ import annotations

from pathlib import Path

from core.train.data import IGNORE, DataError, json_lines

SEPARATOR = "\n"  # between steps, as TRL's PRMConfig.step_separator defaulted to


def read_steps(path: str | Path) -> list[dict]:
    """The records of a prm export: {"id", "prompt", "completions", "labels"}; DataError naming the line."""
    path = Path(path)
    out = []
    for n, r in json_lines(path, "prm"):
        steps = r.get("completions", r.get("steps")) if isinstance(r, dict) else None
        labels = r.get("labels") if isinstance(r, dict) else None
        if not (isinstance(r, dict) and isinstance(r.get("prompt"), str) and isinstance(steps, list) and steps
                and all(isinstance(s, str) and s.strip() for s in steps)):
            raise DataError(f"{path}:{n}: a step record needs prompt (text) and completions or steps (non-empty "
                            "texts), as `export --format prm` writes them")
        if not (isinstance(labels, list) and len(labels) == len(steps) and all(isinstance(x, bool) for x in labels)):
            raise DataError(f"{path}:{n}: labels must be one true/false per step ({len(steps)} step(s))")
        out.append({"id": str(r.get("id", n)), "prompt": r["prompt"], "completions": steps, "labels": labels})
    if not out:
        raise DataError(f"{path}: no step records; export some with `export --format prm` (R2 runs with reflections)")
    return out


def step_row(record: dict, tokenizer, separator: str = SEPARATOR, max_length: int | None = None) -> dict:
    """{"input_ids", "labels"} of one record (module docstring), cut to max_length tokens."""
    ids = list(tokenizer(record["prompt"], add_special_tokens=False)["input_ids"])
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    labels = [IGNORE] * len(ids)
    sep = tokenizer.encode(separator, add_special_tokens=False)
    for step, good in zip(record["completions"], record["labels"]):
        part = list(tokenizer(step, add_special_tokens=False)["input_ids"]) + sep
        ids += part
        labels += [IGNORE] * (len(part) - 1) + [int(good)]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}
