"""The built-in model streams: inside `on_tokens`, HFLM.generate reports growing partial texts
(decoded about every 0.2 s, cut at the stop strings) before its final report, and the final
report is the returned text. One generation of the real model (marked `model`)."""
from __future__ import annotations

import pytest

from core.models.lm import GenerationConfig, on_tokens

pytestmark = pytest.mark.model


def test_builtin_model_streams_partial_texts_then_the_final_one(builtin_lm):
    reports = []
    cfg = GenerationConfig(max_new_tokens=96, temperature=0.8, seed=3, n=2, stop=("</think>",))
    with on_tokens(reports.append):
        out = builtin_lm.generate([{"role": "user", "content": "Describe a lighthouse in a storm."}], cfg)
    partial, last = reports[:-1], reports[-1]
    assert partial, "96 tokens on CPU take well over 0.2 s: some partial report must come first"
    assert last.done and list(last.texts) == [str(g) for g in out] and not any(p.done for p in partial)
    assert all(len(p.texts) == 2 and p.budget == 96 for p in reports)
    tokens = [p.tokens for p in reports]
    assert tokens == sorted(tokens) and partial[0].tokens < last.tokens
    for p in partial:  # each partial text is where the final one began (decoding the same ids)
        for part, final in zip(p.texts, last.texts):
            assert final.startswith(part.rstrip("\ufffd")[:max(0, len(part) - 2)])
