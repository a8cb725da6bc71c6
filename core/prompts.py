"""Prompt templates, loaded by name from assets/prompts/*.txt and filled with str.format.

Templates are plain text written for this project; `{name}` fields are filled, `{{` is a brace.
Quoted texts are put between `<draft>` and `</draft>` (core.r2.loop's parser strips those tags, so
a model that echoes them leaves nothing behind); the judge prompts keep `<<<` / `>>>` around the
graded text.

Also knows what of a template a model must never echo into its own text (core.quality's leftover
filters read these, so the lists follow the templates without being kept by hand):
`instruction_sentences` (every template's own sentences, with fields, `<placeholders>` and quoted
examples such as "Hmm, maybe..." taken out), `section_labels` (whole-line headers such as
"The draft:") and `delimiters` (lines of symbols such as `<<<`, and the tags the templates name).
Does not know: what a model does with a prompt, or which prompt a caller sends.
"""
from __future__ import annotations

import re
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


def names() -> tuple[str, ...]:
    """Every template's name, sorted."""
    return tuple(sorted(p.stem for p in PROMPTS_DIR.glob("*.txt")))


_FIELD = re.compile(r"\{[^{}]*\}")  # a {field} (the templates' literal braces are written {{ }})
_PLACEHOLDER = re.compile(r"<[a-z][^<>]*\s[^<>]*>")  # "<a number from 1 to 10>": several words in angle brackets
_QUOTED = re.compile(r"\"[^\"\n]*\"|“[^”\n]*”")  # an example the model may well write ("Hmm, maybe...")
_TAG = re.compile(r"</?([a-z]+)>")
_LABEL = re.compile(r"^([A-Z][^:{}<>\"]{0,60}):\s*(?:\{[^{}]*\}|<[^<>]*>)?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")


def _plain(text: str) -> str:
    """A template without its quoted examples, fields and placeholders (each leaves a line break,
    so no sentence runs across one)."""
    text = _QUOTED.sub("\n", text)
    return _PLACEHOLDER.sub("\n", _FIELD.sub("\n", text.replace("{{", "{").replace("}}", "}")))


@lru_cache(maxsize=None)
def instruction_sentences() -> tuple[str, ...]:
    """The templates' own sentences, in template order, deduplicated: those of four words or more
    that end a sentence, and any of seven or more (a piece cut short by a field or a quoted example
    is kept only when it is that long: "not at all) to" is no sentence of ours)."""
    out: list[str] = []
    for name in names():
        for piece in _SENTENCE_END.split(_plain(template(name))):
            piece = " ".join(_TAG.sub(" ", piece).split()).strip(" (),")
            n = len(re.findall(r"\w+", piece))
            if n >= 7 or (n >= 4 and piece[-1:] in ".!?:"):
                out.append(piece)
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=None)
def section_labels() -> tuple[str, ...]:
    """Header lines of the templates ("The draft:", "Task:", "Their thinking so far:"), with their colon."""
    out = []
    for name in names():
        for line in template(name).splitlines():
            m = _LABEL.match(line.strip())
            if m:
                out.append(m.group(1).strip() + ":")
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=None)
def delimiters() -> tuple[str, ...]:
    """Lines made only of symbols (`<<<`, `>>>`) and the tags (`<rewrite>`, `</draft>`) the templates use."""
    out = []
    for name in names():
        text = template(name)
        out += [line.strip() for line in text.splitlines() if len(line.strip()) >= 3 and not re.search(r"\w", line)]
        for tag in _TAG.findall(text):
            out += [f"<{tag}>", f"</{tag}>"]
    return tuple(dict.fromkeys(out))
