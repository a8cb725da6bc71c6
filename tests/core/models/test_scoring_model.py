"""Scoring on the real built-in model: the measurement everything else stands on.

Each forward of the 135M model costs seconds on a shared 2-core CPU, so tests whose property
does not depend on the answer's length score only its first paragraphs (`head`), the full
sample-01 score is computed once per module, and left-truncation runs on the real weights
behind a narrowed window instead of a full 8192-token forward.
"""
from __future__ import annotations

import copy
import json
import random

import pytest
from needs import ROOT

from core.models.fastscore import naive_logprobs
from core.models.lm import ContextTooLong, ScoreRequest
from core.models.scoring import (
    ScoringConfig,
    ScoringError,
    build_request,
    score,
    score_candidates,
    score_many,
)
from core.segments import split_segments
from core.settings import SettingError

pytestmark = pytest.mark.model
SAMPLES = [json.loads(l) for l in open(ROOT / "data" / "samples.jsonl")]
FP32 = ScoringConfig(precision="fp32")


def head(text: str, n: int = 2) -> str:
    """The first n paragraphs of a text: enough to score, a fraction of the forward's cost."""
    return "\n\n".join(text.split("\n\n")[:n])


@pytest.fixture(scope="module")
def full0(builtin_lm):
    """Sample 1 scored whole in fp32 (shared by the tests that compare against it)."""
    s = SAMPLES[0]
    return score(builtin_lm, s["query"], s["thinking"], s["reference"], FP32)


def test_scrambled_reference_is_far_less_expected(builtin_lm, full0):
    s = SAMPLES[0]
    words = s["reference"].split()
    random.Random(0).shuffle(words)
    real = full0
    scrambled = score(builtin_lm, s["query"], s["thinking"], " ".join(words), FP32)
    assert real.ppl < 100 and scrambled.ppl > 10 * real.ppl
    assert 0 <= real.score < scrambled.score <= 2


def test_relevant_thinking_lowers_perplexity_against_unrelated(builtin_lm):
    items, chosen = [], SAMPLES[:5]
    for i, s in enumerate(chosen):
        other = SAMPLES[(i + 3) % len(SAMPLES)]
        items += [(s["query"], s["thinking"], s["reference"]), (s["query"], other["thinking"], s["reference"])]
    scores = score_many(builtin_lm, items, FP32)
    wins = [scores[2 * i].ppl < scores[2 * i + 1].ppl for i in range(len(chosen))]
    assert sum(wins) >= len(chosen) - 1, wins


def test_batched_and_prefix_cached_equal_one_at_a_time(builtin_lm):
    s = SAMPLES[1]
    segs, ref = split_segments(s["thinking"]), head(s["reference"])
    cands = [segs[2], segs[2] + " Hmm, maybe the storm should come earlier.", "Wait, that is wrong.", segs[0]]
    batched = score_candidates(builtin_lm, s["query"], segs, 2, cands, ref, FP32)
    for cand, got in zip(cands, batched):
        req = build_request(builtin_lm, s["query"], segs[:2] + [cand] + segs[3:], ref, FP32)
        ctx = [t for p in req.context for t in builtin_lm.encode(p)]
        lps = naive_logprobs(builtin_lm.model, ctx + builtin_lm.encode(req.continuation), len(ctx))
        assert got.n_tokens == len(lps)
        assert abs(got.mean_logprob - sum(lps) / len(lps)) < 1e-4


def test_auto_precision_keeps_fp32_order(builtin_lm):
    s = SAMPLES[2]
    segs, ref = split_segments(s["thinking"]), head(s["reference"], 6)  # sample-03: short paragraphs
    cands = [segs[1] + tail for tail in ("", " Hmm.", " Wait, maybe not.", " Let me think again about the father.")]
    fast = score_candidates(builtin_lm, s["query"], segs, 1, cands, ref, ScoringConfig(precision="auto"))
    exact = score_candidates(builtin_lm, s["query"], segs, 1, cands, ref, FP32)
    order = lambda xs: sorted(range(len(xs)), key=lambda i: xs[i].score)
    assert order(fast) == order(exact)
    assert max(abs(a.mean_logprob - b.mean_logprob) for a, b in zip(fast, exact)) < 1e-2


@pytest.mark.parametrize("template, bridge", [("train", "\n</think>\n"), ("chat", "\n</think>\n<answer>\n")])
def test_chat_templates_score_exactly_the_reference_tokens(builtin_lm, template, bridge):
    s, cfg = SAMPLES[3], ScoringConfig(template=template, precision="fp32")
    got = score(builtin_lm, s["query"], s["thinking"], head(s["reference"]), cfg, keep_tokens=True)
    assert "".join(got.tokens) == head(s["reference"]).strip()
    req = build_request(builtin_lm, s["query"], split_segments(s["thinking"]), s["reference"], cfg)
    text = "".join(req.context)
    assert text.endswith(bridge) and "<think>\n" in text
    # piecewise tokenization (what makes prefix sharing exact) equals tokenizing the joined text
    pieces = list(req.context) + [req.continuation]
    assert sum((builtin_lm.encode(p) for p in pieces), []) == builtin_lm.encode("".join(pieces))


def test_skip_first_segment_scores_fewer_tokens(builtin_lm, full0):
    s = SAMPLES[0]
    full = full0
    rest = score(builtin_lm, s["query"], s["thinking"], s["reference"], ScoringConfig(precision="fp32", skip_first_segment=True))
    assert 0 < rest.n_tokens < full.n_tokens


def test_answer_after_think_block_is_what_gets_scored(builtin_lm):
    s = SAMPLES[0]
    ref = head(s["reference"])
    a = score(builtin_lm, s["query"], "", ref, FP32)
    b = score(builtin_lm, s["query"], "", "<think>old notes</think>\n" + ref, FP32)
    assert a.n_tokens == b.n_tokens and abs(a.mean_logprob - b.mean_logprob) < 1e-6


def test_bad_inputs_get_clear_errors(builtin_lm):
    with pytest.raises(ScoringError, match="reference is empty"):
        score(builtin_lm, "q", "", "   ", FP32)
    with pytest.raises(SettingError, match="template='jinja'"):  # refused before the model is called
        score(builtin_lm, "q", "", "y", ScoringConfig(template="jinja"))
    long_ctx = "word " * 9000
    with pytest.raises(ContextTooLong, match="exceed"):  # the real 8192-token window (no forward runs)
        score(builtin_lm, long_ctx, "", "The end.", FP32)
    with pytest.raises(ContextTooLong):
        builtin_lm.loglikelihood([ScoreRequest(("a",), "word " * 9000)], truncate="left")
    # left-truncation on the real weights and tokenizer, behind a 512-token window: the same
    # code path as at 8192 without a minute-long forward (tests/core/models/test_fastscore.py checks the cut)
    narrow = copy.copy(builtin_lm)
    narrow.max_length = 512
    with pytest.raises(ContextTooLong, match="exceed"):
        score(narrow, "word " * 600, "", "The end.", FP32)
    cut = score(narrow, "word " * 600, "", "The end.", ScoringConfig(precision="fp32", truncate="left"))
    assert cut.truncated > 0 and cut.n_tokens >= 3
    assert 0 <= cut.score <= 2 and cut.ppl > 1
