"""Before/after evaluation of a fine-tuned model: held-out answer perplexity with and without the
thinking, in the training layout (core.format), scored by core.models.scoring.

Knows: which tokens are scored (the answer's) and how the per-record figures add up (token-weighted).
Does not know: training (core.train.trainer), preference pairs (core.train.dpo evaluates those).
"""
from __future__ import annotations

import math
import time
from typing import Sequence

from core.format import turn_head
from core.train.data import ChatRecord


def evaluation_items(lm, records: Sequence[ChatRecord], thinking: bool) -> list[tuple[str, str, str]]:
    """(context, thinking, answer) triples for core.models.scoring's "none" template, in the training
    layout: the chat up to the assistant header, then the think block as core.format writes it (an
    empty block without thinking), then the answer, whose tokens alone are scored."""
    return [(lm.chat_text(list(r.messages[:-1]), add_generation_prompt=True),
             turn_head(r.thinking if thinking else ""), r.answer) for r in records]


def evaluate(lm, records: Sequence[ChatRecord]) -> dict:
    """Held-out answer perplexity (token-weighted over all records), with and without the thinking."""
    from core.models.scoring import ScoringConfig, score_many

    t0 = time.perf_counter()
    if not records:
        return {"ppl_with_thinking": None, "ppl_without_thinking": None, "n_items": 0, "n_tokens": 0,
                "seconds": 0.0, "per_item": {}}
    cfg = ScoringConfig(template="none")
    result, per_item = {}, {r.id: {} for r in records}
    for name, thinking in (("with", True), ("without", False)):
        scores = []
        for item in evaluation_items(lm, records, thinking):  # one at a time: long records, small memory
            scores.extend(score_many(lm, [item], cfg))
        n = sum(s.n_tokens for s in scores)
        total = sum(s.mean_logprob * s.n_tokens for s in scores)
        result[f"ppl_{name}_thinking"] = math.exp(-total / n)
        result["n_tokens"] = n
        for r, s in zip(records, scores):
            per_item[r.id][name] = s.ppl
    return {**result, "n_items": len(records), "seconds": time.perf_counter() - t0, "per_item": per_item}
