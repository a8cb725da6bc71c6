import sys; sys.path.insert(0, "tests/core/models")
from test_judging_logprob import _contexts, _reference
from core.models.optionscore import option_logprobs
from core.r2.judge import DEFAULT_RUBRIC, JudgeConfig, score_options
def test_x(tiny_lm):
    cfg = JudgeConfig(method="logprob")
    contexts = _contexts(tiny_lm, DEFAULT_RUBRIC[:3], cfg)
    options = [f"{o}/10" for o in score_options(cfg)]
    got, want = option_logprobs(tiny_lm, contexts, options), _reference(tiny_lm, contexts, options)
    print("LEN", [len(tiny_lm.encode(c)) for c in contexts])
    for g, w in zip(got, want):
        print("DIFF", max(abs(a-b) for a,b in zip(g,w)), [round(a-b,6) for a,b in zip(g,w)])
