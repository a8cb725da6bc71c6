"""Settings read from the environment and the cache folder, shared by the backends, the shelf and
the studio's runners: `number_from_env` (a checked number, or the default) and `cache_dir`."""
from __future__ import annotations

import os
from pathlib import Path

from core.models.lm import LMError


def number_from_env(name: str, default: float, kind: type = float, minimum: float = 0, *, unit: str,
                    example: str, error: type[LMError] = LMError) -> float:
    """$name as a number of `kind` of at least `minimum` (above 0 when minimum is 0), else `default`;
    `error` names the variable, the value and an example when it is not."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        whole = "whole " if kind is int else ""
        raise error(f"{name}={raw!r}: give a {whole}number of {unit}, e.g. {example}") from None
    if value < minimum or (minimum == 0 and value <= 0):
        least = "above 0" if minimum == 0 else f"at least {minimum:g}"
        raise error(f"{name}={raw!r}: the number of {unit} must be {least}")
    return value


def cache_dir() -> Path:
    """Where converted models are cached: $PALIMPSEST_CACHE, else ~/.cache/palimpsest."""
    root = os.environ.get("PALIMPSEST_CACHE") or Path.home() / ".cache" / "palimpsest"
    return Path(root)

