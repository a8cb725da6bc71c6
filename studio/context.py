"""StudioContext: what every page of the studio shares, made once per app by build_app.

Knows: the store (one thread-safe handle), the model (a lazy `get_lm()`), its name, the shelf
of other models loaded by spec, the JobRunner that drives REER runs in background threads, and
the built-in samples. Does not know pages or Gradio. Nothing here is a module-level global:
two apps in one process (tests) have two contexts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.models.lm import LM
from core.store import Store
from studio.models import ModelShelf
from studio.runners.reer import JobRunner


@dataclass(frozen=True)
class StudioContext:
    store: Store  # prompts, runs, events, trajectories: the single source of truth
    get_lm: Callable[[], LM]  # the model, loaded once on first use
    model_name: str  # the model's spec, shown on the pages and recorded with each run
    runner: JobRunner  # drives REER runs in background threads (one per app)
    samples_path: Path | None = None  # the built-in sample prompts (data/samples.jsonl)
    samples: list[dict] = field(default_factory=list)  # those samples, read once (the Score page's menu)
    models: ModelShelf | None = None  # every model the pages have loaded by spec (the app's model included)
