"""The model shelf: every model a process uses, loaded once per spec and shared.

Knows: loading a spec lazily through `core.models.lm.load_lm` (or a loader given to it), keyed
by (spec, dtype, device); one load per key even when threads ask at once (a lock per key, so
loading one model never blocks handing out another); a bound on how many models stay loaded,
evicting the least recently used one (`PALIMPSEST_MAX_MODELS`, default 3; a model still in use
by a running job stays alive until that job drops it, the shelf just forgets it); models built
elsewhere put on it by hand (`put`: tests, a scripted double). `default_shelf()` is the one shelf
of the process, which the studio and the CLI use; `ModelChoice` is a shelf seen with a default
spec (what an empty spec field means in the studio).

Does not know: what a model is for, Gradio, runs. A folder whose weights change on disk (a model
trained again into the same folder) is the caller's to `drop` before loading it again.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from core.models.lm import DEFAULT_MODEL, LM, LMError, load_lm, number_from_env

MAX_MODELS_ENV = "PALIMPSEST_MAX_MODELS"
DEFAULT_MAX_MODELS = 3  # models kept loaded at once per process (the app's, a judge, one more)

Key = tuple  # (spec, dtype, device)


class BadShelfSetting(LMError):
    """The shelf's size setting is not a positive whole number."""


def max_models_from_env() -> int:
    """$PALIMPSEST_MAX_MODELS, else DEFAULT_MAX_MODELS; BadShelfSetting when it is not 1 or more."""
    return int(number_from_env(MAX_MODELS_ENV, DEFAULT_MAX_MODELS, int, 1, unit="models", example="3",
                               error=BadShelfSetting))


def normal_spec(spec: str | None) -> str:
    """The spec as keyed and recorded: stripped; empty means the built-in default."""
    return (spec or "").strip() or DEFAULT_MODEL


class ModelShelf:
    """Models by (spec, dtype, device), loaded on first use, at most `capacity` kept (LRU)."""

    def __init__(self, capacity: int | None = None, load: Callable[..., LM] = load_lm):
        self.capacity = max_models_from_env() if capacity is None else capacity  # models kept at once
        if self.capacity < 1:
            raise BadShelfSetting(f"a model shelf must keep at least 1 model, not {self.capacity}")
        self.load = load  # load(spec, dtype=..., device=...) -> LM; slow for real models
        self._models: OrderedDict[Key, LM] = OrderedDict()  # least recently used first
        self._loading: dict[Key, threading.Lock] = {}  # one lock per key being loaded
        self._lock = threading.Lock()  # guards the two dicts above (never held while loading)
        self.loads = 0  # models loaded so far (put does not count)

    def get(self, spec: str | None = None, dtype: str = "float32", device: str | None = None) -> LM:
        """The model for `spec`, loaded now if it is not on the shelf. A failed load is not kept:
        the error reaches the caller and the next call tries again."""
        key = (normal_spec(spec), dtype, device)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # callers of the same key wait here for the one load
            with self._lock:
                if key in self._models:
                    self._models.move_to_end(key)
                    return self._models[key]
            try:
                lm = self.load(key[0], dtype=dtype, device=device)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self.loads += 1
                self._keep(key, lm)
            return lm

    def put(self, spec: str, lm: LM, dtype: str = "float32", device: str | None = None) -> LM:
        """Put a model built elsewhere on the shelf under `spec` (replacing what was there)."""
        with self._lock:
            self._keep((normal_spec(spec), dtype, device), lm)
        return lm

    def drop(self, spec: str | None) -> int:
        """Forget every copy of `spec` (any dtype/device); returns how many were dropped."""
        spec = normal_spec(spec)
        with self._lock:
            keys = [k for k in self._models if k[0] == spec]
            for k in keys:
                del self._models[k]
        return len(keys)

    def loaded(self) -> list[str]:
        """Specs on the shelf, least recently used first (a spec twice when in two dtypes)."""
        with self._lock:
            return [k[0] for k in self._models]

    def _keep(self, key: Key, lm: LM) -> None:
        self._models[key] = lm
        self._models.move_to_end(key)
        while len(self._models) > self.capacity:
            self._models.popitem(last=False)


@functools.cache
def default_shelf() -> ModelShelf:
    """The process's shelf (made on first use, sized by $PALIMPSEST_MAX_MODELS): the studio's
    pages and the CLI's commands all load through it, so a spec is loaded once per process."""
    return ModelShelf()


@dataclass(frozen=True)
class ModelChoice:
    """A shelf seen with a default spec: an empty spec means `default` (the studio's model)."""

    shelf: ModelShelf  # where models are loaded and kept
    default: str  # the spec an empty field means, recorded with runs

    def spec(self, spec: str | None) -> str:
        """The spec as recorded with a run: empty means the default."""
        return (spec or "").strip() or self.default

    def lm(self, spec: str | None = None) -> LM:
        """The model for `spec` (the default when empty), loaded once."""
        return self.shelf.get(self.spec(spec))

    def get_lm(self) -> LM:
        """The default model (a `get_lm()` for code that takes one)."""
        return self.shelf.get(self.default)
