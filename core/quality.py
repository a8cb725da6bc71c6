"""Trajectory filters (docs/design.md, REER step 7): pure functions of text, no model, no I/O.

Each filter returns a list of short readable reasons; an empty list means the trajectory
passes. `check` runs them all under a `QualityConfig` and returns the `{"passed", "reasons"}`
dict that `ReerFinished.filters` and the store carry.

Knows: word n-gram repetition, long verbatim overlap between the thinking and the answer
(compared after lower-casing and collapsing whitespace), the shape of a `<think>...</think>`
block (checked on the assistant turn core.format writes, with tag spellings core.format does not
write, such as `<THINK>` or `< /think >`, counted as tags too), and the leftovers a generation
can carry (`leftovers`): template markers (our prompts' delimiters, tags and header lines, from
core.prompts, plus generic ones such as `[ANSWER]`, `### Draft` or a chat template's `<|im_end|>`),
leaked instructions (our prompts' own sentences echoed, or, in a thinking, a sentence opening as
one of our instructions does: "Rewrite the paragraph again..."), and a cut ending (the last
sentence stops without terminal punctuation, a closing quote or a list item; certain when the
generation's finish reason was "length"). A draft section in a thinking (core.prompts.draft_span:
the deepwriter prompts' short draft of the piece, between its mark lines) is held to its own copy
limit (`max_draft_copy_chars`), the rest to `max_copy_chars`; and its sentences, the piece's prose,
may open as an instruction does. Every reason names its filter and quotes the offending
snippet escaped (newlines as \\n), so a reason is one line whatever the text holds.
Does not know: whether the thinking is *good* (that is the perplexity search and the judge), nor
any tokenizer or chat template: token counts come from the model (`count_tokens`, the LM
protocol's), never from counting words; the think block is checked as text.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from core import prompts
from core.format import assistant_turn
from core.settings import setting, validate

LEFTOVERS = ("template_markers", "leaked_instructions", "cut_ending")  # what a generation may carry over
FILTERS = ("too_short", "single_segment", "repetitive", "copies_answer", "broken_think_block", *LEFTOVERS)
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_THINK_TAG = re.compile(r"<\s*(/?)\s*think\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class QualityConfig:
    min_tokens: int = setting(100, min=0, help="thinking shorter than this (in tokens) is dropped")
    min_segments: int = setting(2, min=0,
                                help="fewer segments than this leaves nothing for the search to refine")
    ngram: int = setting(4, min=1, help="word n-gram size for the repetition filter")
    max_repeat_ratio: float = setting(0.3, min=0, max=1,
                                      help="largest allowed share of word n-grams that repeat an earlier one")
    max_copy_chars: int = setting(200, min=1,
                                  help="longest allowed run of characters shared verbatim with the answer")
    max_draft_copy_chars: int = setting(300, min=1,
                                        help="the same inside a draft section of the thinking (the deepwriter "
                                             "prompts' short draft of the piece): a draft may keep a line of the "
                                             "piece, such as its title or first sentence, never a passage")
    disabled: tuple[str, ...] = setting((), choices=FILTERS, item="filter", help="names of filters to skip")

    def __post_init__(self):  # a JSON round trip turns the tuple into a list
        object.__setattr__(self, "disabled", tuple(self.disabled))
        validate(self)


def shortest_passing_budget(min_tokens: int) -> int:
    """The fewest generated tokens whose text `too_short` can count as `min_tokens`: the thinking is
    the generation less its tags and outer whitespace, so a budget of T tokens holds at most T."""
    return min_tokens


def too_short(thinking: str, min_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """`count_tokens`: the model's own count (LM.count_tokens), never an estimate from words."""
    n = count_tokens(thinking)
    return [f"too short: {n} tokens < {min_tokens}"] if n < min_tokens else []


def single_segment(segments: Sequence[str], min_segments: int = 2) -> list[str]:
    n = sum(1 for s in segments if s.strip())
    if n >= min_segments:
        return []
    return [f"single segment: {n} segment{'s' if n != 1 else ''} < {min_segments}"]


def repeat_ratio(text: str, n: int = 4) -> float:
    """Share of the word n-grams of `text` that repeat an earlier one (0 when it has none)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return sum(c - 1 for c in Counter(grams).values()) / len(grams)


def repetitive(thinking: str, n: int = 4, max_ratio: float = 0.3) -> list[str]:
    r = repeat_ratio(thinking, n)
    return [f"repetitive: {r:.0%} of {n}-word sequences repeat (max {max_ratio:.0%})"] if r > max_ratio else []


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _common_at(a: str, b: str, length: int) -> int:
    """Start in `a` of a substring of `length` chars that also occurs in `b`, or -1."""
    seen = {hash(b[j:j + length]) for j in range(len(b) - length + 1)}
    for i in range(len(a) - length + 1):
        if hash(a[i:i + length]) in seen and a[i:i + length] in b:
            return i
    return -1


def longest_common_substring(a: str, b: str, at_least: int = 1) -> tuple[int, int]:
    """(length, start in `a`) of the longest substring shared by `a` and `b`, if it is at least
    `at_least` chars long; else (0, -1). Binary search over lengths, each probe a hash set of
    `b`'s windows: a few milliseconds on 2k-char texts, where SequenceMatcher takes tens."""
    at_least = max(1, at_least)
    if min(len(a), len(b)) < at_least or (start := _common_at(a, b, at_least)) < 0:
        return 0, -1
    lo, hi = at_least, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        i = _common_at(a, b, mid)
        if i >= 0:
            lo, start = mid, i
        else:
            hi = mid - 1
    return lo, start


def _copied(part: str, answer: str, max_chars: int, where: str) -> list[str]:
    a, b = _norm(part), _norm(answer)
    n, start = longest_common_substring(a, b, at_least=max_chars + 1)
    if n == 0:
        return []
    snippet = a[start:start + 50].strip()
    return [f"copies the answer{where}: {n} characters verbatim (max {max_chars}), from \"{snippet}...\""]


def copies_answer(thinking: str, answer: str, max_chars: int = 200, max_draft_chars: int | None = None) -> list[str]:
    """The longest run of characters the thinking shares with the answer, over `max_chars`. With
    `max_draft_chars`, a draft section (core.prompts.draft_span: the lines between the draft's mark
    lines) is held to that limit instead, and the text before and after it to `max_chars`, each
    part on its own (a run never spans a mark line)."""
    span = prompts.draft_span(thinking) if max_draft_chars is not None else None
    if span is None:
        return _copied(thinking, answer, max_chars, "")
    start, end = span
    mark_end = thinking.rfind("\n", 0, start) + 1  # the opening mark's line is neither part
    closing = thinking.find("\n", end)  # nor is the closing mark's
    after = thinking[closing:] if end < len(thinking) and closing >= 0 else ""
    return (_copied(thinking[:mark_end], answer, max_chars, "") + _copied(after, answer, max_chars, "")
            + _copied(thinking[start:end], answer, max_draft_chars, " in its draft section"))


def broken_think_block(text: str) -> list[str]:
    """Problems with the single `<think>...</think>` block a full assistant text must open with:
    missing, unclosed, nested, stray or repeated tags, text before it, or nothing inside/after it."""
    tags = [(m.start(), m.end(), bool(m.group(1))) for m in _THINK_TAG.finditer(text)]
    if not tags:
        return ["think block missing: no <think> ... </think> in the text"]
    reasons: list[str] = []
    depth, blocks, first_open, first_close = 0, 0, None, None
    for start, end, closing in tags:
        if not closing:
            if depth:
                reasons.append("think block nested: <think> inside <think> (a think tag inside the thinking?)")
            depth += 1
            if first_open is None:
                first_open = (start, end)
        elif depth == 0:
            reasons.append("think block broken: </think> without an opening <think>")
        else:
            depth -= 1
            if depth == 0:
                blocks += 1
                first_close = first_close or (start, end)
    if depth:
        reasons.append("think block unclosed: <think> without </think>")
    if blocks > 1:
        reasons.append(f"think block repeated: {blocks} blocks, expected 1")
    if first_open and text[:first_open[0]].strip():
        reasons.append("think block late: text before <think>")
    if first_open and first_close and not reasons:
        if not text[first_open[1]:first_close[0]].strip():
            reasons.append("think block empty: nothing between <think> and </think>")
        if not text[first_close[1]:].strip():
            reasons.append("think block has no answer after </think>")
    return list(dict.fromkeys(reasons))


# ---- leftovers: what a generation carries over from its prompt or its budget ------------------

SNIPPET_CHARS = 60  # how much of the offending text a reason quotes
_GENERIC_MARKERS = re.compile(
    r"\[/?(?:answer|final answer|draft|revision|revised draft|rewrite|response|plan|reflection)\]"  # [ANSWER]
    r"|^[ \t]*#{1,6}[ \t]*(?:draft|revised draft|revision|rewrite|answer|final answer|response|critique|reflection)"
    r"(?:[ \t]*\d+)?[ \t]*:?[ \t]*$"  # "### Draft", "## Revised draft 2" (not "## Response to critics")
    r"|<\|[a-z_]{1,30}\|>"  # a chat template's special token: <|im_end|>
    r"|^[ \t]*(?:<{3,}|>{3,})",  # a delimiter line of our prompts' kind, whatever its length
    re.IGNORECASE | re.MULTILINE)
_FIRST_PERSON = re.compile(r"\b(?:i|me|my|mine|myself|we|us|our|i'm|i'll|i've|i'd)\b", re.IGNORECASE)
# words skipped when comparing how a sentence opens ("Rewrite the paragraph again" opens as
# "Rewrite this paragraph as ...": rewrite, paragraph)
_FUNCTION_WORDS = frozenset("""a an the this that these those only its it your their them again now then just please
also not no to of in on at with for and or more some any each every""".split())
# a prompt sentence opening with one of these describes rather than instructs
_NOT_IMPERATIVE = frozenset("""a an the this that these those here there you your their they it its i my we how what who
which when where why and but or so more means only not""".split())
ECHO_WORDS = 7  # a run of this many words of one of our prompt sentences is an echo (shorter sentences: all of it)
_SENTENCE = re.compile(r"[^\n.!?…]+(?:[.!?…]+[\"'”’)\]]*|$)", re.MULTILINE)
_END_OK = re.compile(r"(?:[.!?…。！？][\"'”’»)\]*_`]*|[\"”’»]|```|:\)|\*\*)$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+–]|\d{1,3}[.)]|[a-z][.)])\s+\S")
_HEADING = re.compile(r"^\s*#{1,6}\s+\S")


def _shown(text: str, tail: bool = False) -> str:
    """A snippet as one escaped line in quotes (newlines as \\n, quotes escaped), cut to
    SNIPPET_CHARS: its start, or with `tail` its end."""
    if len(text) > SNIPPET_CHARS:
        text = "…" + text[-SNIPPET_CHARS:].lstrip() if tail else text[:SNIPPET_CHARS] + "…"
    return json.dumps(text, ensure_ascii=False)


def _around(text: str, start: int) -> str:
    """The text from a little before `start` (a line's start at most 20 characters back)."""
    left = max(text.rfind("\n", 0, start) + 1, start - 20)
    return text[left:].lstrip()


def template_markers(text: str) -> list[str]:
    """Markers a final text must not hold: our prompts' delimiters and tags (`<<<`, `</draft>`,
    `<rewrite>`) anywhere, their header lines ("The draft:") as a whole line, and generic ones."""
    hits: list[tuple[int, str]] = []
    low = text.lower()
    for d in prompts.delimiters():
        at = low.find(d.lower())
        if at >= 0:
            hits.append((at, d))
    labels = {lab.lower() for lab in prompts.section_labels()}
    pos = 0
    for line in text.splitlines(keepends=True):
        if line.strip().lower() in labels:
            hits.append((pos, line.strip()))
        pos += len(line)
    hits += [(m.start(), m.group(0).strip()) for m in _GENERIC_MARKERS.finditer(text)]
    if not hits:
        return []
    at, marker = min(hits)
    where = "at the start" if not text[:at].strip() else f"at character {at}"
    others = sorted({m for _, m in hits} - {marker})
    more = f" (also {', '.join(_shown(m) for m in others[:3])})" if others else ""
    return [f"template marker: {_shown(marker)} {where}{more}: {_shown(_around(text, at))}"]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _opening(words: Sequence[str]) -> tuple[str, ...]:
    """The first two words of a sentence that are not function words (its imperative's verb and object)."""
    return tuple([w for w in words if w not in _FUNCTION_WORDS][:2])


@lru_cache(maxsize=1)
def _instruction_index() -> tuple[dict[int, dict[tuple, str]], dict[tuple, str]]:
    """From our prompts (core.prompts.instruction_sentences): {length: {word run: sentence}} of
    the runs whose echo counts, and {opening: sentence} of the sentences that instruct."""
    runs: dict[int, dict[tuple, str]] = {}
    openings: dict[tuple, str] = {}
    for sentence in prompts.instruction_sentences():
        words = _words(sentence)
        n = min(ECHO_WORDS, len(words))
        for i in range(len(words) - n + 1):
            runs.setdefault(n, {}).setdefault(tuple(words[i:i + n]), sentence)
        if (sentence.endswith(".") and words[0] not in _NOT_IMPERATIVE and "you" not in words
                and len(key := _opening(words)) == 2):
            openings.setdefault(key, sentence)
    return runs, openings


def leaked_instructions(text: str, openings: bool = True) -> list[str]:
    """Sentences of our prompts carried into a text: a run of ECHO_WORDS words of one (all of a
    shorter one) anywhere; with `openings` (thinking and candidates, where a writer thinks in the
    first person), also a sentence with no first-person word that opens as one of our instructions."""
    runs, opens = _instruction_index()
    spans = [(m.start(), m.group(0).lower()) for m in _WORD.finditer(text)]
    words = [w for _, w in spans]
    for n, index in runs.items():
        for i in range(len(words) - n + 1):
            source = index.get(tuple(words[i:i + n]))
            if source:
                return [f"leaked instruction: {_shown(text[spans[i][0]:])} echoes the prompt's "
                        f"{_shown(source)}"]
    if openings:
        draft = prompts.draft_span(text) or (0, 0)  # a draft of the piece may instruct its reader
        for m in _SENTENCE.finditer(text):
            if draft[0] <= m.start() < draft[1]:
                continue
            sentence = m.group(0).strip()
            if sentence and sentence[0] not in "\"“‘'" and not _FIRST_PERSON.search(sentence):  # not dialogue
                source = opens.get(_opening(_words(sentence)))
                if source:
                    return [f"leaked instruction: {_shown(sentence)} opens as the prompt's {_shown(source)}"]
    return []


def _verse(lines: Sequence[str]) -> bool:
    """Short lines, most of them without a sentence end: a poem or a song, whose last line may end bare."""
    if len(lines) < 4:
        return False
    bare = sum(1 for line in lines if not _END_OK.search(line))
    return bare * 2 >= len(lines) and sum(len(line.split()) for line in lines) / len(lines) <= 10


def cut_ending(text: str, finish_reason: str | None = None, min_words: int = 6) -> list[str]:
    """The last sentence stops mid-way. Certain when `finish_reason` is "length" (the budget ran
    out) and the text does not end a sentence; otherwise judged from the text alone: a last line
    of `min_words` words or more with no terminal punctuation or closing quote, that is not a list
    item, a heading or a line of verse."""
    body = text.rstrip()
    if not body or _END_OK.search(body):
        return []
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    last = lines[-1]
    budget = finish_reason == "length"
    prose = re.search(r"[.!?…][\"'”’)\]]*\s+\S", last)  # a sentence ended earlier on this line: prose, cut
    if not budget and not prose and (_LIST_ITEM.match(last) or _HEADING.match(last) or len(last.split()) < min_words
                                     or _verse(lines)):
        return []
    why = "the token budget ran out mid-sentence" if budget else "the last sentence has no ending"
    return [f"cut ending: {why}: {_shown(body, tail=True)}"]


def leftovers(text: str, disabled: Sequence[str] = (), finish_reason: str | None = None,
              openings: bool = True) -> list[str]:
    """Every leftover filter not in `disabled` on one generated text (a REER candidate or thinking,
    an R2 answer): the reasons, empty when it is clean. `finish_reason`: the generation's, if known."""
    runs = {
        "template_markers": lambda: template_markers(text),
        "leaked_instructions": lambda: leaked_instructions(text, openings),
        "cut_ending": lambda: cut_ending(text, finish_reason),
    }
    return [r for name, run in runs.items() if name not in disabled for r in run()]


def check(
    thinking: str,
    segments: Sequence[str],
    answer: str,
    cfg: QualityConfig = QualityConfig(),
    *,
    count_tokens: Callable[[str], int],
) -> dict:
    """Run every filter not in `cfg.disabled` on a REER trajectory: {"passed": bool, "reasons": [str, ...]}.
    `count_tokens`: the model's (LM.count_tokens)."""
    unknown = set(cfg.disabled) - set(FILTERS)
    if unknown:
        raise ValueError(f"QualityConfig.disabled: unknown filter(s) {sorted(unknown)}; choose from {FILTERS}")
    runs = {
        "too_short": lambda: too_short(thinking, cfg.min_tokens, count_tokens),
        "single_segment": lambda: single_segment(segments, cfg.min_segments),
        "repetitive": lambda: repetitive(thinking, cfg.ngram, cfg.max_repeat_ratio),
        "copies_answer": lambda: copies_answer(thinking, answer, cfg.max_copy_chars, cfg.max_draft_copy_chars),
        "broken_think_block": lambda: broken_think_block(assistant_turn(thinking, answer)),
    }
    reasons = [r for name, run in runs.items() if name not in cfg.disabled for r in run()]
    reasons += leftovers(thinking, cfg.disabled)
    return {"passed": not reasons, "reasons": reasons}
