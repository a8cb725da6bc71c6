"""The process reward of one R2 reflection (docs/design.md, "R2, precisely", step 5), by component.

Knows four components, each a plain number so it can be audited and exported as a step label:
- improvement: the judged overall score after the revision this reflection led to, minus the
  score before, divided by the scale's width (so -1..1); None when either judgment is unparsed
  (it then counts 0 in the total, and the record says None rather than pretending).
- redundancy: the highest similarity (0..1, word-level sequence match) of this reflection to
  any earlier reflection of the same trajectory; a word-for-word repeat is 1.
- circularity: the share (0..1) of this reflection's issue sentences that re-raise an issue of
  an earlier reflection whose revision was kept (the issue was already addressed). Two
  sentences raise the same issue when their content words overlap (Jaccard) at least
  `issue_overlap`.
- length: tokens beyond `token_budget`, as a fraction of the budget (0 within it).
total = w_improvement * improvement - w_redundancy * redundancy - w_circularity * circularity
        - w_length * length.

Does not know: where reflections come from (core.r2.loop) or how they are stored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Sequence

from core.settings import setting, validate

STOPWORDS = frozenset("""a an the and or but if then so of to in on at by for with from as is are was were be been being
i my me we our it its this that these those there here will would should could can may might must do does did have has
had not no more most less very just also too into about than which what who how when where why all any some each
draft text piece""".split())


@dataclass(frozen=True)
class RewardConfig:
    w_improvement: float = setting(1.0, min=0,
                                   help="weight of the judged improvement (scale-normalised, -1..1)")
    w_redundancy: float = setting(0.5, min=0, help="weight of the penalty for repeating an earlier reflection")
    w_circularity: float = setting(0.5, min=0,
                                   help="weight of the penalty for re-raising an already addressed issue")
    w_length: float = setting(0.25, min=0, help="weight of the penalty for tokens beyond the budget")
    token_budget: int = setting(150, min=0,
                                help="reflection tokens allowed before the length penalty starts (0 = no penalty)")
    issue_overlap: float = setting(0.5, above=0, max=1,
                                   help="content-word Jaccard at which two sentences raise the same issue")

    def __post_init__(self):
        validate(self)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def similarity(a: str, b: str) -> float:
    """Word-level similarity of two texts, 0 (nothing shared) to 1 (the same words in order)."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    return SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def redundancy(text: str, earlier: Sequence[str]) -> float:
    return max((similarity(text, e) for e in earlier), default=0.0)


def issues(text: str) -> list[frozenset[str]]:
    """The content words of each sentence that has at least two of them."""
    out = []
    for sentence in re.split(r"(?<=[.!?;])\s+|\n+", text):
        words = frozenset(w for w in _words(sentence) if w not in STOPWORDS and len(w) > 2)
        if len(words) >= 2:
            out.append(words)
    return out


def circularity(text: str, addressed: Sequence[str], overlap: float = 0.5) -> float:
    """Share of this text's issue sentences that match an issue of an already addressed reflection."""
    mine = issues(text)
    old = [w for a in addressed for w in issues(a)]
    if not mine or not old:
        return 0.0
    same = sum(any(len(m & o) / len(m | o) >= overlap for o in old) for m in mine)
    return same / len(mine)


def improvement(before: float | None, after: float | None, scale: Sequence[float]) -> float | None:
    if before is None or after is None:
        return None
    low, high = scale
    return (after - before) / (high - low)


def length_over(n_tokens: int, budget: int) -> float:
    return max(0, n_tokens - budget) / budget if budget > 0 else 0.0


def process_reward(reflection: str, n_tokens: int, before: float | None, after: float | None,
                   earlier: Sequence[str], addressed: Sequence[str], scale: Sequence[float],
                   cfg: RewardConfig = RewardConfig()) -> dict:
    """{improvement, redundancy, circularity, length, total} of one reflection (module docstring).

    `earlier`: the trajectory's earlier reflections; `addressed`: those whose revision was kept."""
    parts = {"improvement": improvement(before, after, scale),
             "redundancy": redundancy(reflection, earlier),
             "circularity": circularity(reflection, addressed, cfg.issue_overlap),
             "length": length_over(n_tokens, cfg.token_budget)}
    total = (cfg.w_improvement * (parts["improvement"] or 0.0) - cfg.w_redundancy * parts["redundancy"]
             - cfg.w_circularity * parts["circularity"] - cfg.w_length * parts["length"])
    out = {k: (None if v is None else round(v, 4)) for k, v in parts.items()}
    out["total"] = round(total, 4)
    out["tokens"] = n_tokens
    return out
