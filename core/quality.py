"""Trajectory filters (DESIGN.md, REER step 7): pure functions of text, no model, no I/O.

Each filter returns a list of short readable reasons; an empty list means the trajectory
passes. `check` runs them all under a `QualityConfig` and returns the `{"passed", "reasons"}`
dict that `RunFinished.filters` and the store carry.

Knows: approximate token counts (words * 1.3 unless the caller passes a real `count_tokens`),
word n-gram repetition, long verbatim overlap between the thinking and the answer (compared
after lower-casing and collapsing whitespace), and the shape of a `<think>...</think>` block
(checked on the assistant turn core.format writes, with tag spellings core.format does not
write, such as `<THINK>` or `< /think >`, counted as tags too).
Does not know: whether the thinking is *good* (that is the perplexity search and the judge),
nor any tokenizer or chat template (pass `count_tokens`; the think block is checked as text).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from core.format import assistant_turn
from core.settings import setting, validate

FILTERS = ("too_short", "single_segment", "repetitive", "copies_answer", "broken_think_block")
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
    disabled: tuple[str, ...] = setting((), choices=FILTERS, item="filter", help="names of filters to skip")

    def __post_init__(self):  # a JSON round trip turns the tuple into a list
        object.__setattr__(self, "disabled", tuple(self.disabled))
        validate(self)


TOKENS_PER_WORD = 1.3  # the tokenizer-free estimate's tokens per whitespace word


def approx_tokens(text: str) -> int:
    """A tokenizer-free token estimate: whitespace words * TOKENS_PER_WORD, rounded."""
    return round(len(text.split()) * TOKENS_PER_WORD)


def shortest_passing_budget(min_tokens: int) -> int:
    """The fewest generated tokens whose text `too_short` (estimating) can count as `min_tokens`:
    each word takes at least one token, so a budget of T tokens holds at most T words."""
    return next(t for t in range(min_tokens + 1) if round(t * TOKENS_PER_WORD) >= min_tokens)


def too_short(thinking: str, min_tokens: int = 100, count_tokens: Callable[[str], int] | None = None) -> list[str]:
    n = count_tokens(thinking) if count_tokens else approx_tokens(thinking)
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


def copies_answer(thinking: str, answer: str, max_chars: int = 200) -> list[str]:
    a, b = _norm(thinking), _norm(answer)
    n, start = longest_common_substring(a, b, at_least=max_chars + 1)
    if n == 0:
        return []
    snippet = a[start:start + 50].strip()
    return [f"copies the answer: {n} characters verbatim (max {max_chars}), from \"{snippet}...\""]


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


def check(
    thinking: str,
    segments: Sequence[str],
    answer: str,
    cfg: QualityConfig = QualityConfig(),
    count_tokens: Callable[[str], int] | None = None,
) -> dict:
    """Run every filter not in `cfg.disabled`: {"passed": bool, "reasons": [str, ...]}."""
    unknown = set(cfg.disabled) - set(FILTERS)
    if unknown:
        raise ValueError(f"QualityConfig.disabled: unknown filter(s) {sorted(unknown)}; choose from {FILTERS}")
    runs = {
        "too_short": lambda: too_short(thinking, cfg.min_tokens, count_tokens),
        "single_segment": lambda: single_segment(segments, cfg.min_segments),
        "repetitive": lambda: repetitive(thinking, cfg.ngram, cfg.max_repeat_ratio),
        "copies_answer": lambda: copies_answer(thinking, answer, cfg.max_copy_chars),
        "broken_think_block": lambda: broken_think_block(assistant_turn(thinking, answer)),
    }
    reasons = [r for name, run in runs.items() if name not in cfg.disabled for r in run()]
    return {"passed": not reasons, "reasons": reasons}
