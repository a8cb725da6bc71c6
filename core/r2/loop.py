"""The R2 writer-judge loop (docs/design.md, "R2, precisely") as a generator of typed events.

The writer plans and drafts; the judge (a model, a person, or a model a person may overrule)
scores the current draft against the rubric and critiques it; the writer restates the
critique as its own first-person reflection (sentences that name a judge, a critique or a
score are dropped) and revises; the revision is judged and the round closes with its process
reward (core.r2.reward). The loop ends when the overall score reaches `threshold`, after
`max_rounds`, or (by setting) after a revision that does not improve; a revision judged worse
than its draft can be discarded (the next round revises the earlier draft again).

People judge through events, so it works across processes and page reloads: in judge mode
"human" or "model_then_human" (and in "model" mode when `Controls.pause()` asks for it) the
loop emits `JudgmentRequested` (with the model's proposal when there is one) and `RunPaused`,
and returns. The caller stores the person's judgment as a `JudgmentGiven` event
(core.r2.jobs.submit_judgment) and runs the loop again with the run's history: the state is
rebuilt from the events (core.r2.state) and the loop continues. A caller holding the
generator can instead queue a judgment on `Controls` (used at the next judgment point).
Every model call has a seed fixed by (seed, round, stage) (core.runs.seeds.step_seed): a
resumed run redoes a half-done step exactly.

While it works the loop reports TRANSIENT progress (core.runs.progress.ProgressMeter, to
`controls.report`): the phase ("planning", "drafting", "judging the first draft", "reflecting
(round 1/2)", "revising (round 1/2)"), the text as it is written, elapsed time and a measured
estimate. Nothing of it is yielded or stored.

`run_r2` is the non-streaming twin. Knows nothing of storage (core.r2.jobs saves each event)
or of Gradio. REER's search module is its mirror.
"""
from __future__ import annotations

import contextlib
import re
from typing import Callable, ContextManager, Iterator, Sequence

from core import events as ev
from core.format import assistant_turn
from core.models.ct2 import (
    engines_of,  # which engine generated and which scored, for the record
)
from core.models.lm import (
    FINISH_LENGTH,
    LM,
    GenerationConfig,
    GenerationStopped,
    LMError,
    details,
)
from core.prompts import render
from core.r2.config import R2Config
from core.r2.judge import Judgment, model_judge, rubric_for
from core.r2.reward import process_reward
from core.r2.state import R2State, assemble_thinking, record_from_events
from core.runs.controls import ControlsBase
from core.runs.engine import consume
from core.runs.progress import ProgressMeter
from core.runs.seeds import step_seed

REFLECTION_OPENING = "Rereading my draft,"
NO_CRITIQUE = "(none given: reread the draft against the task and find its weakest points)"
# words that give away an outside judge; a reflection sentence holding one is dropped
JUDGE_WORDS = re.compile(r"\b(judges?|judged|reviewers?|graders?|grade[sd]?|grading|critiques?|critic|feedback|"
                         r"checklists?|rubric|scored?|scores|rating|rated|the notes|these notes|evaluator)\b", re.I)


class Controls(ControlsBase):
    """R2's steering (core.runs.controls.ControlsBase: stop and the command queue): judgments to use
    at the next judgment points, and a pause there so a person can judge. Thread-safe."""

    def __init__(self) -> None:
        super().__init__()
        self._hold = False

    def supply_judgment(self, judgment: Judgment) -> None:
        """Use this judgment (a person's, or an override) at the next judgment point."""
        self._queue("judgment", judgment)

    def pause(self) -> None:
        """Pause at the next judgment point, even in "model" mode, so a person can judge or override."""
        with self._lock:
            self._hold = True

    hold = pause

    def pause_asked(self) -> bool:
        with self._lock:
            return self._hold

    # ---- read by the loop ----
    def take_judgment(self) -> Judgment | None:
        cmd = self.take(("judgment",))
        return cmd[1] if cmd else None

    def take_hold(self) -> bool:
        with self._lock:
            held, self._hold = self._hold, False
            return held


def _gen(cfg: R2Config, max_new_tokens: int, seed: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, n=1,
                            seed=seed)


def _clean(text: str) -> str:
    text = re.sub(r"</?(think|plan|draft)>", "", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _round_tokens(cfg: R2Config) -> int:
    """Token budgets of one whole round: reflection, revision and (a model's) judgment of it."""
    return cfg.reflection_max_new_tokens + cfg.revision_max_new_tokens + _judge_tokens(cfg)


def _judge_tokens(cfg: R2Config) -> int:
    """The judge's token budget when a model judges (a person writes no tokens)."""
    return cfg.judge.max_new_tokens if cfg.judge_mode != "human" else 0


def _watch(meter: ProgressMeter | None, words: str, stage: str, budget: int, later_tokens: int) -> ContextManager:
    """The meter watching one generation (nothing when there is no meter)."""
    return meter.generating(words, stage, budget, later_tokens=later_tokens) if meter else contextlib.nullcontext()


def write_draft(lm: LM, query: str, cfg: R2Config, meter: ProgressMeter | None = None) -> tuple[str, str, str]:
    """(plan, draft, raw) for the task; the plan is "" when planning is off. `meter`: reports progress."""
    plan, raws = "", []
    rest = _judge_tokens(cfg) + cfg.max_rounds * _round_tokens(cfg)  # what comes after the draft, at most
    if cfg.plan:
        with _watch(meter, "planning", "plan", cfg.plan_max_new_tokens, cfg.draft_max_new_tokens + rest):
            raw = lm.generate([{"role": "user", "content": render("r2_plan", task=query.strip())}],
                              _gen(cfg, cfg.plan_max_new_tokens, step_seed(cfg.seed, 0, 1)))[0]
        raws.append(raw)
        plan = _clean(raw)
    block = f"My plan:\n{plan}\n\n" if plan else ""
    with _watch(meter, "drafting", "draft", cfg.draft_max_new_tokens, rest):
        raw = lm.generate([{"role": "user", "content": render("r2_draft", task=query.strip(), plan_block=block)}],
                          _gen(cfg, cfg.draft_max_new_tokens, step_seed(cfg.seed, 0, 2)))[0]
    raws.append(raw)
    return plan, _clean(raw), "\n\n-----\n\n".join(raws)


def own_voice(text: str) -> tuple[str, tuple[str, ...]]:
    """(the reflection without sentences naming a judge, critique or score; the dropped sentences)."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]
    kept = [s for s in sentences if not JUDGE_WORDS.search(s)]
    dropped = tuple(s for s in sentences if JUDGE_WORDS.search(s))
    return " ".join(kept).strip(), dropped


def reflect(lm: LM, query: str, draft: str, critique: str, cfg: R2Config, round_: int) -> tuple[str, str, tuple]:
    """(reflection, raw, dropped sentences): the critique restated as the writer's own thought."""
    prompt = render("r2_reflect", task=query.strip(), draft=draft[:cfg.max_text_chars],
                    critique=critique.strip() or NO_CRITIQUE)
    raw = lm.generate([{"role": "user", "content": prompt}],
                      _gen(cfg, cfg.reflection_max_new_tokens, step_seed(cfg.seed, round_, 3)),
                      prefix=REFLECTION_OPENING)[0]
    body = _clean(raw)
    if raw.finish_reason == FINISH_LENGTH:  # cut by the budget: end at a full sentence
        ends = [m.end() for m in re.finditer(r"[.!?][\"')\]]?(\s|$)", body)]
        body = body[:ends[-1]] if ends else body
    text, dropped = own_voice(f"{REFLECTION_OPENING} {body.strip()}")
    if text == REFLECTION_OPENING or len(text.split()) < 5:  # everything named the judge: keep the opening honest
        text = f"{REFLECTION_OPENING} I can see it does not yet do what the task asks as well as it should."
    return text, REFLECTION_OPENING + raw, dropped


def revise(lm: LM, query: str, draft: str, reflection: str, cfg: R2Config, round_: int) -> tuple[str, str]:
    prompt = render("r2_revise", task=query.strip(), draft=draft[:cfg.max_text_chars], reflection=reflection)
    raw = lm.generate([{"role": "user", "content": prompt}],
                      _gen(cfg, cfg.revision_max_new_tokens, step_seed(cfg.seed, round_, 4)))[0]
    return _clean(raw), raw


def r2_loop(writer: LM, judge: LM | None, run_id: str, item_id: str, query: str,
            rubric: Sequence[str] | None = None, cfg: R2Config = R2Config(), controls: Controls | None = None,
            history: Sequence[ev.Event] = ()) -> Iterator[ev.Event]:
    """The loop as events (module docstring). `judge` may be None only when people judge;
    `history`: this run's earlier events, to resume."""
    controls = controls or Controls()
    state = R2State.from_events(history)
    if state.finished:
        return
    if judge is None and cfg.judge_mode != "human":
        raise ValueError(f"judge_mode {cfg.judge_mode!r} needs a judge model; pass one or use judge_mode='human'")
    rubric = tuple(state.started.rubric) if state.started else rubric_for(rubric, cfg.judge)
    meter = ProgressMeter(run_id, controls.report, offset_s=state.active_seconds())
    R = cfg.max_rounds

    def emit(event):
        state.apply(event)
        return event

    try:
        if state.started is None:
            engines = {"writer": engines_of(writer), "judge": engines_of(judge) if judge is not None else None}
            yield emit(ev.R2Started(run_id, item_id=item_id, query=query, rubric=rubric,
                                    settings={**cfg.as_dict(), "engines": engines},
                                    writer=writer.name,
                                    judge=judge.name if judge is not None else "",
                                    servers={k: d for k, d in (("writer", details(writer)),
                                                               ("judge", details(judge) if judge else {})) if d}))
        if state.drafted is None:
            plan, draft, raw = write_draft(writer, query, cfg, meter)
            yield emit(ev.R2Drafted(run_id, plan=plan, draft=draft, raw=raw))
            if not draft:
                yield emit(_finish(state, run_id, "dropped", cfg))
                return
        while True:
            if controls.stopped():
                yield emit(_finish(state, run_id, "stopped", cfg))
                return
            cur = state.current
            if cur not in state.judgments:
                if not (yield from _judge(state, emit, judge, run_id, query, rubric, cfg, controls, cur, meter)):
                    return
                continue
            r = state.rounds_done + 1
            if r in state.texts:  # the revision of round r is written: judge it, then close the round
                if r not in state.judgments:
                    if not (yield from _judge(state, emit, judge, run_id, query, rubric, cfg, controls, r, meter)):
                        return
                    continue
                yield emit(_close_round(state, writer, run_id, r, cfg))
                continue
            reason = _stop_reason(state, cfg)
            if reason:
                yield emit(_finish(state, run_id, reason, cfg))
                return
            if r not in state.reflections:
                critique = state.judgments[cur].get("critique") or ""
                with meter.generating(f"reflecting (round {r}/{R})", "reflecting", cfg.reflection_max_new_tokens,
                                      later_tokens=cfg.revision_max_new_tokens + _judge_tokens(cfg)
                                      + (R - r) * _round_tokens(cfg)):
                    text, raw, dropped = reflect(writer, query, state.texts[cur], critique, cfg, r)
                yield emit(ev.Reflected(run_id, round=r, text=text, raw=raw, dropped=dropped))
            if cfg.review_reflections and state.reflections[r].by != "human":  # a person edits or approves it first
                if not isinstance(state.last, ev.RunPaused):
                    yield emit(ev.RunPaused(run_id, by="human"))
                return
            with meter.generating(f"revising (round {r}/{R})", "revising", cfg.revision_max_new_tokens,
                                  later_tokens=_judge_tokens(cfg) + (R - r) * _round_tokens(cfg)):
                text, raw = revise(writer, query, state.texts[cur], state.reflections[r].text, cfg, r)
            yield emit(ev.Revised(run_id, round=r, text=text, raw=raw))
    except GenerationStopped:  # a Stop cut a generation short (core.models.lm.stop_when): nothing half-written is kept
        yield emit(_finish(state, run_id, "stopped", cfg))
    except LMError as exc:
        yield emit(ev.RunError(run_id, message=str(exc), where="model"))


def _judge(state: R2State, emit, judge, run_id, query, rubric, cfg: R2Config, controls: Controls, version: int,
           meter: ProgressMeter | None = None):
    """Judge `version`; returns True when a judgment was recorded, False when the run now waits for one."""
    what = "the first draft" if version == 0 else f"revision {version}"
    watch = _watch(meter, f"judging {what}", "judging", cfg.judge.max_new_tokens,
                   (cfg.max_rounds - version) * _round_tokens(cfg))
    given = controls.take_judgment()
    if given is not None:
        yield emit(ev.JudgmentGiven(run_id, version=version, judgment=given.to_dict()))
        return True
    if version in state.requests:  # asked before (maybe in another process): only a person's answer will do
        if not isinstance(state.last, ev.RunPaused):
            yield emit(ev.RunPaused(run_id, by="human"))
        return False
    text = state.texts[version]
    held = controls.take_hold()
    if cfg.judge_mode == "model" and not held:
        with watch:
            j = model_judge(judge, query, text, rubric, cfg.judge, seed=step_seed(cfg.seed, version, 5))
        yield emit(ev.JudgmentGiven(run_id, version=version, judgment=j.to_dict()))
        return True
    proposed = None
    if cfg.judge_mode != "human" and judge is not None:
        with watch:
            proposed = model_judge(judge, query, text, rubric, cfg.judge,
                                   seed=step_seed(cfg.seed, version, 5)).to_dict()
    yield emit(ev.JudgmentRequested(run_id, version=version, text=text, proposed=proposed))
    yield emit(ev.RunPaused(run_id, by="human"))
    return False


def _close_round(state: R2State, writer: LM, run_id: str, r: int, cfg: R2Config) -> ev.RoundFinished:
    before = state.judgments[state.current].get("overall")
    after = state.judgments[r].get("overall")
    worse = before is not None and after is not None and after < before
    kept = not (cfg.discard_worse and worse)
    earlier = [state.reflections[k].text for k in sorted(state.reflections) if k < r]
    addressed = [state.reflections[k].text for k in sorted(state.rounds) if k < r and state.rounds[k].kept]
    text = state.reflections[r].text
    scale = (cfg.judge.low, cfg.judge.high)
    reward = process_reward(text, writer.count_tokens(text), before, after, earlier, addressed, scale, cfg.reward)
    return ev.RoundFinished(run_id, round=r, before=before, after=after, kept=kept, reward=reward)


def _stop_reason(state: R2State, cfg: R2Config) -> str | None:
    overall = state.judgments[state.current].get("overall")
    if overall is not None and overall >= cfg.threshold:
        return "threshold"
    if state.rounds_done >= cfg.max_rounds:
        return "max_rounds"
    last = state.rounds.get(state.rounds_done)
    if cfg.stop_when_no_improvement and last and last.before is not None and last.after is not None \
            and last.after <= last.before:
        return "no_improvement"
    return None


def _finish(state: R2State, run_id: str, reason: str, cfg: R2Config) -> ev.R2Finished:
    final = state.current if state.texts else 0
    kept = {r: e.kept for r, e in state.rounds.items()}
    thinking = assemble_thinking(state.drafted.plan if state.drafted else "", state.texts,
                                 {r: e.text for r, e in state.reflections.items()}, kept, final,
                                 cfg.keep_drafts, cfg.excerpt_chars)
    j = state.judgments.get(final) or {}
    return ev.R2Finished(run_id, reason=reason, final=state.texts.get(final, ""), final_version=final,
                         thinking=thinking, overall=j.get("overall"), seconds=state.active_seconds())


def run_r2(writer: LM, judge: LM | None, run_id: str, item_id: str, query: str,
           rubric: Sequence[str] | None = None, cfg: R2Config = R2Config(), controls: Controls | None = None,
           on_event: Callable[[ev.Event], None] | None = None, history: Sequence[ev.Event] = ()) -> dict:
    """The non-streaming twin: run (or resume) until it finishes or waits for a person; the record."""
    return consume(r2_loop(writer, judge, run_id, item_id, query, rubric, cfg, controls, history), history,
                   record_from_events, on_event)


def with_think(record: dict) -> str:
    """The assistant turn of a record (core.format): the trajectory inside <think>, then the final draft."""
    return assistant_turn(record["thinking"], record["final"])
