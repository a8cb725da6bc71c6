"""The R2 tests' writer and judge: the package's scripted model (core.models.scripted) with one
rule per R2 prompt kind, answering by what each prompt asks.

`FakeLM` recognises the R2 prompts (plan, draft, reflect, revise, judge, judge retry) and
answers from per-kind replies, so a test pins exactly what the loop sees (a score per version,
an unparsable judge, a repeated reflection) independent of call order, which is what a resumed
run needs. Every call is logged (`calls`: kind, messages, prefix). Token counts, stop strings,
budgets, finish reasons and log-probs are the scripted model's own.
"""
from __future__ import annotations

import re

from core.models.scripted import Ask, Rule, ScriptedLM

DRAFT = "Draft number 0. The keeper finds a letter in the lamp room and reads it twice before the storm."


def revision_text(r: int) -> str:
    return f"Draft number {r}. The keeper finds the letter, and this time the storm and the boat carry the ending."


def version_of(text: str) -> int:
    m = re.search(r"Draft number (\d+)", text)
    return int(m.group(1)) if m else -1


def judge_reply(overall, n_criteria: int = 5, critique: str = "The ending is rushed; give the boat scene room.") -> str:
    lines = [f"{i}: {overall}" for i in range(1, n_criteria + 1)]
    return "\n".join(lines) + f"\nOverall: {overall}\nCritique: {critique}"


def round_of(seed: int, stage: int) -> int:
    """The round a writer call belongs to, read back from its seed (core.r2.loop._seed with seed 0), so
    a fresh FakeLM in a resumed run answers as the first one would have."""
    r, rest = divmod(seed - stage * 104_729, 7919)
    assert rest == 0, "FakeLM needs R2Config.seed == 0"
    return r


KINDS = (("could not be read", "judge_retry"), ("grading a piece of writing", "judge"),
         ("Rewrite these notes", "reflect"), ("complete improved version", "revise"),
         ("plan it briefly", "plan"), ("Write the complete piece now", "draft"))


def kind_of(messages) -> str:
    text = messages[-1]["content"]
    for key, kind in KINDS:
        if key in text:
            return kind
    raise AssertionError(f"unknown prompt: {text[:200]}")


def judged_text(messages) -> str:
    return messages[0]["content"].split("<<<", 1)[1].split(">>>", 1)[0]


class FakeLM(ScriptedLM):
    """Writer and judge in one (tests may pass two instances). `scores`: version -> overall."""

    def __init__(self, scores=None, reflections=None, judge=None, name="fake", fail_on=None):
        self.scores = scores or {0: 4, 1: 6, 2: 8, 3: 9}
        self.reflections = reflections  # round -> reflection body (after the prefilled opening)
        self.judge_reply = judge  # optional callable(messages, call_no) -> full judge reply
        self.fail_on = fail_on  # (kind, nth call of that kind) to raise at: a crash mid-run
        # the retry prompt also quotes the first one: match on the last message only
        rules = [Rule(when=(re.escape(key),), reply=self._answerer(kind), name=kind, last=True) for key, kind in KINDS]
        super().__init__(rules=rules, max_length=8192, name=name)

    def count(self, kind):
        return sum(1 for c in self.calls if c.rule == kind)

    def _answerer(self, kind):
        def answer(ask: Ask) -> str:
            if self.fail_on == (kind, ask.nth + 1):
                raise KeyboardInterrupt("killed")
            return self.reply(kind, ask.messages, ask.config, ask.nth + 1)
        return answer

    def reply(self, kind, messages, config, call_no) -> str:
        if kind == "plan":
            return "I will open in the lamp room, hold the letter back, and end on the boat."
        if kind == "draft":
            return DRAFT
        if kind in ("judge", "judge_retry"):
            if self.judge_reply is not None:
                return self.judge_reply(messages, call_no)
            v = version_of(judged_text(messages if kind == "judge" else messages[:1]))
            return judge_reply(self.scores[v])
        if kind == "reflect":
            r = round_of(config.seed, 3)
            body = (self.reflections or {}).get(r, f"the middle of draft {r} drags and the letter needs a "
                                                   f"reason {r}. I will cut a paragraph and add the boat.")
            return "Rereading my draft, " + body
        if kind == "revise":
            return revision_text(round_of(config.seed, 4))
        raise AssertionError(kind)
