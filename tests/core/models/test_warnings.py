"""No FutureWarning from our own calls ("the terminal fills with 54 FutureWarnings").

They came from passing a KV cache as `past_key_values=`, which transformers renamed to `cache=`
(core.models.gencache.cache_kw picks the keyword the installed release takes): once per prompt
prefill (core.models.gencache), per scoring prefix (core.models.fastscore) and per generation
with the prompt cache (core.models.hf). A short REER run and a generation on the tiny random
Llama go through all three, so a FutureWarning anywhere on the path fails here.
"""
from __future__ import annotations

import warnings

import torch

from core.models.gencache import PrefixCache
from core.models.lm import GenerationConfig
from core.quality import QualityConfig
from core.reer.config import ReerConfig
from core.reer.search import run_reer

QUERY = "Write a four-line poem about rain on a tin roof."
REFERENCE = ("Rain on the tin roof, a drummer with no song,\nit counts the hours the night is long.\n"
             "I lie awake and let it play,\nand by its rhythm drift away.")


def _future(caught) -> list[str]:
    return [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, FutureWarning)]


def test_a_prompt_prefill_and_a_cached_generation_emit_no_future_warning(tiny_lm):
    assert tiny_lm.use_prefix_cache  # the generation path that warned
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.inference_mode():
            cache = PrefixCache().prefill(tiny_lm.model, list(range(1, 40)), "cpu")
        out = tiny_lm.generate([{"role": "user", "content": QUERY}], GenerationConfig(max_new_tokens=4, seed=1))
    assert cache.get_seq_length() >= 39 and len(out) == 1
    assert _future(caught) == []


def test_a_short_reer_run_emits_no_future_warning(tiny_lm):
    cfg = ReerConfig(candidates=2, max_steps=1, draft_max_new_tokens=40, candidate_max_new_tokens=16,
                     min_segment_chars=0, quality=QualityConfig(min_tokens=0, min_segments=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = run_reer(tiny_lm, "w1", "rain", QUERY, REFERENCE, cfg)
    assert rec["finish_reason"] in {"max_steps", "segments_done", "threshold", "dropped"}
    assert tiny_lm.prefix_cache.computed_tokens > 0  # the prompt cache really ran
    assert _future(caught) == []
