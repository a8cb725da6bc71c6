"""The generated-text n-gram ban: loops are cut, quoting the prompt stays allowed."""
from __future__ import annotations

import pytest
import torch

from core.models.lm import GenerationConfig
from core.models.norepeat import NoRepeatNGram


def banned_ngrams_respected(tokens: list[int], n: int) -> bool:
    """Whether no n-gram occurs twice in `tokens` (what the processor guarantees)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) == len(set(grams))


def _generated(lm, n: int) -> list[int]:
    msgs = [{"role": "user", "content": "Write about rivers."}]
    text = lm.generate(msgs, GenerationConfig(max_new_tokens=120, temperature=0, no_repeat_ngram=n))[0]
    assert text.finish_reason == "length"  # 120 tokens of a looping random model: the budget ended it
    return lm.encode(text)


def test_a_greedy_random_model_loops_without_the_ban_and_never_repeats_with_it(tiny_lm):
    assert not banned_ngrams_respected(_generated(tiny_lm, 0), 3)  # the failure the ban exists for
    toks = _generated(tiny_lm, 3)
    assert len(toks) >= 100
    assert banned_ngrams_respected(toks, 3)


def test_the_ban_ignores_the_prompt():
    proc = NoRepeatNGram(2, prompt_len=3)
    scores = torch.zeros(1, 10)
    out = proc(torch.tensor([[4, 5, 4]]), scores.clone())  # the prompt repeats (4, 5): not banned
    assert torch.isfinite(out).all()
    out = proc(torch.tensor([[4, 5, 4, 7, 8, 7]]), scores.clone())  # generated 7 8 7: 8 after 7 is banned
    assert out[0, 8] == float("-inf") and torch.isfinite(out[0, [0, 5, 7, 9]]).all()


def test_the_table_is_per_row():
    proc = NoRepeatNGram(2, prompt_len=0)
    out = proc(torch.tensor([[1, 2, 1], [3, 3, 1]]), torch.zeros(2, 5))
    assert out[0, 2] == float("-inf") and torch.isfinite(out[1]).all()


def test_a_size_under_two_is_refused():
    with pytest.raises(ValueError, match="2 or more"):
        NoRepeatNGram(1, 0)
