"""StudioContext: what every page of the studio shares, made once per app by build_app.

Knows: the store (one thread-safe handle), the models (a `core.models.shelf.ModelChoice`: the
process's model shelf seen with the app's own spec as the default and the starter's model policy,
so a page asks for "" or an allowed spec, each is loaded once, and any other spec is refused; a
page's model field is a dropdown of `model_choices()`, typed text only when `model_free_text`),
every runner with the run slots they share (studio.runners.hub.Runners), the built-in samples, the
workspace (studio.workspace: where a typed path may point), and who is a lead (`is_lead`). Does not
know pages or Gradio. Nothing here is a module-level global: two
apps in one process (tests) have two contexts (they share loaded models through the shelf).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.models.lm import LM
from core.models.load import is_scripted_spec
from core.models.shelf import ModelChoice
from core.store import Store
from studio.runners.hub import Runners
from studio.workspace import Workspace


@dataclass(frozen=True)
class StudioContext:
    store: Store  # prompts, runs, events, trajectories: the single source of truth
    models: ModelChoice  # the shelf with the app's model as default (loaded on first use)
    runners: Runners  # every runner of the app (REER, R2, training) and their shared run slots
    samples_path: Path | None = None  # the built-in sample prompts (data/samples.jsonl)
    samples: list[dict] = field(default_factory=list)  # those samples, read once (the Score page's menu)
    workspace: Workspace | None = None  # where typed paths may point (None: the store's folder, studio.workspace)
    leads: frozenset | None = None  # names with the lead role (users file or --lead); None: no logins, all lead

    def is_lead(self, name: str | None) -> bool:
        """May `name` see every judgment (Agreement, Calibration, judgment exports) and resolve? A lead
        may; anyone when the studio has no logins (`leads` None: whoever runs it owns the store)."""
        return self.leads is None or (name or "") in self.leads

    @property
    def model_name(self) -> str:
        """The app's model spec, shown on the pages and recorded with each run."""
        return self.models.default

    @property
    def demo(self) -> bool:
        """True when the app's model is the scripted fake (no real model: `--model scripted:`)."""
        return is_scripted_spec(self.models.default)

    def get_lm(self) -> LM:
        """The app's model, loaded on first use."""
        return self.models.get_lm()

    def model_choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs of a page's model dropdown: "" (the app's model), then the other allowed specs."""
        return self.models.choices()

    @property
    def model_free_text(self) -> bool:
        """True when a model field may take a typed spec (--allow-model patterns or --allow-any-model);
        the server checks it either way."""
        return self.models.policy.free_text

    def paths(self) -> Workspace:
        """Where a page's typed paths may point (the store's folder unless the app said otherwise)."""
        return self.workspace or Workspace.for_store(self.store.path)
