"""Judging a draft against a rubric: the judgment's shape, the model judge, human judgments
and overrides.

Knows: the rubric of a prompt (its own criteria, e.g. HelloBench `checklists`, else
`DEFAULT_RUBRIC`); the scale (every criterion and the overall score are numbers from
`JudgeConfig.low` to `JudgeConfig.high`, 1 to 10 by default); the model judge's prompt
(assets/prompts/r2_judge.txt) and how to read its reply (numbered score lines, `Overall:`,
`Critique:`, or a JSON object with the same fields). A reply that does not parse is retried
once with another seed; if that fails too the judgment is kept with `parsed=False`, no
scores (None, never a made-up number) and both raw replies, so nothing is lost and nothing
crashes. With `method="auto"` a judge whose replies still do not parse is asked differently: each criterion's score becomes the expected value of the judge's own distribution
over "1/10".."10/10" (read by log-likelihood, so even a 135M model yields a real number), the
overall score is their mean, and the critique is written alone from a short editor prompt;
the judgment says so (`method="logprob"`) and keeps the unreadable replies in `raw`.
`method="logprob"` scores that way from the start, at the cost of 1 + 2C forwards for C criteria
(core.models.optionscore: the shared task and text once, each criterion's tail once, its options
as one batch; the numbers are lm.loglikelihood's). Measured on the built-in 135M model: it
gave a HelloBench reference, a degenerate "the dog the dog..." text and "ok." the same ~7.0,
so a tiny judge's log-probs carry no signal; the default stays "generate" (unparsed is honest). A person's judgment has the same shape (`judge="human"`); an override is a human
judgment that keeps the model's original (`model_judgment`) and lists each field it changed.

Does not know: the R2 loop (core.r2.loop), storage, or how a judgment is shown.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal, Sequence

from core.models.lm import LM, GenerationConfig
from core.prompts import render, template
from core.settings import checking, invalid, setting
from core.settings import validate as validate_settings

DEFAULT_RUBRIC: tuple[str, ...] = (
    "Does the text do exactly what the task asks (form, topic, audience, every stated requirement)?",
    "Is it well organised, with a clear opening, a logical order and a real ending?",
    "Are its points developed with specific details, examples or evidence rather than generalities?",
    "Is the language clear, correct, varied and suited to the tone the task needs?",
    "Is it engaging and original, and long enough for what the task asks?",
)


class BadJudgment(ValueError):
    """A judgment given by a person (or a dict) is not valid; the message names the field and the fix."""


@dataclass(frozen=True)
class JudgeConfig:
    low: float = setting(1, help="lowest score of every criterion and of the overall score")
    high: float = setting(10, help="highest score (fully met)")
    max_criteria: int = setting(8, min=1, help="rubrics longer than this are cut to their first criteria "
                                                        "(small judges lose track)")
    max_text_chars: int = setting(6000, min=1,
                                  help="the judged text is cut to this many characters in the prompt")
    max_new_tokens: int = setting(256, min=1, label="Judge tokens",
                                  help="token budget of the judge's reply")
    temperature: float = setting(0.3, min=0, max=5, help="sampling temperature of the judge (the retry uses the same)")
    top_p: float = setting(0.9, above=0, max=1, help="the judge's nucleus sampling mass")
    retries: int = setting(1, min=0, max=20, help="extra attempts when the reply does not parse (then it is kept "
                                                  "unparsed)")
    method: str = setting("generate", choices=("generate", "logprob", "auto"),
                          help="generate: read the judge's written scores; logprob: expected score per criterion "
                               "from its log-probs (for judges too small to keep the format); auto: generate, then "
                               "logprob if nothing parses")
    critique_max_new_tokens: int = setting(160, min=1,
                                           help="token budget of the critique written alone (logprob method)")

    def __post_init__(self):
        validate_settings(self)
        if checking() and not self.low < self.high:
            invalid("high", self.high, f"must be above low ({self.low:g})", self)


@dataclass(frozen=True)
class Judgment:
    scores: dict  # criterion text -> score on the scale, or None when the judge gave none for it
    overall: float | None  # overall score on the scale; None only when unparsed
    critique: str  # actionable critique ("" when unparsed)
    judge: Literal["model", "human"]  # who judged (an override is "human")
    parsed: bool  # False: the model's reply could not be read; `raw` keeps it
    raw: str = ""  # the model judge's raw reply (all attempts, separated by a rule); "" for people
    scale: tuple = (1, 10)  # (low, high) of every score
    attempts: int = 0  # model replies read (0 for people)
    error: str | None = None  # why the reply did not parse
    model_judgment: dict | None = None  # an override: the model's judgment it replaced (to_dict form)
    changes: tuple = ()  # an override: ({"field", "before", "after"}, ...) for each edited field
    note: str = ""  # free text from a person (who, why)
    method: str = "generate"  # a model judge's scores: read from its reply, or "logprob" (expected values)
    annotator: str | None = None  # the person who judged or overrode (core.annotators); None: unknown / a model

    def to_dict(self) -> dict:
        return {"scores": dict(self.scores), "overall": self.overall, "critique": self.critique,
                "judge": self.judge, "parsed": self.parsed, "raw": self.raw, "scale": list(self.scale),
                "attempts": self.attempts, "error": self.error, "model_judgment": self.model_judgment,
                "changes": [dict(c) for c in self.changes], "note": self.note, "method": self.method,
                "annotator": self.annotator}

    @classmethod
    def from_dict(cls, d: dict) -> "Judgment":
        """Rebuild (and check) a judgment from its dict form; raises BadJudgment naming the field."""
        if not isinstance(d, dict):
            raise BadJudgment(f"a judgment must be a dict with scores, overall, critique, judge; got {type(d).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        extra = sorted(set(d) - known)
        if extra:
            raise BadJudgment(f"judgment: unknown field(s) {extra}; known: {sorted(known)}")
        d = dict(d)
        d["scale"] = tuple(d.get("scale", (1, 10)))
        d["changes"] = tuple(d.get("changes", ()))
        j = cls(**{"scores": d.pop("scores", {}), "overall": d.pop("overall", None),
                   "critique": d.pop("critique", ""), "judge": d.pop("judge", "human"),
                   "parsed": d.pop("parsed", True), **d})
        validate(j)
        return j


def validate(j: Judgment) -> None:
    """Raise BadJudgment if a judgment breaks its own rules (scores on the scale, who judged...)."""
    low, high = j.scale
    if j.judge not in ("model", "human"):
        raise BadJudgment(f"judgment.judge: {j.judge!r}; use 'model' or 'human'")
    if not isinstance(j.scores, dict):
        raise BadJudgment("judgment.scores: must map each criterion to a number (or null)")
    for crit, s in j.scores.items():
        if s is not None and not _on_scale(s, low, high):
            raise BadJudgment(f"judgment.scores[{crit[:60]!r}]: {s!r} is not a number from {low} to {high}")
    if j.parsed:
        if j.overall is None or not _on_scale(j.overall, low, high):
            raise BadJudgment(f"judgment.overall: {j.overall!r} is not a number from {low} to {high}; give one")
        if not isinstance(j.critique, str):
            raise BadJudgment("judgment.critique: must be text")
    elif j.overall is not None:
        raise BadJudgment("judgment.overall: an unparsed judgment has no overall score; set parsed true or drop it")


def _on_scale(x, low, high) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and low <= x <= high


def rubric_for(criteria: Sequence[str] | None, cfg: JudgeConfig = JudgeConfig()) -> tuple[str, ...]:
    """The criteria to judge by: the prompt's own (first `max_criteria`), else DEFAULT_RUBRIC."""
    crit = tuple(c.strip() for c in (criteria or ()) if isinstance(c, str) and c.strip())
    return crit[:cfg.max_criteria] if crit else DEFAULT_RUBRIC


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


# ---- people -----------------------------------------------------------------------------------

def _who(annotator: str | None) -> str | None:
    """The annotator given, else the one set by core.annotators.acting_as, else None."""
    from core.annotators import resolve

    return resolve(annotator)


def human_judgment(rubric: Sequence[str], overall: float, critique: str, scores: dict | None = None,
                   cfg: JudgeConfig = JudgeConfig(), note: str = "", annotator: str | None = None) -> Judgment:
    """A person's judgment. `scores` may name some criteria (others stay None); unknown criteria
    are an error. Raises BadJudgment naming the field and the fix."""
    scores = dict(scores or {})
    unknown = [c for c in scores if c not in rubric]
    if unknown:
        raise BadJudgment(f"judgment.scores: {unknown[0][:60]!r} is not a criterion of this rubric; "
                          f"use one of the rubric's criteria")
    if not isinstance(critique, str) or not critique.strip():
        raise BadJudgment("judgment.critique: empty; say what should change (it becomes the writer's reflection)")
    j = Judgment(scores={c: scores.get(c) for c in rubric}, overall=overall, critique=critique.strip(),
                 judge="human", parsed=True, scale=(cfg.low, cfg.high), note=note, annotator=_who(annotator))
    validate(j)
    return j


def override_judgment(model: Judgment, overall: float | None = None, critique: str | None = None,
                      scores: dict | None = None, note: str = "", annotator: str | None = None) -> Judgment:
    """A person's edit of the model's judgment: fields not given keep the model's values; the
    result is judged "human", keeps the model's judgment and lists what changed."""
    new_scores = dict(model.scores)
    for c, s in (scores or {}).items():
        if c not in new_scores:
            raise BadJudgment(f"judgment.scores: {c[:60]!r} is not a criterion of this rubric")
        new_scores[c] = s
    after = {"overall": model.overall if overall is None else overall,
             "critique": model.critique if critique is None else critique.strip()}
    changes = [{"field": f"scores.{c}", "before": model.scores.get(c), "after": s}
               for c, s in new_scores.items() if s != model.scores.get(c)]
    changes += [{"field": k, "before": getattr(model, k), "after": v}
                for k, v in after.items() if v != getattr(model, k)]
    if not after["critique"]:
        raise BadJudgment("judgment.critique: empty; say what should change (it becomes the writer's reflection)")
    j = Judgment(scores=new_scores, overall=after["overall"], critique=after["critique"], judge="human",
                 parsed=True, scale=model.scale, model_judgment=model.to_dict(), changes=tuple(changes), note=note,
                 annotator=_who(annotator))
    validate(j)
    return j


# ---- the model judge ----------------------------------------------------------------------------

_SCORE_LINE = re.compile(r"^\W*(?:item|criterion|#)?\s*(\d{1,2})\s*[:.)\-]\s*(.*)$", re.I)
# a "-" right before a digit is a minus sign ("Overall: -3" is -3, off the scale, not 3); before a space, a separator
_OVERALL = re.compile(r"overall(?:\s+score)?\**\s*(?:[:=]|-(?=\s))?\s*\**\s*(-?\d+(?:\.\d+)?)", re.I)
_OVERALL_WORD = re.compile(r"^\W*overall(?:\s+score)?\**\s*[:=]", re.I | re.M)  # a labelled overall line
_CRITIQUE = re.compile(r"critique\**\s*[:\-]\s*(.+)", re.I | re.S)


def _score_in(text: str, low: float, high: float) -> float | None:
    """The score in the rest of a line: 'n/high' first, else the first number on the scale."""
    m = re.search(r"(-?\d+(?:\.\d+)?)\s*/\s*\d+", text)
    nums = [m.group(1)] if m else re.findall(r"(?<![\w.\-])(-?\d+(?:\.\d+)?)(?![\w.])", text)
    for n in nums:
        x = float(n)
        if low <= x <= high:
            return _num(x)
    return None


def parse_judgment(raw: str, rubric: Sequence[str], cfg: JudgeConfig = JudgeConfig()) -> tuple[dict | None, str]:
    """({scores, overall, critique}, "") if the reply can be read, else (None, why not).

    Accepts a JSON object ({"scores": [..] or {..}, "overall": n, "critique": ".."}) or the
    line format of the prompt. A missing overall is the mean of the criterion scores when every
    criterion has one; a critique is required (it is what the writer acts on)."""
    low, high = cfg.low, cfg.high
    got = _parse_json(raw, rubric, low, high)
    if got is not None and "error" in got:
        return None, got["error"]
    if got is None:
        scores: dict = {c: None for c in rubric}
        body = raw.split("Overall", 1)[0] if "overall" in raw.lower() else raw.split("Critique", 1)[0]
        for line in body.splitlines():
            m = _SCORE_LINE.match(line)
            if m and 1 <= int(m.group(1)) <= len(rubric):
                s = _score_in(m.group(2), low, high)
                if s is not None and scores[rubric[int(m.group(1)) - 1]] is None:
                    scores[rubric[int(m.group(1)) - 1]] = s
        m = _OVERALL.search(raw)
        overall = _num(float(m.group(1))) if m else None
        if overall is not None and not low <= overall <= high:
            return None, f"the overall score {overall} is not on the {low:g}-{high:g} scale"
        if overall is None and _OVERALL_WORD.search(raw):  # an overall line without a readable number
            return None, "an overall score that is not a number on the scale; not replaced by the criteria's mean"
        c = _CRITIQUE.search(raw)
        critique = c.group(1).strip() if c else ""
        got = {"scores": scores, "overall": overall, "critique": critique}
    if got["overall"] is None:
        vals = list(got["scores"].values())
        if vals and all(v is not None for v in vals):
            got["overall"] = _num(round(sum(vals) / len(vals), 2))
        else:
            return None, "no overall score (and not every criterion scored)"
    got["critique"] = re.sub(r"\s+", " ", got["critique"]).strip()
    if len(re.findall(r"[A-Za-z]{2,}", got["critique"])) < 3:
        return None, "no critique (a 'Critique:' with at least a few words)"
    return got, ""


def _parse_json(raw: str, rubric, low, high) -> dict | None:
    m = re.search(r"\{.*\}", raw, re.S)
    if not m:
        return None
    try:
        d = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(d, dict) or "overall" not in d:
        return None
    ok = lambda x: _num(float(x)) if _on_scale(x, low, high) else None  # noqa: E731
    scores = {c: None for c in rubric}
    s = d.get("scores")
    if isinstance(s, list):
        for c, x in zip(rubric, s):
            scores[c] = ok(x)
    elif isinstance(s, dict):
        for i, c in enumerate(rubric):
            scores[c] = ok(s.get(c, s.get(str(i + 1))))
    crit = d.get("critique")
    if d.get("overall") is not None and ok(d.get("overall")) is None:  # off the scale: not the criteria's mean
        return {"error": f"the overall score {d.get('overall')!r} is not on the {low:g}-{high:g} scale"}
    return {"scores": scores, "overall": ok(d.get("overall")), "critique": crit if isinstance(crit, str) else ""}


def judge_messages(query: str, text: str, rubric: Sequence[str], cfg: JudgeConfig) -> list[dict]:
    criteria = "\n".join(f"{i}. {c}" for i, c in enumerate(rubric, 1))
    example = "\n".join(f"{i}: <score>" for i in range(1, len(rubric) + 1))
    prompt = render("r2_judge", task=query.strip(), text=text[:cfg.max_text_chars], criteria=criteria,
                    format_example=example, low=f"{cfg.low:g}", high=f"{cfg.high:g}")
    return [{"role": "user", "content": prompt}]


def model_judge(lm: LM, query: str, text: str, rubric: Sequence[str], cfg: JudgeConfig = JudgeConfig(),
                seed: int | None = 0) -> Judgment:
    """The model's judgment of `text`; unreadable replies are retried, then kept unparsed.

    The reply is prefilled with "1:" so even a small model starts in the asked format. Model
    errors (core.models.lm.LMError) pass through: they are the caller's to report."""
    if cfg.method not in ("generate", "logprob", "auto"):
        raise BadJudgment(f"JudgeConfig.method: {cfg.method!r}; use generate, logprob or auto")
    rubric = tuple(rubric)
    if cfg.method == "logprob":
        return logprob_judge(lm, query, text, rubric, cfg, seed)
    messages = judge_messages(query, text, rubric, cfg)
    prefix = "1:"
    raws, why = [], ""
    for attempt in range(1 + cfg.retries):
        msgs = messages if attempt == 0 else messages + [
            {"role": "assistant", "content": raws[-1]},
            {"role": "user", "content": template("r2_judge_retry").format(low=f"{cfg.low:g}", high=f"{cfg.high:g}")}]
        gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                               n=1, seed=None if seed is None else seed + 7919 * attempt)
        raw = prefix + lm.generate(msgs, gen, prefix=prefix)[0]
        raws.append(raw)
        got, why = parse_judgment(raw, rubric, cfg)
        if got is not None:
            return Judgment(scores=got["scores"], overall=got["overall"], critique=got["critique"], judge="model",
                            parsed=True, raw="\n\n-----\n\n".join(raws), scale=(cfg.low, cfg.high),
                            attempts=len(raws))
    raw = "\n\n-----\n\n".join(raws)
    if cfg.method == "auto":
        j = logprob_judge(lm, query, text, rubric, cfg, seed)
        return Judgment(**{**j.__dict__, "raw": raw, "attempts": len(raws),
                           "error": f"replies unreadable ({why}); scored by log-probs instead"})
    return Judgment(scores={c: None for c in rubric}, overall=None, critique="", judge="model", parsed=False,
                    raw=raw, scale=(cfg.low, cfg.high), attempts=len(raws), error=why)


def score_options(cfg: JudgeConfig) -> list[int]:
    """The whole-number scores a log-prob judge weighs (low..high)."""
    return list(range(math.ceil(cfg.low), math.floor(cfg.high) + 1))


def expected_score(logprobs: Sequence[float], options: Sequence[int], cfg: JudgeConfig) -> float:
    """The probability-weighted mean of the options (their log-probs normalised over the options
    alone), clipped to the scale and rounded to 2 decimals."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    expected = sum(w * o for w, o in zip(weights, options)) / sum(weights)
    return round(min(max(expected, cfg.low), cfg.high), 2)


def logprob_judge(lm: LM, query: str, text: str, rubric: Sequence[str], cfg: JudgeConfig = JudgeConfig(),
                  seed: int | None = 0) -> Judgment:
    """Scores read from the judge's log-probs, critique written alone (see the module docstring).

    Each criterion is asked on its own; the reply is prefilled up to the number and every
    option "s/high" is scored as a continuation (distinct strings, so "1/10" never counts
    towards "10/10"); the score is the probability-weighted mean of the options."""
    from core.models.optionscore import option_logprobs

    rubric = tuple(rubric)
    options = score_options(cfg)
    high = f"{cfg.high:g}"
    contexts = []
    for crit in rubric:
        prompt = render("r2_judge_one", task=query.strip(), text=text[:cfg.max_text_chars], criterion=crit,
                        low=f"{cfg.low:g}", high=high)
        contexts.append(lm.chat_text([{"role": "user", "content": prompt}], add_generation_prompt=True))
    # every criterion's prompt shares the task and the text: option_logprobs computes that head once,
    # each criterion's tail once and its options as one batch (the same numbers as lm.loglikelihood)
    table = option_logprobs(lm, contexts, [f"{o}/{high}" for o in options])
    scores = {crit: expected_score(lps, options, cfg) for crit, lps in zip(rubric, table)}
    overall = round(sum(scores.values()) / len(scores), 2) if scores else None
    msg = [{"role": "user", "content": render("r2_critique", task=query.strip(), text=text[:cfg.max_text_chars])}]
    gen = GenerationConfig(max_new_tokens=cfg.critique_max_new_tokens, temperature=cfg.temperature,
                           top_p=cfg.top_p, n=1, seed=None if seed is None else seed + 104_723)
    critique = lm.generate(msg, gen)[0].strip()
    return Judgment(scores=scores, overall=overall, critique=critique, judge="model", parsed=overall is not None,
                    scale=(cfg.low, cfg.high), attempts=0, method="logprob")
