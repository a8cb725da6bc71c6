"""The model shelf: every model a process uses, loaded once per spec and shared.

Knows: loading a spec lazily through `core.models.load.load_lm` (or a loader given to it), keyed
by (spec, dtype, device); one load per key even when threads ask at once (a lock per key, so
loading one model never blocks handing out another); a bound on how many models stay loaded,
evicting the least recently used one (`PALIMPSEST_MAX_MODELS`, default 3; a model still in use
by a running job stays alive until that job drops it, the shelf just forgets it); models built
elsewhere put on it by hand (`put`: tests, a scripted double). `default_shelf()` is the one shelf
of the process, which the studio and the CLI use; `ModelChoice` is a shelf seen with a default
spec (what an empty spec field means in the studio) and a `ModelPolicy`: the specs a studio's
users may load, as the person who started the app set them (literal specs, fnmatch patterns,
or anything), and the servers the API key may go to (only hosts named literally at start).
Every spec a page asks for passes `ModelChoice.spec`/`lm`, so the policy holds for crafted API
calls as much as for the page's own dropdowns.

A local folder or file is loaded again when the files there changed since it was loaded (a model
trained again into the same folder, by the Train page or any other process: `files_mark`); a
job still holding the old copy keeps it.

Does not know: what a model is for, Gradio, runs.
"""
from __future__ import annotations

import fnmatch
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from core.models.env import number_from_env
from core.models.lm import DEFAULT_MODEL, LM, LMError
from core.models.load import load_lm, load_with_engine
from core.models.marks import files_mark
from core.models.urls import is_server_spec, server_hosts

MAX_MODELS_ENV = "PALIMPSEST_MAX_MODELS"
DEFAULT_MAX_MODELS = 3  # models kept loaded at once per process (the app's, a judge, one more)

Key = tuple  # (spec, dtype, device), plus the key hosts for a server loaded under a policy

GLOB_CHARS = "*?["  # what makes an --allow-model pattern a pattern (fnmatch)


class BadShelfSetting(LMError):
    """The shelf's size setting is not a positive whole number."""


class ModelNotAllowed(LMError):
    """A spec the app's model policy does not allow."""


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
        self._marks: dict[Key, tuple] = {}  # files_mark of each model's spec when it was loaded
        self._loading: dict[Key, threading.Lock] = {}  # one lock per key being loaded
        self._lock = threading.Lock()  # guards the two dicts above (never held while loading)
        self.loads = 0  # models loaded so far (put does not count)

    def get(self, spec: str | None = None, dtype: str = "float32", device: str | None = None,
            key_hosts: frozenset | None = None) -> LM:
        """The model for `spec`, loaded now if it is not on the shelf. A failed load is not kept:
        the error reaches the caller and the next call tries again. `key_hosts` (server specs):
        where the API key may go (core.models.load.load_lm); a server loaded under other key hosts
        is another shelf entry, so one app's key never rides on a model another app loaded."""
        key = (normal_spec(spec), dtype, device) + (() if key_hosts is None else (key_hosts,))
        extra = {} if key_hosts is None else {"key_hosts": key_hosts}
        with self._lock:
            if self._current(key):
                self._models.move_to_end(key)
                return self._models[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # callers of the same key wait here for the one load
            with self._lock:
                if self._current(key):
                    self._models.move_to_end(key)
                    return self._models[key]
            mark = files_mark(key[0])  # before loading: files saved during the load make the next get load again
            try:
                lm = self.load(key[0], dtype=dtype, device=device, **extra)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self.loads += 1
                self._keep(key, lm, mark)
            return lm

    def _current(self, key: Key) -> bool:
        """On the shelf, and loaded from the files that are on disk now (caller holds the lock)."""
        return key in self._models and self._marks.get(key) == files_mark(key[0])

    def put(self, spec: str, lm: LM, dtype: str = "float32", device: str | None = None) -> LM:
        """Put a model built elsewhere on the shelf under `spec` (replacing what was there)."""
        spec = normal_spec(spec)
        with self._lock:
            self._keep((spec, dtype, device), lm, files_mark(spec))
        return lm

    def drop(self, spec: str | None) -> int:
        """Forget every copy of `spec` (any dtype/device); returns how many were dropped."""
        spec = normal_spec(spec)
        with self._lock:
            keys = [k for k in self._models if k[0] == spec]
            for k in keys:
                del self._models[k]
                self._marks.pop(k, None)
        return len(keys)

    def loaded(self) -> list[str]:
        """Specs on the shelf, least recently used first (a spec twice when in two dtypes)."""
        with self._lock:
            return [k[0] for k in self._models]

    def _keep(self, key: Key, lm: LM, mark: tuple) -> None:
        self._models[key], self._marks[key] = lm, mark
        self._models.move_to_end(key)
        while len(self._models) > self.capacity:
            gone, _ = self._models.popitem(last=False)
            self._marks.pop(gone, None)


@functools.cache
def default_shelf() -> ModelShelf:
    """The process's shelf (made on first use, sized by $PALIMPSEST_MAX_MODELS): the studio's
    pages and the CLI's commands all load through it, so a spec is loaded once per process;
    local models generate with the engine setting (load_with_engine)."""
    return ModelShelf(load=load_with_engine)


@dataclass(frozen=True)
class ModelPolicy:
    """Which model specs a studio's users may load, set by whoever started it (`palimpsest app
    --model X --model Y --allow-model PATTERN --allow-any-model`), and where the API key may go."""

    specs: tuple[str, ...]  # literal specs, the app's model first; the pages' dropdowns list them
    patterns: tuple[str, ...] = ()  # fnmatch globs over normal specs (`*` also matches `/`)
    allow_any: bool = False  # any spec at all, typed freely (a user can point the server anywhere)

    def __post_init__(self):
        specs = tuple(dict.fromkeys(normal_spec(s) for s in self.specs))  # stripped, no repeats, order kept
        if not specs:
            raise ModelNotAllowed("a model policy needs at least the app's model")
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "patterns", tuple(p.strip() for p in self.patterns if p.strip()))

    @property
    def default(self) -> str:
        """The app's model: what an empty field means."""
        return self.specs[0]

    @property
    def free_text(self) -> bool:
        """True when a page may take a typed spec (patterns or --allow-any-model), not only a pick."""
        return self.allow_any or bool(self.patterns)

    def allows(self, spec: str | None) -> bool:
        """Whether `spec` (empty: the app's model) may be loaded."""
        spec = (spec or "").strip() or self.default
        return (self.allow_any or spec in self.specs
                or any(fnmatch.fnmatchcase(spec, p) for p in self.patterns))

    def check(self, spec: str | None) -> str:
        """The spec as recorded (empty means the app's model); ModelNotAllowed naming the fix when
        the policy does not allow it."""
        spec = (spec or "").strip() or self.default
        if not self.allows(spec):
            listed = ", ".join(self.specs) + "".join(f", {p} (pattern)" for p in self.patterns)
            raise ModelNotAllowed(
                f"model {spec!r} is not allowed in this studio (allowed: {listed}); pick one of those, "
                "or restart the app with --model SPEC or --allow-model PATTERN naming it")
        return spec

    @functools.cached_property
    def key_hosts(self) -> frozenset:
        """(host, port) pairs the API key may be sent to: the servers of the literal specs, and
        of the patterns whose scheme and host:port hold no wildcard. Nothing a user types later
        adds to this, not even under allow_any."""
        named = list(self.specs) + [u for p in self.patterns for u in _replica_urls(p) if not _glob_before_path(u)]
        return frozenset(h for spec in named for h in server_hosts(spec))


def _replica_urls(pattern: str) -> list[str]:
    """A spec or pattern's URLs, one per replica (a comma list before '#')."""
    head = pattern.strip()
    if head.startswith("openai:"):
        head = head[len("openai:"):]
    return [u for u in head.partition("#")[0].split(",") if u.strip()]


def _glob_before_path(pattern: str) -> bool:
    """True when a wildcard sits in a pattern's scheme or host:port (its server is not named)."""
    head = pattern.strip()
    if head.startswith("openai:"):
        head = head[len("openai:"):]
    scheme, sep, rest = head.partition("://")
    netloc = rest.split("/", 1)[0].split("#", 1)[0] if sep else head
    return any(c in scheme + netloc for c in GLOB_CHARS)


@dataclass(frozen=True)
class ModelChoice:
    """A shelf seen with a default spec and a policy: an empty spec means `default` (the
    studio's model); a spec the policy refuses raises ModelNotAllowed before anything loads."""

    shelf: ModelShelf  # where models are loaded and kept
    default: str  # the spec an empty field means, recorded with runs
    policy: ModelPolicy | None = field(default=None)  # what may be loaded; None: the default spec only

    def __post_init__(self):
        default = normal_spec(self.default)
        object.__setattr__(self, "default", default)
        policy = self.policy or ModelPolicy((default,))
        if policy.default != default:  # the app's model leads the list whatever the caller gave
            policy = ModelPolicy((default, *policy.specs), policy.patterns, policy.allow_any)
        object.__setattr__(self, "policy", policy)

    def spec(self, spec: str | None) -> str:
        """The spec as recorded with a run: empty means the default; ModelNotAllowed when the
        policy refuses it."""
        return self.policy.check(spec)

    def lm(self, spec: str | None = None) -> LM:
        """The model for `spec` (the default when empty), loaded once; ModelNotAllowed first when
        the policy refuses it. A server gets the API key only if its host is a key host."""
        spec = self.spec(spec)
        if is_server_spec(spec):
            return self.shelf.get(spec, key_hosts=self.policy.key_hosts)
        return self.shelf.get(spec)

    def get_lm(self) -> LM:
        """The default model (a `get_lm()` for code that takes one)."""
        return self.lm(self.default)

    def choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a page's model dropdown: "" is the app's model, then the
        other allowed specs."""
        return [(f"{self.default} (the app's model)", "")] + [(s, s) for s in self.policy.specs[1:]]
