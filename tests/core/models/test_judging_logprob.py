"""The log-prob judge's cost without changing what it measures: core.models.optionscore gives the
same per-option log-probs as lm.loglikelihood (a real tokenizer on a tiny random Llama, and the
scripted fake through the protocol), the judge's scores are the ones the per-request scoring gives,
and a judgment of C criteria runs 1 + 2C forwards of the model (it ran 1 + 10C: each "s/10" option
with its criterion's tail, one by one)."""
from __future__ import annotations

import pytest

from core.models.lm import ScoreRequest
from core.models.optionscore import option_logprobs
from core.r2.judge import (
    DEFAULT_RUBRIC,
    JudgeConfig,
    expected_score,
    logprob_judge,
    score_options,
)

TEXT = ("The harbour wakes slowly. Gulls argue over the nets while the first ferry coughs awake, and "
        "the baker on the quay sets out loaves still steaming in the cold. ") * 3


def _contexts(lm, rubric, cfg):
    from core.prompts import render

    return [lm.chat_text([{"role": "user", "content": render("r2_judge_one", task="Write about a harbour.",
                                                              text=TEXT, criterion=c, low=f"{cfg.low:g}",
                                                              high=f"{cfg.high:g}")}]) for c in rubric]


def _reference(lm, contexts, options):
    flat = lm.loglikelihood([ScoreRequest(context=(c,), continuation=o) for c in contexts for o in options])
    sums = [sum(r.logprobs) for r in flat]
    return [sums[i * len(options):(i + 1) * len(options)] for i in range(len(contexts))]


def test_option_logprobs_equal_the_per_request_scoring(tiny_lm):
    cfg = JudgeConfig(method="logprob")
    contexts = _contexts(tiny_lm, DEFAULT_RUBRIC[:3], cfg)
    options = [f"{o}/10" for o in score_options(cfg)]
    got, want = option_logprobs(tiny_lm, contexts, options), _reference(tiny_lm, contexts, options)
    assert len(got) == 3 and all(len(r) == 10 for r in got)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=2e-4)


def test_the_judge_scores_are_unchanged_and_it_runs_one_plus_two_forwards_per_criterion(tiny_lm, monkeypatch):
    cfg = JudgeConfig(method="logprob", critique_max_new_tokens=4)
    rubric = DEFAULT_RUBRIC[:3]
    options = score_options(cfg)
    want = {c: expected_score(lps, options, cfg)
            for c, lps in zip(rubric, _reference(tiny_lm, _contexts(tiny_lm, rubric, cfg), [f"{o}/10" for o in options]))}
    base = getattr(tiny_lm.model, tiny_lm.model.base_model_prefix)
    calls = []
    real = base.forward
    monkeypatch.setattr(base, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(tiny_lm, "generate", lambda msgs, gen, prefix="": ["Add one concrete image."])
    j = logprob_judge(tiny_lm, "Write about a harbour.", TEXT, rubric, cfg)
    assert j.scores == want and j.method == "logprob" and j.parsed
    assert len(calls) == 1 + 2 * len(rubric)


def test_other_models_go_through_the_protocol(tmp_path):
    from core.models.scripted import ScriptedLM

    lm = ScriptedLM()
    contexts = ["Task: write. Text: the harbour at dawn. Score it.", "Task: write. Text: the harbour. Grade it."]
    options = ["1/5", "2/5", "5/5"]
    assert option_logprobs(lm, contexts, options) == _reference(lm, contexts, options)
