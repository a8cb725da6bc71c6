"""The engines' view of one task: an Item (id, query, reference, optional thinking, category,
rubric). Apart from the file reader (core.data.items reads every shape `import` reads into Items),
so the engines and the run machinery take it without importing the reader.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    id: str  # the record's id, or "<file>:<line>" when it has none
    query: str  # the task x
    reference: str  # the good answer y
    thinking: str = ""  # a trajectory z, may be empty
    category: str | None = None  # e.g. HelloBench's "argumentative_writing"
    rubric: tuple[str, ...] = ()  # criteria a judge scores against (HelloBench checklists)
