"""The typed events every long job yields (REER, R2 and training): small frozen dataclasses.
REER's start and end are `ReerStarted` and `ReerFinished`; their stored kinds stay "run_started" and
"run_finished", the names they had before R2 existed, so stores written then still load.

Each event names its run (`run_id`) and has a `kind` (its registered name). The store saves
each one as it happens (`to_dict` -> JSON), and `from_dict` rebuilds it, so a reload, a crash
or a second browser tab replays the same history. Scores are plain dicts of
`core.models.scoring.Score.as_dict()` (n_tokens, mean_logprob, ppl, score, truncated).

Human steering is recorded with the same events as the search's own work: a person's edit or
forced choice is a `SegmentDecided` with `by="human"` and the person's `annotator`
(core.annotators; R2's human `Reflected` and `JudgmentGiven.judgment` carry one too).
Events stored before a field was added load with its default (None: unknown).

One event is TRANSIENT and never stored: `Progress` (what a job is doing right now: its phase,
the tokens written so far, the partial text, elapsed time and a rough estimate). It is not
registered, so `from_dict` cannot rebuild it and the store refuses it; engines hand it to their
Controls (`core.runs.controls.ControlsBase.report`) for a page to read, and the run machinery
(core.runs.driver) passes it on without saving it. The store keeps only finished texts.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

EVENT_TYPES: dict[str, type] = {}


def _register(cls):
    EVENT_TYPES[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Event:
    run_id: str  # the run this event belongs to
    t: float = field(default_factory=time.time, kw_only=True)  # wall-clock time it happened
    kind: ClassVar[str] = "event"
    transient: ClassVar[bool] = False  # True: for display only, never stored (`Progress`)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["kind"] = self.kind
        return d


def from_dict(d: dict) -> Event:
    """Rebuild an event from its `to_dict()` form (unknown keys are an error: schema drift)."""
    d = dict(d)
    cls = EVENT_TYPES.get(d.pop("kind", None))
    if cls is None:
        raise ValueError(f"unknown event kind in {sorted(d)}")
    for name, typ in (("segments", tuple), ("rubric", tuple), ("dropped", tuple)):
        if name in d and isinstance(d[name], list):
            d[name] = typ(d[name])
    return cls(**d)


@_register
@dataclass(frozen=True)
class ReerStarted(Event):
    kind: ClassVar[str] = "run_started"
    item_id: str  # the prompt's id
    query: str  # x
    reference: str  # y (answer part only)
    settings: dict  # the run's settings, as a dict of the settings dataclass
    model: str  # the generator's model spec (it also scores unless `scorer` names another)
    server: dict = field(default_factory=dict)  # what a server model supports, probed at load (core.models.lm.details)
    scorer: str | None = None  # the scorer's model spec (None: stored before scorers existed: the writer scored)
    scorer_server: dict = field(default_factory=dict)  # the scorer's `server`, when it is another model


@_register
@dataclass(frozen=True)
class InitialDraft(Event):
    kind: ClassVar[str] = "initial_draft"
    thinking: str  # z0 as text (segments joined by blank lines)
    segments: tuple[str, ...]  # z0 split into segments
    score: dict  # Score.as_dict() of y given x, z0
    raw: str = ""  # the generator's raw output


@_register
@dataclass(frozen=True)
class SegmentStarted(Event):
    kind: ClassVar[str] = "segment_started"
    step: int  # 1-based step number: each decision has its own; an expansion's events share it (core.reer.state)
    segment: int  # 0-based index of the segment being expanded
    text: str  # the segment's current text


@_register
@dataclass(frozen=True)
class CandidateGenerated(Event):
    kind: ClassVar[str] = "candidate_generated"
    step: int
    segment: int
    index: int  # 0-based candidate number within the step
    raw: str  # the generator's raw output
    text: str | None  # the parsed rewrite; None when the output could not be parsed
    error: str | None = None  # why parsing failed (a failed candidate, not a crash)


@_register
@dataclass(frozen=True)
class CandidateScored(Event):
    kind: ClassVar[str] = "candidate_scored"
    step: int
    segment: int
    index: int  # candidate number; -1 for a person's own text
    score: dict  # Score.as_dict() of the trajectory with this candidate in place


@_register
@dataclass(frozen=True)
class SegmentDecided(Event):
    kind: ClassVar[str] = "segment_decided"
    step: int  # this decision's number, never another decision's: a person's edit takes one of its own
    segment: int
    action: Literal["accept", "keep", "edit", "force", "skip"]  # what was done to the segment
    by: Literal["search", "human"]  # who decided
    chosen: int | None  # candidate index taken; None when the segment kept its text or was edited
    text: str  # the segment's text after the decision
    segments: tuple[str, ...]  # the whole trajectory after the decision
    score: dict  # Score.as_dict() of the trajectory after the decision
    annotator: str | None = None  # the person who edited, forced or skipped (by "human"); None: the search, or unknown


@dataclass(frozen=True)
class Progress(Event):
    """TRANSIENT: never stored, never registered (module docstring). The latest one per run is shown."""

    kind: ClassVar[str] = "progress"
    transient: ClassVar[bool] = True
    phase: str  # what is happening, in words ("drafting", "candidates 1-2 of segment 3 (step 2/4)", "judging")
    stage: str = ""  # a short code of the phase: loading, draft, candidates, scoring, plan, judging, reflecting,
    #                  revising, training, evaluating
    tokens: int = 0  # tokens written so far in the generation under way (0 for a phase that writes none)
    budget: int = 0  # its token budget (max_new_tokens; 0 for a phase that writes none)
    elapsed_s: float = 0.0  # seconds this run has worked (earlier sessions included)
    phase_s: float = 0.0  # seconds spent in this phase so far
    texts: tuple[str, ...] = ()  # partial text of each sequence being written (display only)
    tokens_per_s: float | None = None  # generation rate measured in this run so far (None: no rate yet)
    left_s: float | None = None  # rough time left from the measured rate and the budgets (None: estimating)
    done: bool = False  # the generation of this phase has finished (its texts are final)


@_register
@dataclass(frozen=True)
class RunPaused(Event):
    kind: ClassVar[str] = "run_paused"
    by: Literal["search", "human"] = "human"


@_register
@dataclass(frozen=True)
class ReerFinished(Event):
    kind: ClassVar[str] = "run_finished"
    reason: Literal["threshold", "max_steps", "segments_done", "stopped", "dropped"]  # why it ended
    thinking: str  # the final trajectory
    segments: tuple[str, ...]
    score: dict  # final Score.as_dict()
    filters: dict  # {"passed": bool, "reasons": [str, ...]} from core.quality
    seconds: float = 0.0  # wall time spent in this run, summed over resumes


@_register
@dataclass(frozen=True)
class RunError(Event):
    kind: ClassVar[str] = "run_error"
    message: str  # readable, for the user
    where: str = ""  # which stage failed (draft, generate, score...)
    fatal: bool = True  # the run cannot go on


# ---- R2 (writer-judge loop, core.r2.loop) ----------------------------------------------------------
# A judgment travels as `core.r2.judge.Judgment.to_dict()`. Versions number the texts judged:
# 0 is the first draft, r the revision written in round r.

@_register
@dataclass(frozen=True)
class R2Started(Event):
    kind: ClassVar[str] = "r2_started"
    item_id: str  # the prompt's id
    query: str  # the task x
    rubric: tuple[str, ...]  # criteria the judge scores against
    settings: dict  # R2Config.as_dict()
    writer: str  # writer model spec
    judge: str  # judge model spec ("" when only people judge)
    servers: dict = field(default_factory=dict)  # "writer"/"judge": what a server model supports (core.models.lm.details)


@_register
@dataclass(frozen=True)
class R2Drafted(Event):
    kind: ClassVar[str] = "r2_drafted"
    plan: str  # the writer's plan ("" when planning is off)
    draft: str  # the first draft d0
    raw: str = ""  # the writer's raw output(s)


@_register
@dataclass(frozen=True)
class JudgmentRequested(Event):
    kind: ClassVar[str] = "judgment_requested"
    version: int  # which text awaits a judgment (0 = first draft, r = revision of round r)
    text: str  # the text to judge
    proposed: dict | None = None  # the model judge's judgment, for a person to accept or override


@_register
@dataclass(frozen=True)
class JudgmentGiven(Event):
    kind: ClassVar[str] = "judgment_given"
    version: int  # the text judged
    judgment: dict  # Judgment.to_dict() (judge "model" or "human"; an override keeps the model's)


@_register
@dataclass(frozen=True)
class Reflected(Event):
    kind: ClassVar[str] = "r2_reflected"
    round: int  # 1-based round
    text: str  # the writer's first-person reflection (never names a judge)
    raw: str = ""  # the writer's raw output
    dropped: tuple[str, ...] = ()  # sentences removed because they named a judge or critique
    by: str = "model"  # "model": the writer's; "human": a person's edit (or approval) of it, which replaces it
    annotator: str | None = None  # the person who edited or approved it (by "human"); None: the writer, or unknown


@_register
@dataclass(frozen=True)
class Revised(Event):
    kind: ClassVar[str] = "r2_revised"
    round: int
    text: str  # the revision d_round
    raw: str = ""


@_register
@dataclass(frozen=True)
class RoundFinished(Event):
    kind: ClassVar[str] = "r2_round_finished"
    round: int
    before: float | None  # overall score of the draft this round revised (None: unparsed)
    after: float | None  # overall score of the revision (None: unparsed)
    kept: bool  # whether the revision became the current draft (a worse one may be discarded)
    reward: dict  # core.r2.reward components and total


@_register
@dataclass(frozen=True)
class R2Finished(Event):
    kind: ClassVar[str] = "r2_finished"
    reason: Literal["threshold", "max_rounds", "no_improvement", "stopped", "dropped"]  # why it ended
    final: str  # the answer: the current draft at the end
    final_version: int  # which version it is
    thinking: str  # the assembled trajectory (inside <think>)
    overall: float | None  # the final draft's overall score
    seconds: float = 0.0  # wall time spent, summed over resumes


# ---- training (core.train.trainer): saved in the store's train_events table (migration m006_training) ----

@_register
@dataclass(frozen=True)
class TrainStarted(Event):
    kind: ClassVar[str] = "train_started"
    config: dict  # the run's TrainConfig as a dict (also DIR/train_config.json)
    out_dir: str  # where the model, checkpoints and metrics.json go
    n_train: int  # training records
    n_eval: int  # held-out records
    train_tokens: int  # tokens of the training records
    trained_tokens: int  # of which carry loss (the assistant turns)
    total_steps: int  # optimizer steps the run will make in all
    resumed_from: str | None = None  # checkpoint folder a resumed run continues from
    start_step: int = 0  # the step it continues from (0 for a fresh run)


@_register
@dataclass(frozen=True)
class TrainProgress(Event):
    kind: ClassVar[str] = "train_progress"
    step: int  # optimizer steps done (counted across resumes)
    total_steps: int  # optimizer steps in all
    loss: float  # mean training loss on the assistant tokens since the previous progress event
    lr: float  # learning rate used at this step
    epoch: float  # fractional epoch
    grad_norm: float | None = None  # gradient norm before clipping, when the trainer reports it
    seconds_per_step: float | None = None  # wall time per step since the previous progress event


@_register
@dataclass(frozen=True)
class TrainEvaluated(Event):
    kind: ClassVar[str] = "train_evaluated"
    stage: Literal["before", "after"]  # before training (the base model) or after (the trained one)
    ppl_with_thinking: float | None  # held-out answers' perplexity given query + thinking
    ppl_without_thinking: float | None  # ... given the query and an empty think block
    n_items: int  # held-out records scored
    n_tokens: int  # answer tokens scored per condition
    seconds: float = 0.0  # time the evaluation took
    per_item: dict = field(default_factory=dict)  # {record id: {"with": ppl, "without": ppl}} (dpo: margin, log-probs)
    pair_accuracy: float | None = None  # dpo: share of held-out pairs with implicit reward margin > 0 (core.train.dpo)
    reward_margin: float | None = None  # dpo: their mean implicit reward margin (beta-scaled log-ratio difference)
    prefers_chosen: float | None = None  # dpo: share of pairs whose chosen answer the model itself finds likelier


@_register
@dataclass(frozen=True)
class TrainCheckpoint(Event):
    kind: ClassVar[str] = "train_checkpoint"
    step: int  # the step saved
    path: str  # the checkpoint folder (resume continues from the newest)


@_register
@dataclass(frozen=True)
class TrainFinished(Event):
    kind: ClassVar[str] = "train_finished"
    reason: Literal["done", "stopped"]  # ran all its steps, or was stopped (a checkpoint is kept)
    steps: int  # optimizer steps done in all
    seconds: float  # wall time of this invocation (a resumed run counts only its own part)
    out_dir: str  # the saved model's folder ("" when stopped before saving)
    final_loss: float | None = None  # the last reported training loss
