"""Fast unit tests of the scoring kernel on a tiny random model: cascade == naive."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from core.models.fastscore import group_by_prefix, naive_logprobs, score_token_requests
from core.models.lm import ContextTooLong, ScoreRequest
from core.models.scoring import close_calls


def _random_requests(seed: int, n: int, shared: int):
    rng = random.Random(seed)
    prefix = [rng.randrange(100, 5000) for _ in range(shared)]
    out = []
    for _ in range(n):
        mid = [rng.randrange(100, 5000) for _ in range(rng.randrange(1, 40))]
        cont = [rng.randrange(100, 5000) for _ in range(rng.randrange(1, 30))]
        out.append(([prefix, mid], cont, 0))
    return out


@pytest.mark.parametrize("shared,n", [(0, 3), (50, 4), (200, 2), (80, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cascade_matches_naive(tiny_lm, shared, n, dtype):
    # a copy: casting the shared model to bf16 and back would leave its weights rounded for every later test
    model = tiny_lm.model if dtype == torch.float32 else copy.deepcopy(tiny_lm.model).to(dtype)
    reqs = _random_requests(shared + n, n, shared)
    with torch.inference_mode():
        fast = score_token_requests(model, reqs)
        for (pieces, cont, _), got in zip(reqs, fast):
            ctx = [t for p in pieces for t in p]
            ref = naive_logprobs(model, ctx + cont, len(ctx))
            tol = 1e-4 if dtype == torch.float32 else 5e-2
            assert len(got) == len(cont)
            assert max(abs(a - b) for a, b in zip(got, ref)) < tol


def test_mixed_groups_return_in_request_order(tiny_lm):
    reqs = _random_requests(1, 3, 60) + _random_requests(2, 2, 0) + _random_requests(3, 2, 40)
    order = list(range(len(reqs)))
    random.Random(5).shuffle(order)
    shuffled = [reqs[i] for i in order]
    with torch.inference_mode():
        a = score_token_requests(tiny_lm.model, reqs)
        b = score_token_requests(tiny_lm.model, shuffled)
    for pos, i in enumerate(order):
        assert max(abs(x - y) for x, y in zip(a[i], b[pos])) < 1e-5


def test_group_by_prefix_never_swallows_the_last_context_token():
    seqs = [([1] * 40 + [2, 3, 4], 41), ([1] * 40 + [5, 6], 41), ([9, 9, 9], 2)]
    groups = group_by_prefix(seqs)
    shared = [g for g in groups if len(g[1]) == 2][0]
    assert shared[0] == 40  # capped at n_ctx - 1 so each suffix predicts its first token
    assert sorted(i for _, m in groups for i in m) == [0, 1, 2]


def test_generation_still_works_after_scoring(tiny_lm):
    """Scoring swaps the attention implementation only inside its own block."""
    from core.models.lm import GenerationConfig

    tiny_lm.loglikelihood([ScoreRequest(("hello there",), " world")])
    out = tiny_lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=5, n=2, seed=1))
    again = tiny_lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=5, n=2, seed=1))
    assert len(out) == 2 and out == again
    assert tiny_lm.model.config._attn_implementation != "palimpsest_cascade"


def test_finish_reasons_and_token_counts(tiny_lm):
    """A reply that used its whole budget says "length"; an end-of-turn token or a stop string
    says "stop"; count_tokens is the tokenizer's own count."""
    from core.models.lm import GenerationConfig

    out = tiny_lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=6, n=2, seed=3))
    assert [o.finish_reason for o in out] == ["length", "length"]  # a random model never ends its turn in 6
    assert all(tiny_lm.count_tokens(o) <= 6 for o in out)
    assert tiny_lm.count_tokens("The keeper read the letter.") == len(tiny_lm.encode("The keeper read the letter."))
    eos = tiny_lm.tokenizer.eos_token_id
    cfg = GenerationConfig(max_new_tokens=3, stop=("END",))
    assert tiny_lm._finish([5, 6, 7], "abc", 3, cfg) == "length"
    assert tiny_lm._finish([5, eos, eos], "a", 3, cfg) == "stop"  # ended by the end-of-turn token
    assert tiny_lm._finish([5, 6, 7], "a END b", 3, cfg) == "stop"  # ended by a stop string
    assert tiny_lm._finish([5, 6], "ab", 3, cfg) == "stop"  # stopped short of the budget


def test_too_long_is_an_error_unless_left_truncation_is_allowed(tiny_lm):
    ctx = "word " * 1500  # the tiny model has a 1024-token window
    with pytest.raises(ContextTooLong, match="allow left-truncation"):
        tiny_lm.loglikelihood([ScoreRequest((ctx,), " end")])
    got = tiny_lm.loglikelihood([ScoreRequest((ctx,), " end")], truncate="left")[0]
    assert got.truncated > 0 and got.context_tokens + len(got.logprobs) <= 1024


def test_close_calls():
    assert close_calls([0.5, 0.505, 0.9], 0.01) == {0, 1}
    assert close_calls([0.5, 0.7, 0.9], 0.01, baseline=0.895) == {2}
    assert close_calls([0.5, 0.7], 0.01) == set()


def test_prompt_cache_reuses_the_shared_head_and_keeps_samples_reproducible(tiny_lm):
    """A second prompt with the same head computes only its tail; a warm cache samples as a cold one."""
    from core.models.gencache import BLOCK
    from core.models.lm import GenerationConfig

    head = "The task and the target answer, shared by every edit prompt of one item. " * 40
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.8, top_p=0.85, n=2, seed=7)
    tiny_lm.prefix_cache.clear()
    before = tiny_lm.prefix_cache.reused_tokens
    cold = tiny_lm.generate([{"role": "user", "content": head + "Rewrite paragraph one."}], cfg)
    assert tiny_lm.prefix_cache.reused_tokens == before  # nothing to reuse yet
    tiny_lm.generate([{"role": "user", "content": head + "Rewrite paragraph two, longer."}], cfg)
    assert tiny_lm.prefix_cache.reused_tokens - before >= BLOCK  # the head came from the cache
    warm = tiny_lm.generate([{"role": "user", "content": head + "Rewrite paragraph one."}], cfg)
    assert warm == cold and len(cold) == 2
