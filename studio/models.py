"""ModelShelf: the models one studio has loaded, by spec, each loaded once and shared by pages.

Knows: the app's own model (a lazy `get_lm()`) and its spec, and how to load any other spec
(`core.models.lm.load_lm`: an alias, a local folder, a hub id or an OpenAI-compatible server URL).
An empty spec, or the app's own, means the app's model. Loading is not wrapped: callers turn a
failure into their own message. Does not know Gradio, pages or runs.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from core.models.lm import LM, load_lm


@dataclass
class ModelShelf:
    get_lm: Callable[[], LM]  # the app's model, loaded once on first use
    model_name: str  # the app's model spec: what an empty spec means
    load: Callable[[str], LM] = load_lm  # loads any other spec (slow: a model load)
    _loaded: dict = field(default_factory=dict)  # spec -> LM
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def spec(self, spec: str | None) -> str:
        """The spec as recorded with a run: empty means the app's model."""
        return (spec or "").strip() or self.model_name

    def lm(self, spec: str | None) -> LM:
        """The model for `spec`, loaded on first use and kept (one load per spec per app)."""
        spec = self.spec(spec)
        if spec == self.model_name:
            return self.get_lm()
        with self._lock:
            if spec not in self._loaded:
                self._loaded[spec] = self.load(spec)
            return self._loaded[spec]
