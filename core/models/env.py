"""Settings read from the environment and the cache folder, shared by the backends, the shelf and
the studio's runners: `number_from_env` (a checked number, or the default), `cache_dir`, and
`files_mark` (what tells that a model saved in a folder was saved again)."""
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


# weights, sentencepiece vocabularies, chat templates
MODEL_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model", ".jinja")
MODEL_NAMES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt")  # what a load reads besides those


def files_mark(path: str | Path) -> tuple:
    """(name, size, mtime_ns) of each model file in the folder `path` (not below it: weights,
    config, tokenizer, template), or of the file itself: it changes when a model saved there is
    saved again (trained into the same folder), and not when a training run rewrites its
    metrics.json beside them. () for anything not on disk (an alias, a server URL, a hub id)."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            files = sorted(f for f in path.iterdir()
                           if f.is_file() and (f.suffix in MODEL_SUFFIXES or f.name in MODEL_NAMES))
        else:
            files = [path] if path.is_file() else []
        return tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    except OSError:  # removed or unreadable while looked at: no mark, so a load says what is wrong
        return ()
