"""Runners: every runner of one studio in one object, with the run slots they share (one cap on
runs driven at once, for REER and R2 together), made once per app and held by the studio's context
(studio/context.py). Pages take their runner from here instead of building one.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.models.shelf import ModelChoice
from core.store import Store
from studio.runners.r2 import R2Runner
from studio.runners.reer import ReerRunner
from studio.runners.threads import RunSlots
from studio.runners.train import TrainRunner


@dataclass(frozen=True)
class Runners:
    reer: ReerRunner  # drives REER runs in background threads
    r2: R2Runner  # drives R2 runs, in the same slots
    train: TrainRunner  # fine-tuning runs, each in its own process
    slots: RunSlots  # the app's cap on runs driven at once ($PALIMPSEST_MAX_RUNS)

    @classmethod
    def for_app(cls, store: Store, models: ModelChoice) -> "Runners":
        reer = ReerRunner(store, models.get_lm, models)
        r2 = R2Runner(store, models.get_lm, models.default, load=models.lm, slots=reer.slots)
        return cls(reer=reer, r2=r2, train=TrainRunner(store), slots=reer.slots)
