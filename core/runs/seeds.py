"""Per-step seeds: every model call of a run gets a seed fixed by (run seed, step, stage), so a
resumed run redoes a half-done step exactly as the first attempt would have.

REER seeds its candidates by (seed, step); R2 seeds each call by (seed, round, stage). Both go
through `step_seed`; the formula is part of what a stored run means, so it never changes (a
stored run resumed by a later version must draw the same samples; tests pin its values).
"""
from __future__ import annotations


def step_seed(seed: int, step: int, stage: int = 0) -> int:
    """The seed of one model call: the run's `seed`, its `step` (REER step, R2 round) and `stage`
    (which call within the step; 0 where a step makes one call)."""
    return (seed * 1_000_003 + step * 7919 + stage * 104_729) % (2 ** 31)
