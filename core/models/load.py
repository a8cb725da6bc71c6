"""Loading a model by spec: a table of backends, each named "module:Class" and imported only when a
spec needs it (as lm-evaluation-harness's model registry does), so the protocol (core.models.lm)
and everything that only talks to it import no backend. `load_with_engine` is the shelf's loader:
a local model set up to generate with the `engine` setting (core.models.ct2).

Specs: `scripted:[options]` (core.models.scripted), a server URL (core.models.server; see
core.models.urls), else the built-in alias, a local folder or a hub id (core.models.hf).
"""
from __future__ import annotations

import importlib

from core.models.lm import DEFAULT_MODEL, LM
from core.models.urls import is_server_spec

BACKENDS = {  # an LM's `backend` attribute -> the class that loads its specs (`from_spec`)
    "scripted": "core.models.scripted:ScriptedLM",
    "server": "core.models.server:OpenAILM",
    "hf": "core.models.hf:HFLM",
}


def is_scripted_spec(spec: str) -> bool:
    """Specs that name the scripted fake model: `scripted:` plus options."""
    return spec.startswith("scripted:") or spec == "scripted"


def backend_of(spec: str) -> str:
    """The BACKENDS key that loads `spec`."""
    spec = (spec or DEFAULT_MODEL).strip()
    if is_scripted_spec(spec):
        return "scripted"
    return "server" if is_server_spec(spec) else "hf"


def backend_class(name: str) -> type:
    """The class BACKENDS names for `name`, imported now."""
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def load_lm(spec: str = DEFAULT_MODEL, dtype: str = "float32", device: str | None = None, *,
            key_hosts: frozenset | None = None) -> LM:
    """Load a model by spec: the built-in alias, a local path, a hub id, a server URL, or
    `scripted:[options]` (the deterministic fake, core.models.scripted). Every call loads anew:
    core.models.shelf keeps one copy per spec. `key_hosts` (server URLs only): the (host, port)
    pairs the API key may be sent to; None sends it to the spec's own server (a spec typed on
    the command line).

    Raises ModelNotFound with a message naming the spec and what to do.
    """
    spec = (spec or DEFAULT_MODEL).strip()
    kind = backend_of(spec)
    cls = backend_class(kind)
    if kind == "scripted":
        return cls.from_spec(spec)
    if kind == "server":
        return cls.from_spec(spec, key_hosts=key_hosts)
    return cls.from_spec(spec, dtype=dtype, device=device)


def load_with_engine(spec: str, dtype: str = "float32", device: str | None = None, **kw) -> LM:
    """`load_lm`, then a local model set up to generate with the `engine` setting
    ($PALIMPSEST_ENGINE, core.models.ct2; scoring stays the local model's own)."""
    from core.models.ct2 import engine_from_env, with_engine  # imports the local backend: only when loading

    engine = engine_from_env()  # a bad setting fails before the slow load
    lm = load_lm(spec, dtype=dtype, device=device, **kw)
    if getattr(lm, "backend", None) == "hf" and (device or "cpu") == "cpu" and getattr(lm, "device", "cpu") == "cpu":
        return with_engine(lm, engine)
    return lm
