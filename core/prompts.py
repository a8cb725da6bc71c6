"""Prompt templates, loaded by name from assets/prompts/*.txt and filled with str.format.

Templates are plain text written for this project; `{name}` fields are filled, `{{` is a brace.
Quoted texts are put between `<draft>` and `</draft>` (core.r2.loop's parser strips those tags, so
a model that echoes them leaves nothing behind); the judge prompts keep `<<<` / `>>>` around the
graded text.

`static_head` renders a template's start up to its first field that changes between calls (the
part a prompt cache can keep: REER's rewrite prompts open with their instructions, the task and the
answer, and only then quote the thinking).

Also knows what of a template a model must never echo into its own text (core.quality's leftover
filters read these, so the lists follow the templates without being kept by hand):
`instruction_sentences` (every template's own sentences, with fields, `<placeholders>` and quoted
examples such as "Hmm, maybe..." taken out), `section_labels` (whole-line headers such as
"The draft:") and `delimiters` (lines of symbols such as `<<<`, and the tags the templates name).

Prompt sets (`PROMPT_SETS`, chosen per REER run by ReerConfig.prompts): which templates a run's
draft and rewrites use, by the query's language (`language`: Chinese when Han characters outnumber
Latin-script words). `default` is this project's short prompts (English only), fit for small
models; `deepwriter` follows the thinking framework of the REER authors (a present-tense monologue
on intent and reader, content and structure, then a short draft of the piece between two mark
lines, `DRAFT_MARKS`, and a critique), in English and Chinese, in our own words. `draft_span`
finds the draft section in a thinking; `normalise_marks` rewrites a model's spelling of the mark
lines to ours.
Does not know: what a model does with a prompt, or which prompt a caller sends.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
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


def static_head(name: str, **fields: str) -> str:
    """The start of template `name`, rendered, up to its first field not given in `fields`: the text
    every call that fills the given fields alike begins with, whatever the other fields hold (a
    prompt cache keeps its keys/values across calls: core.models.lm.GenerationConfig.static). With
    every field given it is the whole rendered template."""
    import string

    out = []
    for literal, field, spec, conv in string.Formatter().parse(template(name)):
        out.append(literal)
        if field is None:
            continue
        if field not in fields:
            break
        out.append(format(fields[field], spec or ""))
    return "".join(out)


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


# ---- prompt sets -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptSet:
    """The templates (names in assets/prompts) one REER prompt set uses in one language."""

    draft: str  # the initial thinking z0; fields task, answer (and mark, end_mark)
    expand: str  # a segment's rewrite; fields task, answer, before, segment, after, cues, format (and role)
    cues: str  # the reflection cues added to a rewrite prompt (ReerConfig.reflection_cues)
    plain: str  # the rewrite's output format
    analysis: str  # the same with an analysis first (ReerConfig.ask_analysis)
    first: str  # `before` of the first paragraph (text, not a template)
    last: str  # `after` of the last paragraph (text)
    language: str = "en"  # "en" or "zh"
    role_thinking: str = ""  # what a monologue paragraph is for ("": the set's rewrite prompt has no role)
    role_draft: str = ""  # what a paragraph of the draft section is for
    drafts: bool = False  # the draft prompt asks for a draft section between DRAFT_MARKS' lines

    @property
    def marks(self) -> tuple[str, str]:
        """The lines that open and close the draft section, in this set's language."""
        return DRAFT_MARKS[self.language]


DRAFT_MARKS = {"en": ("--- rough draft ---", "--- end of rough draft ---"), "zh": ("--- 初稿 ---", "--- 初稿结束 ---")}
_EN = dict(plain="reer_format_plain", analysis="reer_format_analysis",
           first="(nothing yet: this is the first paragraph)", last="(nothing: this is the last paragraph)")
_ZH = dict(plain="reer_format_plain_zh", analysis="reer_format_analysis_zh", first="（还没有：这是第一段）",
           last="（没有了：这是最后一段）", language="zh")
PROMPT_SETS: dict[str, dict[str, PromptSet]] = {
    "default": {"en": PromptSet(draft="reer_draft", expand="reer_expand", cues="reer_cues", **_EN)},
    "deepwriter": {
        lang: PromptSet(draft=f"deepwriter_draft_{lang}", expand=f"deepwriter_expand_{lang}",
                        cues=f"deepwriter_cues_{lang}", role_thinking=f"deepwriter_role_thinking_{lang}",
                        role_draft=f"deepwriter_role_draft_{lang}", drafts=True, **fields)
        for lang, fields in (("en", _EN), ("zh", _ZH))},
}
PROMPT_SET_NAMES = tuple(PROMPT_SETS)  # the first is the default
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def language(text: str) -> str:
    """"zh" when the text's Han characters outnumber its Latin-script words, else "en" (an English
    query quoting a Chinese name stays English; a Chinese one naming Python stays Chinese)."""
    return "zh" if len(_HAN.findall(text)) > len(_LATIN_WORD.findall(text)) else "en"


def prompt_set(name: str, query: str) -> PromptSet:
    """The set `name` in the query's language (a set without that language: its English).
    KeyError naming the known sets for an unknown name."""
    if name not in PROMPT_SETS:
        raise KeyError(f"prompt set {name!r} is unknown; known: {', '.join(PROMPT_SET_NAMES)}")
    sets = PROMPT_SETS[name]
    return sets.get(language(query), sets["en"])


# the mark lines as a model may spell them: dashes (two or more, or one long dash; or = ~ *) around
# "rough draft", "end of the draft", 初稿 or 草稿 (with 结束 / 完 for the closing one)
_RULE = r"[ \t]*(?:[-=~*]{2,}|[—–]+)[ \t]*"
_DRAFT_WORDS = r"(?:(?:a|my|the)[ \t]+)?(?:(?:rough|first|short)[ \t]+)?draft"
START_MARK = re.compile(rf"^{_RULE}(?:{_DRAFT_WORDS}|初稿|草稿){_RULE}$", re.IGNORECASE | re.MULTILINE)
END_MARK = re.compile(rf"^{_RULE}(?:end[ \t]+of[ \t]+{_DRAFT_WORDS}|(?:初稿|草稿)(?:结束|完)){_RULE}$",
                      re.IGNORECASE | re.MULTILINE)


def draft_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the draft section's text in a thinking: after the first opening mark line,
    up to the next closing mark line (or the end of the text); None without an opening mark."""
    start = START_MARK.search(text)
    if start is None:
        return None
    end = END_MARK.search(text, start.end())
    return start.end(), end.start() if end else len(text)


def normalise_marks(text: str) -> str:
    """The text with each mark line spelled as DRAFT_MARKS writes it (in the mark's own language),
    after a blank line and followed by a single line break, so the mark leads the paragraph under it."""
    out: list[str] = []
    after_mark = False
    for line in text.split("\n"):
        closing = END_MARK.fullmatch(line) is not None
        if closing or START_MARK.fullmatch(line):
            while out and not out[-1].strip():
                out.pop()
            lang = "zh" if re.search(r"[初草]", line) else "en"
            out += ([""] if out else []) + [DRAFT_MARKS[lang][closing]]
            after_mark = True
        elif not (after_mark and not line.strip()):  # no blank line between a mark and what it leads
            out.append(line)
            after_mark = False
    return "\n".join(out).strip()


def mark_lines() -> tuple[str, ...]:
    """Every mark line DRAFT_MARKS writes."""
    return tuple(m for pair in DRAFT_MARKS.values() for m in pair)
