"""R2's settings: one frozen dataclass, stored with every run (its `settings` column).

The judge's scale and budgets (core.r2.judge.JudgeConfig) and the process reward's weights
(core.r2.reward.RewardConfig) nest inside it."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from core.r2.judge import JudgeConfig
from core.r2.reward import RewardConfig

JUDGE_MODES = ("model", "human", "model_then_human")
KEEP_DRAFTS = ("full", "excerpt", "none")


@dataclass(frozen=True)
class R2Config:
    max_rounds: int = 2  # reflect-and-revise rounds at most
    threshold: float = 9.0  # stop once the current draft's overall score reaches this (judge's scale)
    stop_when_no_improvement: bool = True  # stop after a revision that does not raise the overall score
    discard_worse: bool = True  # a revision judged worse than its draft is not kept (the loop goes back to the draft)
    judge_mode: str = "model"  # model: the model judges; human: a person judges; model_then_human: a person
    #                            accepts or overrides each model judgment
    plan: bool = True  # the writer plans before its first draft (the plan opens the trajectory)
    plan_max_new_tokens: int = 160  # token budget of the plan
    draft_max_new_tokens: int = 512  # token budget of the first draft
    reflection_max_new_tokens: int = 160  # token budget of each reflection
    revision_max_new_tokens: int = 640  # token budget of each revision
    temperature: float = 0.7  # writer's sampling temperature
    top_p: float = 0.9  # writer's nucleus sampling mass
    keep_drafts: str = "full"  # how much of each intermediate draft goes in the trajectory: full, excerpt, none
    excerpt_chars: int = 400  # with keep_drafts="excerpt": characters kept of each draft
    max_text_chars: int = 6000  # drafts shown to the writer are cut to this many characters
    seed: int = 0  # fixes every sample: same seed, same run
    review_reflections: bool = False  # pause after each reflection so a person may edit it before the revision
    #                                   uses it (core.r2.jobs.submit_reflection); the studio's human modes set it
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # the judge's scale and budgets
    reward: RewardConfig = field(default_factory=RewardConfig)  # process reward weights

    def __post_init__(self):
        if self.judge_mode not in JUDGE_MODES:
            raise ValueError(f"R2Config.judge_mode: {self.judge_mode!r}; use one of {', '.join(JUDGE_MODES)}")
        if self.keep_drafts not in KEEP_DRAFTS:
            raise ValueError(f"R2Config.keep_drafts: {self.keep_drafts!r}; use one of {', '.join(KEEP_DRAFTS)}")
        if self.max_rounds < 0:
            raise ValueError("R2Config.max_rounds: must be 0 or more")
        if not self.judge.low <= self.threshold <= self.judge.high:
            raise ValueError(f"R2Config.threshold: {self.threshold} is off the judge's "
                             f"{self.judge.low:g}-{self.judge.high:g} scale")

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "R2Config":
        d = dict(d)
        judge, reward = d.pop("judge", None), d.pop("reward", None)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known},
                   judge=JudgeConfig(**judge) if judge else JudgeConfig(),
                   reward=RewardConfig(**reward) if reward else RewardConfig())
