"""R2's settings: one frozen dataclass, stored with every run (its `settings` column).

The judge's scale and budgets (core.r2.judge.JudgeConfig) and the process reward's weights
(core.r2.reward.RewardConfig) nest inside it."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from core.r2.judge import JudgeConfig
from core.r2.reward import RewardConfig
from core.settings import checking, invalid, loading, setting, validate

JUDGE_MODES = ("model", "human", "model_then_human")
KEEP_DRAFTS = ("full", "excerpt", "none")


@dataclass(frozen=True)
class R2Config:
    max_rounds: int = setting(2, min=1, flag="--rounds", label="Rounds",
                              help="reflect-and-revise rounds at most (at least 1: with none there is nothing to "
                                   "reflect on)")
    threshold: float = setting(9.0, help="stop once the current draft's overall score reaches this (on the judge's "
                                         "scale, judge.low to judge.high)")
    stop_when_no_improvement: bool = setting(True, flag="--keep-going",
                                             help="stop after a revision that does not raise the overall score")
    discard_worse: bool = setting(True, flag="--keep-worse",
                                  help="a revision judged worse than its draft is not kept (the loop goes back to "
                                       "the draft)")
    judge_mode: str = setting("model", choices=JUDGE_MODES, label="Judge",
                              help="model: the model judges; human: a person judges each draft (the run pauses, "
                                   "see `r2 judge`); model_then_human: a person accepts or overrides each model "
                                   "judgment")
    plan: bool = setting(True, label="Plan first",
                         help="the writer plans before its first draft (the plan opens the trajectory)")
    plan_max_new_tokens: int = setting(160, min=1, help="token budget of the plan")
    draft_max_new_tokens: int = setting(512, min=1, label="Draft tokens",
                                        help="token budget of the first draft")
    reflection_max_new_tokens: int = setting(160, min=1, label="Reflection tokens",
                                             help="token budget of each reflection")
    revision_max_new_tokens: int = setting(640, min=1, label="Revision tokens",
                                           help="token budget of each revision")
    temperature: float = setting(0.7, min=0, max=5, help="writer's sampling temperature")
    top_p: float = setting(0.9, above=0, max=1, help="writer's nucleus sampling mass")
    keep_drafts: str = setting("full", choices=KEEP_DRAFTS,
                               help="how much of each intermediate draft goes in the trajectory: full, excerpt, none")
    excerpt_chars: int = setting(400, min=0,
                                 help="with keep_drafts=excerpt: characters kept of each draft")
    max_text_chars: int = setting(6000, min=1,
                                  help="drafts shown to the writer are cut to this many characters")
    seed: int = setting(0, min=0, max=2**32 - 1, help="fixes every sample: same seed, same run")
    review_reflections: bool = setting(False, label="Let me edit each reflection before it is used (human modes)",
                                       help="pause after each reflection so a person may edit it before the "
                                            "revision uses it (the studio's human modes; the person's text "
                                            "is stored as the writer's reflection)")
    judge: JudgeConfig = setting(default_factory=JudgeConfig, help="the judge's scale and budgets")
    reward: RewardConfig = setting(default_factory=RewardConfig, help="process reward weights")

    def __post_init__(self):
        validate(self)
        if checking() and not self.judge.low <= self.threshold <= self.judge.high:
            invalid("threshold", self.threshold, f"must be on the judge's scale, from {self.judge.low:g} to "
                                                 f"{self.judge.high:g}", self)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "R2Config":
        """Stored settings, as they were run (not re-validated: bounds may have moved since)."""
        d = dict(d)
        judge, reward = d.pop("judge", None), d.pop("reward", None)
        known = {f.name for f in dataclasses.fields(cls)}
        with loading():
            return cls(**{k: v for k, v in d.items() if k in known},
                       judge=JudgeConfig(**judge) if judge else JudgeConfig(),
                       reward=RewardConfig(**reward) if reward else RewardConfig())
