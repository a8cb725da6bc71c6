"""Keys/values kept between scoring calls (core.models.fastscore.ScoreKV): a REER search on the tiny
random model, scored without the clip so its decisions are not ties (test_reer.Unclipped), scores
and decides the same with and without reuse (max |diff| of mean log-probs < 1e-5 in fp32),
reuse computes fewer tokens, an edit reuses only the common head, and the budget bounds memory.
Scripted generation, tiny-model scores: seconds."""
from __future__ import annotations

import random

import pytest
import torch
from test_reer import DRAFT, SMALL_UNCLIPPED, S, ScriptedLM, rewrites

from core.bench import step_regrets
from core.models.fastscore import SCORE_KV_ENV, ScoreKV, kv_bytes, score_token_requests
from core.reer.search import Controls, reer_search


@pytest.fixture
def fresh(tiny_lm):
    """tiny_lm with no keys/values kept from earlier tests (and none left behind)."""
    tiny_lm._score_kv.clear()
    yield tiny_lm
    tiny_lm._score_kv.clear()


def _search(lm, controls=None):
    script = ScriptedLM(lm, [[DRAFT]] + rewrites(
        ("The storm came first and flooded the whole town by night.", "Zebra quantum xylophone jumps over."),
        ("The keeper reads the letter twice before she believes it.", "Zebra quantum xylophone jumps over."),
        (", , , ,.", "The keeper reads the letter twice before she believes it.")))
    return list(reer_search(script, "run", S["id"], S["query"], S["reference"], SMALL_UNCLIPPED, controls=controls))


def _scores(events):
    return [(e.kind, getattr(e, "step", 0), getattr(e, "index", None), e.score["mean_logprob"])
            for e in events if e.kind in ("initial_draft", "candidate_scored")]


def _store(lm) -> ScoreKV:
    return lm.score_kv(torch.float32)


def test_a_search_scores_the_same_with_and_without_reuse(fresh, monkeypatch):
    monkeypatch.setenv(SCORE_KV_ENV, "0")
    plain = _search(fresh)
    assert _store(fresh).reused_tokens == 0 and not _store(fresh).entries
    fresh._score_kv.clear()
    monkeypatch.delenv(SCORE_KV_ENV)
    reused = _search(fresh)
    a, b = _scores(plain), _scores(reused)
    assert [x[:3] for x in a] == [x[:3] for x in b] and len(a) == 6  # draft + 2, 2 and 1 (1 failed) candidates
    assert max(abs(x[3] - y[3]) for x, y in zip(a, b)) < 1e-5
    store = _store(fresh)
    assert store.reused_tokens > 0 and 0 < store.bytes <= store.max_bytes
    # the decisions are the ones the uncached path makes, and not ties: the search accepts and keeps
    decided = [(e.action, e.chosen) for e in plain if e.kind == "segment_decided"]
    assert decided == [(e.action, e.chosen) for e in reused if e.kind == "segment_decided"]
    assert decided == [("keep", None), ("accept", 1), ("accept", 1)]  # step 3's candidate 0 failed (too short)
    rows = step_regrets(fresh, reused, SMALL_UNCLIPPED.scoring())
    assert all(r["gap"] > 1e-6 for r in rows)  # no step compares tied candidates
    assert all(abs(r["regret"]) < 1e-9 for r in rows)  # no regret


def _requests(seed: int, head: list[int], mids: list[list[int]], cont: list[int]):
    return [([head, mid], cont, 0) for mid in mids]


def _uncached(model, reqs):
    return score_token_requests(model, reqs)


def test_the_next_step_computes_only_new_tokens_and_y(fresh):
    """Step 1 scores 2 candidates after a head; step 2's context is step 1's chosen context plus a
    new segment: only that segment and y are computed, and the scores equal the uncached ones."""
    rng = random.Random(3)
    toks = lambda n: [rng.randrange(100, 5000) for _ in range(n)]
    head, y = toks(120), toks(40)
    step1 = [toks(30), toks(35)]
    store = ScoreKV(1 << 30)
    model = fresh.model
    with torch.inference_mode():
        got1 = score_token_requests(model, _requests(0, head, step1, y), store=store)
        assert max(abs(a - b) for r, u in zip(got1, _uncached(model, _requests(0, head, step1, y)))
                   for a, b in zip(r, u)) < 1e-5
        chosen = head + step1[1]
        step2 = [toks(25), toks(28)]
        reqs2 = [([chosen, mid], y, 0) for mid in step2]
        before = store.computed_tokens
        got2 = score_token_requests(model, reqs2, store=store)
        computed = store.computed_tokens - before
        ref2 = _uncached(model, reqs2)
    assert max(abs(a - b) for r, u in zip(got2, ref2) for a, b in zip(r, u)) < 1e-5
    # nothing of head + chosen candidate is recomputed: each request runs its new segment and y only
    assert computed == sum(len(m) + len(y) - 1 for m in step2)


def test_an_edit_reuses_only_the_common_head(fresh):
    rng = random.Random(4)
    toks = lambda n: [rng.randrange(100, 5000) for _ in range(n)]
    head, a, b, y = toks(80), toks(30), toks(30), toks(20)
    edited = toks(30)
    store = ScoreKV(1 << 30)
    with torch.inference_mode():
        score_token_requests(fresh.model, [([head, a, b], y, 0)], store=store)
        reused = store.reused_tokens
        got = score_token_requests(fresh.model, [([head, edited, b], y, 0)], store=store)
        ref = _uncached(fresh.model, [([head, edited, b], y, 0)])
    assert store.reused_tokens - reused == len(head) + (edited[0] == a[0])
    assert max(abs(x - z) for x, z in zip(got[0], ref[0])) < 1e-5


def test_the_budget_bounds_what_is_kept(fresh):
    rng = random.Random(5)
    toks = lambda n: [rng.randrange(100, 5000) for _ in range(n)]
    with torch.inference_mode():
        one = ScoreKV(1 << 30)
        score_token_requests(fresh.model, [([toks(100)], toks(10), 0)], store=one)
        size = one.bytes
        small = ScoreKV(int(size * 2.5))  # room for two such contexts
        for _ in range(5):
            score_token_requests(fresh.model, [([toks(100)], toks(10), 0)], store=small)
    assert len(small.entries) == 2 and small.bytes <= small.max_bytes
    assert small.bytes == sum(kv_bytes(kv) for _, kv in small.entries)


def test_an_edit_during_a_search_is_scored_exactly(fresh, monkeypatch):
    """A person's edit changes the prefix: the rescoring after it equals the uncached path."""
    def run():
        controls = Controls()
        controls.edit(1, "The keeper finds the letter under the lamp and reads it slowly, twice over.")
        return _scores(_search(fresh, controls))
    monkeypatch.setenv(SCORE_KV_ENV, "0")
    plain = run()
    fresh._score_kv.clear()
    monkeypatch.delenv(SCORE_KV_ENV)
    reused = run()
    assert [x[:3] for x in plain] == [x[:3] for x in reused]
    assert max(abs(x[3] - y[3]) for x, y in zip(plain, reused)) < 1e-5


def test_kept_keys_values_go_when_the_weights_change():
    """A model trained in place (an optimizer step) or cast to bf16 and back scores with its new
    weights, not with keys/values kept from the old ones. Its own tiny model: the session's
    tiny_lm must keep its weights."""
    from core.models.lm import ScoreRequest

    lm = own_tiny_lm()
    tok = lm.tokenizer
    reqs = [ScoreRequest(("The keeper climbs the stair at dusk and lights the lamp. ",), "The ships see it.")]

    def fresh_sum() -> float:  # scored without anything kept
        kept, lm._score_kv = lm._score_kv, {}
        try:
            return sum(lm.loglikelihood(reqs)[0].logprobs)
        finally:
            lm._score_kv = kept

    lm.loglikelihood(reqs)  # keeps the context's keys/values
    with torch.no_grad():
        for p in lm.model.model.layers[0].parameters():
            p.mul_(1.5)  # in place, as an optimizer step writes
    assert sum(lm.loglikelihood(reqs)[0].logprobs) == pytest.approx(fresh_sum(), abs=1e-5)
    lm.model.to(torch.bfloat16).to(torch.float32)  # new storage, rounded values
    assert sum(lm.loglikelihood(reqs)[0].logprobs) == pytest.approx(fresh_sum(), abs=1e-5)
    before = sum(lm.loglikelihood(reqs)[0].logprobs)
    bf16_before = sum(lm.loglikelihood(reqs, precision="bf16")[0].logprobs)  # makes and keeps a bf16 copy
    fused_adamw_step(lm.model, tok)  # transformers' default optimizer: no version counter moves
    after = sum(lm.loglikelihood(reqs)[0].logprobs)
    assert after == pytest.approx(fresh_sum(), abs=1e-5) and abs(after - before) > 1e-3
    bf16_after = sum(lm.loglikelihood(reqs, precision="bf16")[0].logprobs)
    assert abs(bf16_after - bf16_before) > 1e-3 and bf16_after == pytest.approx(after, abs=0.5)


def own_tiny_lm(seed: int = 1):
    """A 2-layer random Llama of the test's own, which it may train (the session's tiny_lm must
    keep its weights)."""
    from tiny_models import tiny_llama

    from core.models.hf import HFLM

    return HFLM(*tiny_llama(seed), name="tiny-mutable", device="cpu")


def fused_adamw_step(model, tok):
    """One step of torch's fused AdamW (what transformers' Trainer runs by default), which writes
    the weights without moving their version counters."""
    params = [p for p in model.parameters() if p.requires_grad]
    versions = [p._version for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2, fused=True)
    ids = torch.tensor([tok.encode("The lamp burns all night over the water.")])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    model.eval()
    assert [p._version for p in params] == versions  # the case this guards: nothing counted the write
