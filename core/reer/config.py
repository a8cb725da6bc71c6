"""REER's settings: one frozen dataclass, stored with every run (its `settings` column).

Defaults follow the authors' released configuration (DESIGN.md, "REER, precisely")."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from core.models.scoring import ScoringConfig
from core.quality import QualityConfig


@dataclass(frozen=True)
class ReerConfig:
    candidates: int = 2  # K rewrites sampled per segment
    max_steps: int = 10  # segment expansions at most (over all passes)
    threshold: float = 0.25  # stop once the clipped score falls below this (about PPL 1.28)
    passes: int = 1  # how many times to sweep the segments left to right
    temperature: float = 0.8  # sampling temperature for the draft and the candidates
    top_p: float = 0.85  # nucleus sampling mass
    draft_max_new_tokens: int = 1024  # token budget of the initial thinking z0
    candidate_max_new_tokens: int = 192  # token budget of each rewrite (a paragraph; 384 mostly bought loops)
    no_repeat_ngram: int = 4  # draft and rewrites may not repeat an n-gram of this many tokens (0 = off)
    reflection_cues: bool = True  # ask rewrites for cues like "Hmm, maybe..." / "Wait, that..."
    ask_analysis: bool = False  # ask for an <analysis> before the <rewrite> (for capable models)
    keep_opening_words: int = 4  # rewrites are prefilled with the segment's first words (0 = off, -1 = all: extend it)
    skip_first_segment: bool = False  # leave y's first segment unscored (the authors did)
    template: str = "train"  # scoring template: train, chat or none (core.format.TEMPLATES)
    precision: str = "fp32"  # scoring precision: fp32 (exact), auto, bf16 (core.models.scoring)
    min_segment_chars: int = 100  # pieces shorter than this merge into a neighbour
    max_answer_chars: int = 6000  # the answer shown to the generator is cut to this many characters
    seed: int = 0  # fixes every sample: same seed, same trajectory
    quality: QualityConfig = field(default_factory=QualityConfig)  # filters applied at the end

    def as_dict(self) -> dict:
        """JSON-shaped (tuples become lists), so a stored copy compares equal to a fresh one."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "ReerConfig":
        d = dict(d)
        d.setdefault("no_repeat_ngram", 0)  # settings stored before the ban existed ran without it
        d.setdefault("template", "chat")  # settings stored without one were scored with <answer> tags
        q = d.pop("quality", None)
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        return dataclasses.replace(cfg, quality=QualityConfig(**q)) if q else cfg

    def scoring(self) -> ScoringConfig:
        return ScoringConfig(template=self.template, skip_first_segment=self.skip_first_segment,
                             precision=self.precision)
