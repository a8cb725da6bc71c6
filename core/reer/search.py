"""The REER search (docs/design.md, "REER, precisely") as a generator of typed events.

Two models may share the work, as in the authors' code: `lm` writes (the draft and the rewrites)
and `scorer` (default: `lm`) scores every (x, z, y): the draft, each candidate, a person's edit,
so the stop threshold and every decision are the scorer's. Texts pass between them as text;
each tokenizes with its own tokenizer. The quality filters count tokens with the writer's.

Given a query x and a good answer y, write an initial thinking z0, then visit its segments
left to right: sample K rewrites of the segment, score y given x and each recomposed z, and
keep the best only if it beats the current score (greedy hill-climbing). Stop below the
threshold, or when steps or segments run out. Every step is an event (`core.events`).

Steering (`Controls`, on core.runs.controls.ControlsBase): between events a caller can pause,
step one expansion, replace a segment with its own text (rescored at once), force a candidate,
skip a segment, or stop. A person's force, edit or skip names what they saw (core.runs.controls.Shown:
run, step, segment, candidate, which writing of the candidates, a hash of the text); the search
refuses one whose object is no longer the one waiting, with a non-fatal `RunError` in words
(where "force", "skip" or "edit") and, for a force or a skip, a pause, so nothing is decided for
the person on what they did not see. An edit while candidates wait makes them stale (they were
scored against the old text): they are never decided on, and Run or Step writes the step's
candidates again, under a new step number. Every decision (an expansion's, an edit, a force, a
skip) has a step number of its own (core.reer.state: numbers only grow); the step budget, the
segment visited and the seed go by expansions. A pause ends the generator with `RunPaused`;
calling `reer_search` again with the run's history (from the store) continues where it left off,
as does resuming after a crash: the state is rebuilt from the events (`core.reer.state`), a
half-done step is redone under its number with the same seed (core.runs.seeds.step_seed), and
a step whose candidates were all scored is decided without regenerating.

While it works the search reports TRANSIENT progress (core.runs.progress.ProgressMeter, to
`controls.report`): the phase ("drafting", "candidates 1-2 of segment 3 (step 2/4)", "scoring"),
the draft and candidates as they are written, elapsed time and a measured estimate. Nothing of it
is yielded or stored; the events and the record are the same with or without a watcher.

`run_reer` is the non-streaming twin: it consumes the events and returns the record.
Knows nothing of storage (core.reer.jobs saves each event) or of Gradio. R2's loop module is its mirror.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterator, Sequence

from core import events as ev
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
from core.models.scoring import score, score_candidates, scoring_precision
from core.prompts import (
    END_MARK,
    START_MARK,
    PromptSet,
    mark_lines,
    normalise_marks,
    prompt_set,
    render,
    static_head,
    template,
)
from core.quality import check, leftovers, single_segment, too_short
from core.reer.config import ReerConfig
from core.reer.state import ReerState, record_from_events
from core.runs.controls import ControlsBase, Shown, text_hash
from core.runs.engine import consume
from core.runs.progress import ProgressMeter
from core.runs.seeds import step_seed
from core.segments import answer_part, join_segments, split_segments

REWRITE_OPEN, REWRITE_CLOSE = "<rewrite>", "</rewrite>"
EASY_TOKENS = 80  # an answer shorter than this (a couplet, a slogan) is "easy": no draft section is forced
DRAFT_RESERVE = 3  # a drafting set keeps 1/DRAFT_RESERVE of the draft budget for the draft section


class Controls(ControlsBase):
    """REER's steering (core.runs.controls.ControlsBase: stop and the command queue): pause, step a
    few expansions, edit a segment, force a candidate, skip a segment. Thread-safe."""

    def __init__(self) -> None:
        super().__init__()
        self._pause = False
        self._steps_left: int | None = None  # None: run freely; n: pause after n more expansions
        self._editing: int | None = None  # the segment of an edit asked and not yet scored

    def pause(self) -> None:
        """Pause before the next expansion (or before the decision of the step under way)."""
        with self._lock:
            self._pause = True

    def resume(self) -> None:
        with self._lock:
            self._pause, self._steps_left = False, None

    def step(self, n: int = 1) -> None:
        """Run n more expansions, then pause."""
        with self._lock:
            self._pause, self._steps_left = False, n

    def edit(self, segment: int, text: str, annotator: str | None = None, shown: Shown | None = None) -> None:
        """Replace a segment with a person's text; it is rescored at once. `annotator`: who (default:
        core.annotators's current person, read now, in the caller's thread). `shown`: the
        segment as the person saw it (its text_hash); the edit is refused if the segment changed since."""
        with self._lock:
            self._editing = segment
        self._queue("edit", segment, text, shown, self.person(annotator))

    def editing(self) -> int | None:
        """The segment of an edit asked and not yet scored (None: none), so a page marks the
        candidates it makes stale at once."""
        with self._lock:
            return self._editing

    def force(self, candidate: int, annotator: str | None = None, shown: Shown | None = None) -> None:
        """Accept this candidate of the step awaiting its decision, whatever its score. `shown`: the
        candidate as the person saw it; refused (never applied to another) unless it still waits.
        None: whichever candidate of that number waits when the force is taken (scripts only)."""
        self._queue("force", candidate, shown, self.person(annotator))

    def skip(self, annotator: str | None = None, shown: Shown | None = None) -> None:
        """Leave the current (or next) segment as it is and move on. `shown`: the step and segment the
        person saw; refused if the run has moved to another."""
        self._queue("skip", shown, self.person(annotator))

    def pause_asked(self) -> bool:
        with self._lock:
            return self._pause

    def edits_done(self) -> None:
        """The search has scored (or refused) every edit queued: none is being scored now."""
        with self._lock:
            if not any(c[0] == "edit" for c in self._commands):
                self._editing = None

    # ---- read by the search ----
    def should_pause(self) -> bool:
        with self._lock:
            return self._pause or self._steps_left == 0

    def expanded(self) -> None:
        with self._lock:
            if self._steps_left:
                self._steps_left -= 1


def parse_rewrite(raw: str, prefix: str, stopped: bool) -> tuple[str | None, str | None]:
    """The rewrite in a generation (prefix + raw); (text, None) or (None, why it failed)."""
    full = prefix + raw
    if REWRITE_OPEN not in full:
        return None, "no <rewrite> tag in the output"
    body = full.split(REWRITE_OPEN, 1)[1]
    if REWRITE_CLOSE in body:
        body = body.split(REWRITE_CLOSE, 1)[0]
    elif not stopped:
        ends = [m.end() for m in re.finditer(r"[.!?…][\"')\]]?(\s|$)", body)]
        if not ends:
            return None, "the rewrite was cut off by the token budget before a sentence ended"
        body = body[:ends[-1]]
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]", body):
        return None, "the rewrite contains control characters (garbled output)"
    if REWRITE_OPEN not in raw and len(re.findall(r"\w+", raw.split(REWRITE_CLOSE, 1)[0])) < 3:
        return None, "the rewrite adds nothing after its prefilled opening words"
    body = re.sub(r"</?(analysis|rewrite|think)>", "", body)
    body = re.sub(r"\n\s*\n+", "\n", body.strip())  # one segment stays one segment
    if len(body) < 20:
        return None, "the rewrite is empty or too short"
    return body, None


def force_refused(shown: Shown | None, state: ReerState, run_id: str, step: int, segment: int, candidate: int,
                  pending: dict | None) -> str | None:
    """Why a force of `candidate` must be refused, in words for the page; None: apply it. `pending`:
    the step's waiting candidates {index: (text, score)} (None: none wait)."""
    head = f"Accept candidate #{candidate + 1} refused, nothing was decided: "
    if shown is not None and shown.run_id != run_id:
        return head + f"it was for run {shown.run_id[:8]}, not run {run_id[:8]}."
    if not pending:
        return head + ("the candidates you saw no longer wait (an edit made them stale, or their step was "
                       "decided). Look at the page again: Run or Step writes new candidates.")
    attempt = state.attempt(step)
    if shown is not None and (shown.step, shown.segment, shown.attempt) != (step, segment, attempt):
        again = " (written again)" if attempt > 1 else ""
        return head + (f"you saw the candidates of step {shown.step}, segment {shown.segment + 1}; the ones waiting "
                       f"now are step {step}'s, segment {segment + 1}{again}. Look at them and decide again.")
    if candidate not in pending:
        have = ", ".join(f"#{k + 1}" for k in sorted(pending))
        return head + f"the waiting candidates are {have}."
    if shown is not None and (shown.index != candidate
                              or (shown.text_hash and shown.text_hash != text_hash(pending[candidate][0]))):
        return head + f"candidate #{candidate + 1} waiting now is not the text you saw. Look at it and decide again."
    return None


def skip_refused(shown: Shown | None, state: ReerState, run_id: str, step: int, segment: int) -> str | None:
    """Why a skip must be refused (the run moved past the segment the person saw); None: apply it."""
    if shown is None:
        return None
    if (shown.run_id, shown.step, shown.segment) != (run_id, step, segment) or (
            shown.text_hash and shown.text_hash != text_hash(state.segments[segment])):
        return (f"Skip refused, nothing was decided: you saw step {shown.step}, segment {shown.segment + 1}; the run "
                f"is now at step {step}, segment {segment + 1}. Look at the page and decide again.")
    return None


def top_k(cfg: ReerConfig) -> int | None:
    """The generation's top_k: None (-1 in the settings) leaves each backend its own default."""
    return None if cfg.top_k < 0 else cfg.top_k


def draft_config(cfg: ReerConfig) -> GenerationConfig:
    """How the initial monologue z0 is sampled."""
    return GenerationConfig(max_new_tokens=cfg.draft_max_new_tokens, temperature=cfg.temperature,
                            top_p=cfg.top_p, top_k=top_k(cfg), n=1, seed=cfg.seed, stop=("</think>",),
                            no_repeat_ngram=cfg.no_repeat_ngram)


def _clean(raw: str) -> str:
    return re.sub(r"</?think>", "", raw).strip()


def draft_thinking(lm: LM, query: str, answer: str, cfg: ReerConfig) -> tuple[str, str]:
    """(thinking, raw output) of the initial monologue z0, in the run's prompt set.

    A set that drafts (deepwriter) asks for a draft section after a mark line. So that any model
    drafts, the monologue gets at most 1 - 1/DRAFT_RESERVE of the budget; when it ends without the
    mark line (a small model rarely writes it), its last full sentence is kept, the mark line is
    added and the model continues from there (a prefill) with the rest of the budget. A model that
    wrote the mark and ran out of budget continues the same way. An answer under EASY_TOKENS tokens
    is an easy task: one call with the whole budget, and the model's own choice (draft or not) stands."""
    ps = prompt_set(cfg.prompts, query)
    mark, end_mark = ps.marks
    msg = [{"role": "user", "content": render(ps.draft, task=query, answer=answer[:cfg.max_answer_chars],
                                              mark=mark, end_mark=end_mark)}]
    gen = dataclasses.replace(draft_config(cfg), static=msg[0]["content"])  # a continuation repeats it all
    if not ps.drafts or lm.count_tokens(answer) < EASY_TOKENS:
        raw = lm.generate(msg, gen)[0]
        return _clean(raw), raw
    reserve = max(1, cfg.draft_max_new_tokens // DRAFT_RESERVE)
    first = lm.generate(msg, dataclasses.replace(gen, max_new_tokens=max(1, gen.max_new_tokens - reserve)))[0]
    cut = first.finish_reason == FINISH_LENGTH
    marked = START_MARK.search(_clean(first)) is not None
    if marked and not cut:
        return _clean(first), first
    if marked:
        prefix = str(first)
    else:
        body = re.split(r"</think>", str(first))[0].rstrip()
        ends = [m.end() for m in re.finditer(r"[.!?…。！？][\"'”’)\]]?(?=\s|$)", body)] if cut else []
        prefix = (body[:ends[-1]] if ends else body).rstrip() + "\n\n" + mark + "\n"
    more = lm.generate(msg, dataclasses.replace(gen, max_new_tokens=reserve), prefix=prefix)[0]
    raw = prefix + more
    return _clean(raw), raw


def thinking_segments(text: str, min_chars: int) -> list[str]:
    """The segments of a drafted thinking (core.segments.split_segments), with the draft section's
    mark lines spelled as ours and each leading a segment of its own (a rewrite keeps it)."""
    out = []
    for seg in split_segments(normalise_marks(text), min_chars):
        out += [p for p in _BEFORE_MARK.split(seg) if p.strip()]
    return out


_BEFORE_MARK = re.compile(r"\n+(?=(?:" + "|".join(re.escape(m) for m in mark_lines()) + r")$)", re.MULTILINE)


def leading_mark(segment: str) -> str:
    """The mark line a segment opens with ("" for none)."""
    first = segment.split("\n", 1)[0]
    return first if first in mark_lines() else ""


def in_draft(segments: Sequence[str], i: int) -> bool:
    """Whether segment i is inside the draft section (from the opening mark's segment to the closing one's)."""
    inside = False
    for seg in segments[:i + 1]:
        first = seg.split("\n", 1)[0]
        if START_MARK.fullmatch(first):
            inside = True
        elif END_MARK.fullmatch(first):
            inside = False
    return inside


def expand_prompt(ps: PromptSet, cfg: ReerConfig, query: str, answer: str, segments: Sequence[str], i: int) -> str:
    """The rewrite prompt for segment i in the run's prompt set."""
    drafting = in_draft(segments, i)
    fmt = ps.analysis if cfg.ask_analysis else ps.plain
    role = template(ps.role_draft if drafting else ps.role_thinking) if ps.role_thinking else ""
    return render(
        ps.expand, task=query, answer=answer[:cfg.max_answer_chars],
        before=join_segments(list(segments[:i])) or ps.first, segment=segments[i],
        after=join_segments(list(segments[i + 1:])) or ps.last, role=role,
        cues=template(ps.cues) if cfg.reflection_cues and not drafting else "", format=template(fmt),
    )


def expand_candidates(lm: LM, query: str, answer: str, segments: Sequence[str], i: int,
                      cfg: ReerConfig, step: int) -> list[tuple[str, str | None, str | None]]:
    """K (raw, text, error) rewrites of segment i, sampled in one batched call, seeded by `step` (the
    expansion's ordinal: 1 for the first expansion). A segment led by a draft mark line keeps it: the
    line is prefilled (and put back after an analysis)."""
    prompt = expand_prompt(prompt_set(cfg.prompts, query), cfg, query, answer, segments, i)
    lead = leading_mark(segments[i])
    rest = segments[i][len(lead):].strip() if lead else segments[i]
    prefix = "<analysis>\n" if cfg.ask_analysis else REWRITE_OPEN + "\n" + (lead + "\n" if lead else "")
    if not cfg.ask_analysis and cfg.keep_opening_words:
        words = rest.split()
        prefix += " ".join(words if cfg.keep_opening_words < 0 else words[:cfg.keep_opening_words])
    # the prompt's instructions, task and answer come before the thinking it quotes, so every step's
    # prompt opens with them: a backend keeps their keys/values (GenerationConfig.static)
    static = static_head(prompt_set(cfg.prompts, query).expand, task=query, answer=answer[:cfg.max_answer_chars])
    gen = GenerationConfig(max_new_tokens=cfg.candidate_max_new_tokens, temperature=cfg.temperature,
                           top_p=cfg.top_p, top_k=top_k(cfg), n=cfg.candidates, seed=step_seed(cfg.seed, step),
                           stop=(REWRITE_CLOSE,), no_repeat_ngram=cfg.no_repeat_ngram, static=static)
    raws = lm.generate([{"role": "user", "content": prompt}], gen, prefix=prefix)
    drafting = in_draft(segments, i)
    out = []
    for raw in raws:
        stopped = raw.finish_reason != FINISH_LENGTH  # ended by itself, not by the token budget
        text, err = parse_rewrite(raw, prefix, stopped)
        if text is not None and lead and not text.startswith(lead):
            text = lead + "\n" + text  # an analysis first: the mark line is not prefilled
        if text is not None and any(line.strip() in mark_lines() or START_MARK.fullmatch(line)
                                    or END_MARK.fullmatch(line) for line in text.split("\n")[1 if lead else 0:]):
            text, err = None, "the rewrite writes a draft mark line of its own"
        if text is not None and text.strip() == segments[i].strip():
            text, err = None, "the rewrite repeats the segment unchanged"
        if text is not None and (bad := leftovers(text, cfg.quality.disabled, raw.finish_reason,
                                                  openings=not drafting)):
            text, err = None, bad[0]  # core.quality: a marker, a leaked instruction or a cut ending
        out.append((prefix + raw, text, err))
    return out


def reer_search(lm: LM, run_id: str, item_id: str, query: str, reference: str,
                cfg: ReerConfig = ReerConfig(), controls: Controls | None = None,
                history: Sequence[ev.Event] = (), scorer: LM | None = None) -> Iterator[ev.Event]:
    """The search as events (module docstring). `history`: this run's earlier events, to resume.
    `lm` writes (draft, candidates); `scorer` scores every (x, z, y) (default: `lm` itself)."""
    controls = controls or Controls()
    sc = scorer if scorer is not None else lm
    answer = answer_part(reference)
    state = ReerState.from_events(history)
    if state.finished:
        return
    scfg = cfg.scoring()
    meter = ProgressMeter(run_id, controls.report, offset_s=state.active_seconds())
    try:
        if not state.started:
            yield ev.ReerStarted(run_id, item_id=item_id, query=query, reference=answer,
                                settings={**cfg.as_dict(), "engines": {"generate": engines_of(lm)["generate"],
                                                                       "score": engines_of(sc)["score"]},
                                          "scoring": dict(zip(("precision", "why"),
                                                              scoring_precision(sc, scfg.precision)))},
                                model=lm.name,
                                server=details(lm), scorer=sc.name,
                                scorer_server=details(sc) if sc is not lm else {})
        if state.segments is None:
            steps = cfg.max_steps
            with meter.generating("drafting the first thinking", "draft", cfg.draft_max_new_tokens,
                                  later_tokens=steps * cfg.candidate_max_new_tokens, later_scorings=steps):
                text, raw = draft_thinking(lm, query, answer, cfg)
            segs = thinking_segments(text, cfg.min_segment_chars)
            if not segs:
                yield _finish(lm, state, run_id, "dropped", [], {}, answer, cfg, ["the draft is empty"])
                return
            steps = _steps_left(state, cfg, len(segs))
            meter.phase("scoring the draft", "scoring", later_tokens=steps * cfg.candidate_max_new_tokens,
                        later_scorings=steps)
            s = score(sc, query, segs, answer, scfg).as_dict()
            event = ev.InitialDraft(run_id, thinking=join_segments(segs), segments=tuple(segs), score=s, raw=raw)
            state.apply(event)
            yield event
            early = too_short(join_segments(segs), cfg.quality.min_tokens, lm.count_tokens) + single_segment(segs)
            if early:  # DESIGN step 2: such drafts are dropped, not searched
                yield _finish(lm, state, run_id, "dropped", segs, s, answer, cfg, early)
                return
        yield from _expand_loop(lm, sc, run_id, query, answer, cfg, scfg, controls, state, meter)
    except GenerationStopped:  # a Stop cut a generation short (core.models.lm.stop_when): nothing half-written is kept
        yield _finish(lm, state, run_id, "stopped", state.segments or [], state.score or {}, answer, cfg)
    except LMError as exc:
        yield ev.RunError(run_id, message=str(exc), where="model")


def _steps_left(state: ReerState, cfg: ReerConfig, n_segments: int) -> int:
    """Expansion steps the run may still take (its step budget, or one per segment and pass)."""
    return max(0, min(cfg.max_steps, n_segments * cfg.passes) - state.steps_done)


def _expand_loop(lm, sc, run_id, query, answer, cfg, scfg, controls, state, meter):
    n_segments = len(state.segments)
    while True:
        for event in _human_edits(sc, run_id, query, answer, scfg, controls, state):
            yield event
        if controls.stopped():
            yield _finish(lm, state, run_id, "stopped", state.segments, state.score, answer, cfg)
            return
        if state.score["score"] < cfg.threshold:
            yield _finish(lm, state, run_id, "threshold", state.segments, state.score, answer, cfg)
            return
        if state.steps_done >= cfg.max_steps:
            yield _finish(lm, state, run_id, "max_steps", state.segments, state.score, answer, cfg)
            return
        if state.steps_done >= n_segments * cfg.passes:
            yield _finish(lm, state, run_id, "segments_done", state.segments, state.score, answer, cfg)
            return
        if controls.should_pause():
            yield ev.RunPaused(run_id, by="human")
            return
        if (yield from _one_step(lm, sc, run_id, query, answer, cfg, scfg, controls, state, meter)):
            return  # paused inside the step (candidates held for a person, or a command refused)
        controls.expanded()


def _refuse(run_id: str, where: str, why: str) -> Iterator[ev.Event]:
    """A person's command refused: the reason (shown on the page), then a pause so they look again."""
    yield ev.RunError(run_id, message=why, where=where, fatal=False)
    yield ev.RunPaused(run_id, by="human")


def _one_step(lm, sc, run_id, query, answer, cfg, scfg, controls, state, meter):
    """One expansion step; returns True when the run paused inside it (nothing decided). Its events carry
    the step number `state.next_step()` (core.reer.state: unique per decision); the budget, the segment
    and the seed go by `nth`, the expansion's ordinal, so a person's edits change neither."""
    nth, i = state.steps_done + 1, state.steps_done % len(state.segments)  # one segment per step
    step = state.next_step()
    if cmd := controls.take(("skip",)):
        if why := skip_refused(cmd[1], state, run_id, step, i):
            yield from _refuse(run_id, "skip", why)
            return True
        yield _decide(state, run_id, step, i, "skip", "human", None, state.segments[i], state.score, cmd[-1])
        return False
    pending = state.pending_step(step, i, cfg.candidates) if state.open_step == step else None
    if pending is None and (cmd := controls.take(("force",))):  # nothing waits: what it names is gone
        yield from _refuse(run_id, "force", force_refused(cmd[2], state, run_id, step, i, cmd[1], None))
        return True
    if pending is None:  # nothing usable recorded for this step: (re)generate it
        event = ev.SegmentStarted(run_id, step=step, segment=i, text=state.segments[i])
        state.apply(event)
        yield event
        texts = []
        later = _steps_left(state, cfg, len(state.segments)) - 1  # steps after this one
        total = min(cfg.max_steps, len(state.segments) * cfg.passes)
        k_ = cfg.candidates
        which = "candidate 1" if k_ == 1 else f"candidates 1–{k_}"
        with meter.generating(f"{which} of segment {i + 1} (step {nth}/{total})", "candidates",
                              cfg.candidate_max_new_tokens, later_tokens=later * cfg.candidate_max_new_tokens,
                              later_scorings=later + 1):
            made = expand_candidates(lm, query, answer, state.segments, i, cfg, nth)
        for k, (raw, text, err) in enumerate(made):
            event = ev.CandidateGenerated(run_id, step=step, segment=i, index=k, raw=raw, text=text, error=err)
            state.apply(event)
            yield event
            texts.append(text)
        good = [k for k, t in enumerate(texts) if t is not None]
        if good:
            meter.phase(f"scoring {len(good)} candidate{'s' if len(good) != 1 else ''} of segment {i + 1}",
                        "scoring", later_tokens=later * cfg.candidate_max_new_tokens, later_scorings=later)
        scores = score_candidates(sc, query, state.segments, i, [texts[k] for k in good], answer, scfg,
                                  baseline=state.score["score"]) if good else []
        pending = {}
        for k, s in zip(good, scores):
            event = ev.CandidateScored(run_id, step=step, segment=i, index=k, score=s.as_dict())
            state.apply(event)
            yield event
            pending[k] = (texts[k], s.as_dict())
    cmd = controls.take(("force", "skip"))
    if cmd is None and controls.should_pause() and pending:
        yield ev.RunPaused(run_id, by="human")  # held before the decision: a person may force one
        return True
    if cmd and cmd[0] == "skip":
        if why := skip_refused(cmd[1], state, run_id, step, i):
            yield from _refuse(run_id, "skip", why)
            return True
        yield _decide(state, run_id, step, i, "skip", "human", None, state.segments[i], state.score, cmd[-1])
        return False
    if cmd and cmd[0] == "force":
        if why := force_refused(cmd[2], state, run_id, step, i, cmd[1], pending):
            yield from _refuse(run_id, "force", why)
            return True
        text, s = pending[cmd[1]]
        yield _decide(state, run_id, step, i, "force", "human", cmd[1], text, s, cmd[-1])
        return False
    best = min(pending, key=lambda k: (pending[k][1]["score"], k), default=None)
    if best is not None and pending[best][1]["score"] < state.score["score"]:
        text, s = pending[best]
        yield _decide(state, run_id, step, i, "accept", "search", best, text, s)
    else:
        yield _decide(state, run_id, step, i, "keep", "search", None, state.segments[i], state.score)
    return False


def _human_edits(sc, run_id, query, answer, scfg, controls, state):
    try:
        yield from _take_edits(sc, run_id, query, answer, scfg, controls, state)
    finally:
        controls.edits_done()


def _take_edits(sc, run_id, query, answer, scfg, controls, state):
    while (cmd := controls.take(("edit",))) is not None:
        _, i, text, shown, who = cmd
        text = re.sub(r"\n\s*\n+", "\n", (text or "").strip())
        if not (0 <= i < len(state.segments)) or not text:
            yield ev.RunError(run_id, message=f"edit of segment {i + 1}: give a segment number between 1 and "
                              f"{len(state.segments)} and some text", where="edit", fatal=False)
            continue
        if shown is not None and (shown.run_id != run_id or shown.segment != i or (
                shown.text_hash and shown.text_hash != text_hash(state.segments[i]))):
            yield ev.RunError(run_id, message=f"Your edit of segment {i + 1} was refused, nothing was changed: the "
                              "segment is not the text you saw (the search changed it since). Your text is still "
                              "in the box: look at the segment and press Rescore my edit again.",
                              where="edit", fatal=False)
            continue
        segs = list(state.segments)
        segs[i] = text
        s = score(sc, query, segs, answer, scfg).as_dict()
        step = state.edit_step()  # a number of its own: never the next expansion's (core.reer.state)
        event = ev.CandidateScored(run_id, step=step, segment=i, index=-1, score=s)
        state.apply(event)
        yield event
        yield _decide(state, run_id, step, i, "edit", "human", None, text, s, who)  # edits use up no step


def _decide(state, run_id, step, i, action, by, chosen, text, s, annotator=None) -> ev.SegmentDecided:
    segs = list(state.segments)
    segs[i] = text
    event = ev.SegmentDecided(run_id, step=step, segment=i, action=action, by=by, chosen=chosen, text=text,
                              segments=tuple(segs), score=s, annotator=annotator)
    state.apply(event)
    return event


def _finish(lm, state, run_id, reason, segs, s, answer, cfg, extra_reasons=()) -> ev.ReerFinished:
    thinking = join_segments(list(segs))
    filters = (check(thinking, list(segs), answer, cfg.quality, count_tokens=lm.count_tokens) if segs
               else {"passed": False, "reasons": []})
    reasons = list(extra_reasons) + [r for r in filters["reasons"] if r not in extra_reasons]
    event = ev.ReerFinished(run_id, reason=reason, thinking=thinking, segments=tuple(segs), score=s,
                           filters={"passed": filters["passed"] and not extra_reasons, "reasons": reasons},
                           seconds=state.active_seconds())
    state.apply(event)
    return event


def run_reer(lm: LM, run_id: str, item_id: str, query: str, reference: str, cfg: ReerConfig = ReerConfig(),
             on_event: Callable[[ev.Event], None] | None = None, history: Sequence[ev.Event] = (),
             scorer: LM | None = None) -> dict:
    """The non-streaming twin: run (or resume) to the end and return the output record."""
    return consume(reer_search(lm, run_id, item_id, query, reference, cfg, history=history, scorer=scorer),
                   history, record_from_events, on_event)
