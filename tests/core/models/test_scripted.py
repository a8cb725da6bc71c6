"""The `scripted:` model (core.models.scripted): a deterministic fake that keeps the LM protocol,
so tests and the demo mode run REER and R2 without a model. Properties, not snapshots."""
from __future__ import annotations

import json
import pickle

import pytest
from test_reer_decision import check_search_decisions

from core import events as ev
from core.models.lm import (
    ContextTooLong,
    FINISH_LENGTH,
    FINISH_STOP,
    Generation,
    GenerationConfig,
    LM,
    LMError,
    ModelNotFound,
    ScoreRequest,
)
from core.models.load import load_lm
from core.models.scoring import score
from core.models.scripted import Rule, ScriptedLM, tokenize
from core.r2.judge import DEFAULT_RUBRIC, model_judge
from core.reer.config import ReerConfig
from core.reer.search import reer_search
from core.reer.state import record_from_events

TASK = [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a letter in a storm."}]


def test_load_lm_knows_the_spec_and_the_protocol_holds():
    lm = load_lm("scripted:")
    assert isinstance(lm, ScriptedLM) and isinstance(lm, LM) and lm.name == "scripted:"
    assert load_lm("scripted:seed=3,judge=7,delay=0,max_length=64").max_length == 64
    with pytest.raises(ModelNotFound, match="unknown option 'colour'"):
        load_lm("scripted:colour=blue")
    with pytest.raises(ModelNotFound, match="needs a number"):
        load_lm("scripted:seed=x")


def test_tokens_join_back_and_count():
    text = "I want  the keeper,\n\nthen — the storm!  "
    assert "".join(tokenize(text)) == text
    assert load_lm("scripted:").count_tokens(text) == len(tokenize(text)) == 11


def test_same_seed_same_text_other_seed_other_text():
    lm = load_lm("scripted:")
    cfg = GenerationConfig(max_new_tokens=300, n=2, seed=5)
    a, b = lm.generate(TASK, cfg), lm.generate(TASK, cfg)
    assert a == b and a[0] != a[1]  # samples of one call differ
    assert lm.generate(TASK, GenerationConfig(max_new_tokens=300, n=2, seed=6)) != a
    assert load_lm("scripted:seed=1").generate(TASK, cfg) != a
    greedy = GenerationConfig(max_new_tokens=300, n=2, temperature=0, seed=1)
    g = lm.generate(TASK, greedy)
    assert g[0] == g[1] and g == lm.generate(TASK, GenerationConfig(max_new_tokens=300, n=2, temperature=0, seed=9))
    assert "lighthouse" in " ".join(a) or "keeper" in " ".join(a)  # written from the prompt's words
    assert "\n\n" in a[0]  # paragraphs


def test_budget_stop_strings_prefix_and_finish_reasons():
    lm = load_lm("scripted:")
    short = lm.generate(TASK, GenerationConfig(max_new_tokens=12, seed=0))[0]
    assert isinstance(short, Generation) and short.finish_reason == FINISH_LENGTH
    assert lm.count_tokens(short) == 12
    whole = lm.generate(TASK, GenerationConfig(max_new_tokens=2000, seed=0))[0]
    assert whole.finish_reason == FINISH_STOP and whole.startswith(short)
    ask = TASK + [{"role": "user", "content": "Write the new paragraph inside <rewrite></rewrite>."}]
    out = lm.generate(ask, GenerationConfig(max_new_tokens=200, seed=0, stop=("</rewrite>",)),
                      prefix="<rewrite>\nI want the keeper")[0]
    assert out.finish_reason == FINISH_STOP and "</rewrite>" not in out and not out.startswith("<rewrite>")
    assert len(out.split()) >= 3  # it continues the prefill, not repeats it
    copied = pickle.loads(pickle.dumps(out))
    assert copied == out and copied.finish_reason == FINISH_STOP


def test_no_repeat_ngram_is_honoured():
    lm = load_lm("scripted:")
    for n in (3, 4):
        text = lm.generate(TASK, GenerationConfig(max_new_tokens=400, seed=2, no_repeat_ngram=n))[0]
        toks = tokenize(text)
        grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
        assert len(grams) > 10 and len(set(grams)) == len(grams)
    loose = lm.generate(TASK, GenerationConfig(max_new_tokens=400, seed=2))[0]
    toks = tokenize(loose)
    grams = [tuple(toks[i:i + 3]) for i in range(len(toks) - 2)]
    assert len(set(grams)) < len(grams)  # without the ban the templates do repeat


def test_logprobs_depend_on_the_text_and_truncate_as_asked():
    lm = load_lm("scripted:max_length=40")
    cont = " The keeper read the letter twice."
    near, far = lm.loglikelihood([ScoreRequest(("A keeper and a letter.",), cont),
                                  ScoreRequest(("A cat on a mat.",), cont)])
    assert near.tokens == far.tokens == tokenize(cont)
    assert sum(near.logprobs) > sum(far.logprobs) and all(v < 0 for v in near.logprobs)
    long = ("word " * 60,)
    with pytest.raises(ContextTooLong):
        lm.loglikelihood([ScoreRequest(long, cont)])
    cut = lm.loglikelihood([ScoreRequest(long, cont)], truncate="left")[0]
    assert cut.truncated > 0 and cut.context_tokens + len(cut.tokens) == 40
    with pytest.raises(LMError):
        lm.loglikelihood([ScoreRequest(("x",), "")])


def test_a_better_matching_thinking_scores_better():
    lm = load_lm("scripted:")
    ref = "The keeper found the letter under the lamp and read it while the storm broke the boat."
    good = score(lm, TASK[0]["content"], "I want the keeper to find the letter under the lamp.\n\nThen the storm and the boat.", ref)
    bad = score(lm, TASK[0]["content"], "I want a recipe for soup.\n\nMaybe carrots.", ref)
    assert good.score < bad.score


def test_judge_option_gives_a_parseable_judgment():
    j = model_judge(load_lm("scripted:judge=7"), "Write a story.", "The keeper read the letter.", DEFAULT_RUBRIC)
    assert j.parsed and j.overall == 7 and all(v == 7 for v in j.scores.values()) and j.critique
    weak = model_judge(load_lm("scripted:"), "Write a story.", "The keeper read the letter.", DEFAULT_RUBRIC)
    assert not weak.parsed and weak.attempts == 2  # prose, as a weak model writes: kept unparsed


def test_script_file_rules(tmp_path):
    script = {"rules": [{"when": ["grading", "Draft two"], "judge": 9, "critique": "Fine work, keep the ending."},
                        {"when": "grading", "judge": 4, "name": "judge"},
                        {"when": "Say hi", "reply": ["hello one", "hello two"], "name": "hi"}]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(script))
    lm = load_lm(f"scripted:{path},seed=2")
    assert lm.seed == 2 and len(lm.rules) == 3
    say = [{"role": "user", "content": "Say hi"}]
    assert lm.generate(say, GenerationConfig(n=1)) == ["hello one"]
    assert lm.generate(say, GenerationConfig(n=2)) == ["hello two", "hello two"]  # the last one repeats
    grade = [{"role": "user", "content": "You are grading this:\n<<<\nDraft one.\n>>>\n1: <score>\nOverall: <n>"}]
    assert "Overall: 4" in lm.generate(grade, GenerationConfig())[0]
    grade2 = [{"role": "user", "content": grade[0]["content"].replace("Draft one", "Draft two")}]
    assert lm.generate(grade2, GenerationConfig(), prefix="1:")[0] == " 9\nOverall: 9\nCritique: Fine work, keep the ending."
    assert [c.rule for c in lm.calls] == ["hi", "hi", "judge", "rule0"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"when": "("}]}')
    with pytest.raises(ModelNotFound, match="needs a 'reply'"):
        load_lm(f"scripted:script={bad}")
    with pytest.raises(ModelNotFound, match="cannot read"):
        load_lm("scripted:nowhere.json")


def test_callable_rules_and_chat_text():
    lm = ScriptedLM(rules=[Rule(when=("count",), reply=lambda ask: f"call {ask.nth} sample {ask.sample}", name="c")])
    out = lm.generate([{"role": "user", "content": "count"}], GenerationConfig(n=2))
    assert out == ["call 0 sample 0", "call 0 sample 1"]
    assert lm.generate([{"role": "user", "content": "count"}], GenerationConfig(n=1)) == ["call 1 sample 0"]
    text = lm.chat_text([{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n") and "hi<|im_end|>" in text


def test_reer_runs_end_to_end_on_the_scripted_model():
    lm = load_lm("scripted:")
    cfg = ReerConfig(candidates=2, max_steps=3, draft_max_new_tokens=400, candidate_max_new_tokens=120, seed=0)
    ref = "The keeper found the letter under the lamp and read it twice while the storm broke the boat."
    events = list(reer_search(lm, "run", "item", TASK[0]["content"], ref, cfg))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "run_error" not in kinds
    scored = [e.score["score"] for e in events if isinstance(e, ev.CandidateScored)]
    assert len(scored) >= 2 and len(set(scored)) > 1  # candidates score differently
    again = [e.score["score"] for e in reer_search(lm, "run", "item", TASK[0]["content"], ref, cfg)
             if isinstance(e, ev.CandidateScored)]
    assert again == scored  # deterministic
    # the decisions the rule gives for these scores (worse, a tie with each other and worse, then better)
    assert check_search_decisions(record_from_events(events)) == ["keep", "keep", "accept"]
