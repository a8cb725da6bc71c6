"""`palimpsest bench generate`: new tokens per second of each generation engine this install can
run (core.models.ct2), side by side in one run (section comment below). Split from core.bench,
which holds the scoring and REER benches and the HelloBench helpers this one reads."""
from __future__ import annotations

import statistics
import time

import torch

from core.bench import base_hf, hellobench_items

# ---- generation engines ------------------------------------------------------------------------------
#
# `bench_generate`: new tokens per second of each available generation engine (core.models.ct2) on
# a REER draft prompt (HelloBench item 0, ~1k prompt tokens), at batch 1 and 2, every generation
# forced to exactly `tokens` new tokens (same work everywhere), round by round in one run with the
# engines interleaved, so they share the machine's noise. Time includes the prompt's prefill (no
# prompt cache: each engine computes it every call, as a first REER call does).


class EngineView:
    """One HFLM generating as engine `hf` or `hf-bf16`, without its prompt cache (bench only)."""

    def __init__(self, hf, precision: str):
        self.hf, self.precision = hf, precision
        self.engine = "hf" if precision == "fp32" else "hf-bf16"

    def generate(self, messages, config, prefix: str = ""):
        kept = (self.hf.gen_precision, self.hf.use_prefix_cache)
        try:
            self.hf.gen_precision, self.hf.use_prefix_cache = self.precision, False
            return self.hf.generate(messages, config, prefix=prefix)
        finally:
            self.hf.gen_precision, self.hf.use_prefix_cache = kept


def generation_engines(lm, names=None) -> dict:
    """engine name -> something with `generate`, for every engine this install can run."""
    from core.models.ct2 import CT2LM, ENGINES, ct2_available

    hf = base_hf(lm)
    out = {}
    for name in names or ENGINES:
        if name in ("hf", "hf-bf16"):
            out[name] = EngineView(hf, "fp32" if name == "hf" else "bf16")
        elif ct2_available():
            out[name] = CT2LM(hf, compute_type=name.split("-", 1)[1].replace("fp32", "float32"))
    return out


def bench_generate(lm, tokens: int = 96, rounds: int = 1, batches=(1, 2), engines=None, log=print) -> dict:
    """Run the generation benchmark (section comment above); returns the result dict."""
    from core.models.lm import GenerationConfig
    from core.prompts import render
    from core.segments import answer_part

    item = hellobench_items()[0]
    msg = [{"role": "user", "content": render("reer_draft", task=item.query, answer=answer_part(item.reference)[:6000])}]
    hf = base_hf(lm)
    prompt_tokens = len(hf.encode(hf.chat_text(msg)))
    log(f"preparing engines for {hf.name} (conversions are cached; not timed)...")
    views = generation_engines(lm, engines)
    for view in views.values():  # warm-up: first calls pay one-off costs
        view.generate([{"role": "user", "content": "Hi"}], GenerationConfig(max_new_tokens=4, n=2, seed=0))
    seconds = {(e, b): [] for e in views for b in batches}
    for r in range(rounds):
        order = list(views) if r % 2 == 0 else list(views)[::-1]
        for b in batches:
            for name in order:
                cfg = GenerationConfig(max_new_tokens=tokens, n=b, seed=r, temperature=0.8, top_p=0.85,
                                       no_repeat_ngram=4, extra={"min_new_tokens": tokens})
                t = time.perf_counter()
                views[name].generate(msg, cfg)
                seconds[(name, b)].append(time.perf_counter() - t)
                log(f"round {r + 1}/{rounds} batch {b} {name}: {b * tokens / seconds[(name, b)][-1]:.1f} new tokens/s")
    rate = {f"{e}_b{b}_tokens_per_s": b * tokens / statistics.median(s) for (e, b), s in seconds.items()}
    ref = {b: statistics.median(seconds[("hf", b)]) for b in batches if ("hf", b) in seconds}
    ratio = {f"{e}_b{b}_vs_hf": ref[b] / statistics.median(s) for (e, b), s in seconds.items() if b in ref}
    return {"engines": list(views), "tokens": tokens, "prompt_tokens": prompt_tokens, "rounds": rounds,
            "batches": list(batches), **rate, **ratio, "model": hf.name, "threads": torch.get_num_threads()}
