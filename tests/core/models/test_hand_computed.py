"""The headline numbers on cases worked by hand (issue 27, Deliver 2): REER's clipped score
(core.models.scoring) and the log-prob judge's expected score (core.r2.judge). Each expectation
is written out as arithmetic in the test, never computed by the function under test. Models are
doubles whose log-probs the test sets, so these run in milliseconds."""
from __future__ import annotations

import math

import pytest

from core.models.lm import TokenLogprobs
from core.models.scoring import ScoringConfig, score, summarize
from core.models.scripted import ScriptedLM, tokenize
from core.r2.judge import JudgeConfig, expected_score, logprob_judge


def test_the_clipped_score_of_known_logprobs():
    # four tokens: -0.5, -3.0 (clipped to -2), 0.0, -1.0
    s = summarize(TokenLogprobs(["a", "b", "c", "d"], [-0.5, -3.0, 0.0, -1.0], 10), clip_min=-2.0,
                  precision="fp32", keep_tokens=False)
    assert s.n_tokens == 4
    assert s.score == pytest.approx((0.5 + 2.0 + 0.0 + 1.0) / 4)  # 0.875
    assert s.mean_logprob == pytest.approx(-(0.5 + 3.0 + 0.0 + 1.0) / 4)  # -1.125, unclipped
    assert s.ppl == pytest.approx(3.0802168489180310)  # e^1.125
    # every token below the clip: the score is the clip's 2.0 whatever the model said
    assert summarize(TokenLogprobs(["a", "b"], [-7.0, -11.0], 1), -2.0, "fp32", False).score == 2.0
    # another clip: -1.5 caps -3.0 at -1.5: (0.5 + 1.5 + 0 + 1) / 4 = 0.75
    assert summarize(TokenLogprobs(["a", "b", "c", "d"], [-0.5, -3.0, 0.0, -1.0], 10), -1.5, "fp32",
                     False).score == pytest.approx(0.75)


class FixedLogprobs(ScriptedLM):
    """The scripted model with every scored token at log-prob `lp[i]` in turn (cycling)."""

    def __init__(self, lps):
        super().__init__(name="fixed")
        self.lps = lps

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        out = []
        for r in requests:
            toks = tokenize(r.continuation)
            out.append(TokenLogprobs(toks, [self.lps[i % len(self.lps)] for i in range(len(toks))], 1))
        return out


def test_the_clipped_score_through_score_on_a_model_double():
    ref = "one two three four five six"  # six scored tokens under the `none` template
    s = score(FixedLogprobs([-0.25, -2.5, -1.0]), "Q: ", "some thinking", ref, ScoringConfig(template="none"))
    assert s.n_tokens == 6
    assert s.score == pytest.approx(2 * (0.25 + 2.0 + 1.0) / 6)  # 1.0833...
    assert s.mean_logprob == pytest.approx(-2 * (0.25 + 2.5 + 1.0) / 6)  # -1.25


def test_the_expected_score_of_options_with_known_probabilities():
    cfg = JudgeConfig()  # scale 1..10
    options = list(range(1, 11))
    never = -1000.0  # exp(-1000) is 0 in floating point
    # options 2 and 4 equally likely, nothing else: (2 + 4) / 2 = 3.0
    lps = [never] * 10
    lps[1] = lps[3] = math.log(0.5)
    assert expected_score(lps, options, cfg) == 3.0
    # 2 at 3/4, 4 at 1/4: 1.5 + 1.0 = 2.5; unnormalised log-probs (only their ratio counts)
    lps = [never] * 10
    lps[1], lps[3] = math.log(0.3), math.log(0.1)
    assert expected_score(lps, options, cfg) == 2.5
    # uniform over 1..10: 5.5
    assert expected_score([-2.3] * 10, options, cfg) == 5.5
    # 7 at 1/3, 8 at 2/3: 7/3 + 16/3 = 7.666... rounded to 2 decimals
    lps = [never] * 10
    lps[6], lps[7] = math.log(1 / 3), math.log(2 / 3)
    assert expected_score(lps, options, cfg) == 7.67


class OptionOdds(ScriptedLM):
    """A judge whose option log-probs the test sets: the continuation "s/10" gets log p(s) on its first
    token and 0 on the rest (so the option's summed log-prob is log p(s)); options not given: -1000."""

    def __init__(self, probs: dict[int, float]):
        super().__init__(name="odds")
        self.probs = probs

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        out = []
        for r in requests:
            toks = tokenize(r.continuation)
            s = int(r.continuation.split("/")[0])
            first = math.log(self.probs[s]) if s in self.probs else -1000.0
            out.append(TokenLogprobs(toks, [first] + [0.0] * (len(toks) - 1), 1))
        return out


def test_the_logprob_judge_weighs_the_options_by_their_probabilities():
    rubric = ("Clarity", "Voice")
    j = logprob_judge(OptionOdds({2: 0.5, 4: 0.5}), "Write about a harbour.", "The harbour wakes slowly.",
                      rubric, JudgeConfig(method="logprob", critique_max_new_tokens=8))
    assert j.scores == {"Clarity": 3.0, "Voice": 3.0} and j.overall == 3.0 and j.method == "logprob"
    j = logprob_judge(OptionOdds({9: 0.25, 10: 0.75}), "Write about a harbour.", "The harbour wakes slowly.",
                      rubric, JudgeConfig(method="logprob", critique_max_new_tokens=8))
    assert j.scores == {"Clarity": 9.75, "Voice": 9.75} and j.overall == 9.75  # 2.25 + 7.5
