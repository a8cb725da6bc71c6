"""Prompt templates, loaded by name from assets/prompts/*.txt and filled with str.format.

Templates are plain text written for this project; `{name}` fields are filled, `{{` is a brace.
"""
from __future__ import annotations

from functools import lru_cache

from assets import PROMPTS_DIR


class PromptNotFound(KeyError):
    """No template of that name in assets/prompts."""


@lru_cache(maxsize=None)
def template(name: str) -> str:
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.txt")))
        raise PromptNotFound(f"prompt '{name}' not found in {PROMPTS_DIR}; known: {known}")
    return path.read_text(encoding="utf-8").rstrip("\n")


def render(name: str, **fields: str) -> str:
    return template(name).format(**fields)
