"""REER's settings: one frozen dataclass, stored with every run (its `settings` column).

Defaults follow the authors' released configuration (docs/design.md, "REER, precisely")."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from core.format import DEFAULT_TEMPLATE, TEMPLATE_HELP, TEMPLATES
from core.models.scoring import ScoringConfig
from core.prompts import PROMPT_SET_NAMES
from core.quality import QualityConfig, shortest_passing_budget
from core.settings import checking, invalid, loading, setting, validate


# settings added after runs were stored without them: as_dict leaves them out at these values (which
# are how those runs ran: the generator scored, each backend sampled with its own top-k, the default
# prompts, no draft section to check); a dotted name is a nested setting
NEW_AT_DEFAULT = {"scorer": "", "top_k": -1, "prompts": "default", "quality.max_draft_copy_chars": 300}


@dataclass(frozen=True)
class ReerConfig:
    candidates: int = setting(2, min=1, max=64, label="Candidates per segment",
                              help="K rewrites sampled per segment")
    max_steps: int = setting(10, min=0, help="segment expansions at most (over all passes); the search also ends "
                                             "once it has visited every segment `passes` times")
    threshold: float = setting(0.25, min=0, max=2, label="Stop threshold (score)",
                               help="stop once the clipped score falls below this (0.25 is about PPL 1.28)")
    passes: int = setting(1, min=1, help="how many times to sweep the segments left to right")
    temperature: float = setting(0.8, min=0, max=5, help="sampling temperature for the draft and the candidates")
    top_p: float = setting(0.85, above=0, max=1, help="nucleus sampling mass")
    draft_max_new_tokens: int = setting(1024, min=1, label="Draft tokens",
                                        help="token budget of the initial thinking z0 (at least what the too-short "
                                             "filter asks for: a shorter draft is always dropped)")
    candidate_max_new_tokens: int = setting(192, min=1, label="Candidate tokens",
                                            flag=("--candidate-max-new-tokens", "--max-new-tokens"),
                                            help="token budget of each rewrite (a paragraph; 384 mostly bought "
                                                 "loops)")
    no_repeat_ngram: int = setting(4, min=2, max=64, allow=(0,),
                                   help="draft and rewrites may not repeat an n-gram of this many tokens (0 = off; "
                                        "local models only: small models loop without it)")
    reflection_cues: bool = setting(True, label="Reflection cues (“Hmm, maybe…”)",
                                    help="ask rewrites for cues like \"Hmm, maybe...\" / \"Wait, that...\"")
    ask_analysis: bool = setting(False, help="ask for an <analysis> before the <rewrite> (for capable models)")
    # the prompt set (core.prompts.PROMPT_SETS); settings stored without one ran with "default"
    prompts: str = setting(PROMPT_SET_NAMES[0], choices=PROMPT_SET_NAMES, label="Prompt set",
                           help="the draft and rewrite prompts: default (short, for small models) or deepwriter "
                                "(the REER authors' framework: a present-tense monologue on intent and reader, "
                                "content and structure, then a short draft of the piece and a critique, in "
                                "English or Chinese by the query; for large models)")
    keep_opening_words: int = setting(4, min=-1,
                                      help="rewrites are prefilled with the segment's first words (0 = off, "
                                           "-1 = all: extend it)")
    skip_first_segment: bool = setting(False, help="leave y's first segment unscored (the authors did)")
    template: str = setting(DEFAULT_TEMPLATE, choices=tuple(TEMPLATES), help="scoring template: " + TEMPLATE_HELP)
    precision: str = setting("fp32", choices=("fp32", "auto", "bf16"),
                             help="scoring arithmetic: fp32 (exact), bf16 (fastest), auto (bf16, close calls "
                                  "re-checked in fp32)")
    min_segment_chars: int = setting(100, min=0, help="pieces shorter than this merge into a neighbour")
    max_answer_chars: int = setting(6000, min=1,
                                    help="the answer shown to the generator is cut to this many characters")
    seed: int = setting(0, min=0, max=2**32 - 1, help="fixes every sample: same seed, same trajectory")
    quality: QualityConfig = setting(default_factory=QualityConfig, help="filters applied at the end")
    # ---- who scores, and the top-k cut (left out of as_dict at their defaults: NEW_AT_DEFAULT) ----
    scorer: str = setting("", help="model spec that scores y (the perplexity model; anything --model takes): "
                                   "every score, the stop threshold and the heat map use it; empty = the "
                                   "generator scores too (one model for both jobs)")
    top_k: int = setting(-1, min=0, allow=(-1,), label="Top-k",
                         help="sample among the k likeliest tokens only (the authors used 40); 0 = off (the "
                              "whole vocabulary); -1 = each backend's default (transformers 50, CTranslate2 off, "
                              "a server its own)")

    def __post_init__(self):
        validate(self)
        least = shortest_passing_budget(self.quality.min_tokens)
        if checking() and self.draft_max_new_tokens < least:
            invalid("draft_max_new_tokens", self.draft_max_new_tokens,
                    f"must be at least {least}: a shorter draft can never reach the too-short filter's "
                    f"{self.quality.min_tokens} tokens (quality.min_tokens), so every run would end dropped", self)

    def as_dict(self) -> dict:
        """JSON-shaped (tuples become lists), so a stored copy compares equal to a fresh one. Settings
        newer than most stored runs are left out at their defaults (NEW_AT_DEFAULT), so a run stored
        before they existed still matches a fresh one and is reused, not searched again."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        for name, default in NEW_AT_DEFAULT.items():
            *outer, last = name.split(".")
            part = d
            for key in outer:
                part = part.get(key, {})
            if part.get(last, object()) == default:
                del part[last]
        return d

    def scorer_spec(self, model: str) -> str:
        """The spec that scores, given the generator's spec `model`."""
        return self.scorer.strip() or model

    @classmethod
    def from_dict(cls, d: dict) -> "ReerConfig":
        """Stored settings, as they were run (not re-validated: bounds may have moved since)."""
        d = dict(d)
        d.setdefault("no_repeat_ngram", 0)  # settings stored before the ban existed ran without it
        d.setdefault("template", "chat")  # settings stored without one were scored with <answer> tags
        q = d.pop("quality", None)
        known = {f.name for f in dataclasses.fields(cls)}
        with loading():
            cfg = cls(**{k: v for k, v in d.items() if k in known})
            return dataclasses.replace(cfg, quality=QualityConfig(**q)) if q else cfg

    def scoring(self) -> ScoringConfig:
        return ScoringConfig(template=self.template, skip_first_segment=self.skip_first_segment,
                             precision=self.precision)
