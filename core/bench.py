"""Benchmarks that measure ratios side by side in one run (never timed tests: machines are noisy).

`bench_scoring`: one REER step on real data. A HelloBench reference (~1k tokens), a
trajectory of 10 paragraphs, K = 4 candidates for one segment, written by the model itself
from a rewrite prompt (seeded), as REER's candidates are. Times, round by round:
  naive   one plain fp32 forward per candidate, batch 1, full logits (what a first version does)
  fp32    the engine's default, exact path: shared prefix computed once, candidates batched with
          cascade attention (no masks), vocabulary head only where y's tokens are predicted
  auto    the same in bf16, then fp32 re-scoring of every candidate within 0.01 of another
  bf16    the same in bf16 alone (fast, but close calls can flip)
and reports medians of per-round ratios against naive, whether each path's decisions (best
candidate and full order) equal naive fp32's at every step measured, the largest difference
in mean log-prob, and the closest gap between candidates. Also the CPU's matmul peak, to read
the absolute speeds against.

`bench_reer`: the REER search after a shared draft, items/hour, engine against a plain loop (see
the section at the end of this file).
"""
from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import torch

from core.bench_replay import (  # noqa: F401  (regret_summary and step_regrets: imported from here too)
    MIN_REGRET_STEPS,
    SCORING_TARGET,
    regret_summary,
    scoring_replay,
    scoring_target_met,
    step_regrets,
    uncached_replay,
)
from core.data.items import Item, read_items
from core.models.fastscore import naive_logprobs
from core.models.lm import TokenLogprobs
from core.models.scoring import (
    ScoringConfig,
    build_request,
    score_candidates,
    scoring_precision,
    summarize,
)

HELLOBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hellobench"
HELLOBENCH_ENV = "PALIMPSEST_HELLOBENCH"  # another folder holding the HelloBench data (a worktree's bench)

_OPENERS = [
    "Let me think about what this piece has to do before I write a word.",
    "Hmm, the reader needs a reason to care early on, so",
    "Wait, I should check the structure again:",
    "Maybe the strongest move here is to be concrete:",
    "I keep coming back to one question:",
    "Now for the middle stretch.",
    "Actually, the tone matters more than I first thought.",
    "One risk is repeating myself, so",
    "Before the ending, I want one more turn:",
    "Finally, the close.",
]


def hellobench_root(root: Path | None = None) -> Path:
    """Where the HelloBench data is looked for: `root`, else $PALIMPSEST_HELLOBENCH, else
    shared/data/hellobench beside the repo (it may not exist; the tests use this same place)."""
    return Path(root or os.environ.get(HELLOBENCH_ENV) or HELLOBENCH)


def hellobench_items(root: Path | None = None) -> list[Item]:
    """HelloBench tasks joined with their reference answers (core.data.items.read_items), from
    `root`, else $PALIMPSEST_HELLOBENCH, else shared/data/hellobench beside the repo."""
    root = hellobench_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: HelloBench data not found; put it in shared/data/hellobench beside the repo")
    return read_items(root)[0]


def _words(text: str, n: int, start: int = 0) -> str:
    words = re.findall(r"[A-Za-z][A-Za-z'-]+", text)
    return " ".join(words[start:start + n])


def planning_trajectory(query: str, reference: str, n: int = 10) -> list[str]:
    """A deterministic ~10-paragraph planning monologue built from the task and the answer's topics."""
    paras = [p for p in reference.split("\n\n") if p.strip()] or [reference]
    segs = []
    for i in range(n):
        p = paras[i * len(paras) // n]
        segs.append(
            f"{_OPENERS[i]} This part is about {_words(p, 9)}. I want it to feel specific, "
            f"with a detail like {_words(p, 6, 9)}, and it has to serve the task: {_words(query, 10, i)}. "
            f"If that sounds flat, I can sharpen it by asking what the reader would doubt here."
        )
    return segs


def candidates_for(lm, query: str, segment: str, k: int = 4, seed: int = 0, max_new_tokens: int = 160) -> list[str]:
    """K rewrites of a segment written by the model itself, seeded (real REER-like candidates)."""
    from core.models.lm import GenerationConfig
    from core.prompts import render

    msg = [{"role": "user", "content": render("rewrite_segment", task=query[:600], segment=segment)}]
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.85, n=k, seed=seed)
    out = [c.strip() for c in lm.generate(msg, cfg)]
    return [c if c else segment for c in out]


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def model_flops(model, n_tokens: int, n_head_positions: int) -> float:
    """Linear-layer FLOPs of a forward (attention scores left out): 2 * params * tokens + head."""
    emb = model.get_input_embeddings().weight
    body = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and p.dim() == 2)
    head = emb.numel()
    return 2.0 * body * n_tokens + 2.0 * head * n_head_positions


def _order(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (values[i], i))


def bench_scoring(lm, rounds: int = 3, k: int = 4, segment: int = 5, extra_steps=(2, 8),
                  item: int = 0, log=print) -> dict:
    """Run the benchmark (module docstring); returns the result dict (also printed by the CLI)."""
    rec = hellobench_items()[item]
    query, reference = rec.query, rec.reference
    segs = planning_trajectory(query, reference)
    modes = {m: ScoringConfig(template="chat", precision=m) for m in ("fp32", "auto", "bf16")}
    steps = [segment] * rounds + list(extra_steps)
    log(f"writing {k} candidates per step with {lm.name} (not timed)...")
    pool = {seg: candidates_for(lm, query, segs[seg], k, seed=seg) for seg in sorted(set(steps))}
    rows = []
    with torch.inference_mode():
        for r, seg in enumerate(steps):
            cands = pool[seg]
            reqs = [build_request(lm, query, segs[:seg] + [c] + segs[seg + 1:], reference, modes["fp32"]) for c in cands]
            t0 = time.perf_counter()
            naive = []
            for req in reqs:
                ctx = [t for p in req.context for t in lm.encode(p)]
                cont = lm.encode(req.continuation)
                lps = naive_logprobs(lm.model, ctx + cont, len(ctx), device=lm.device)
                naive.append(summarize(TokenLogprobs([], lps, len(ctx)), -2.0, "fp32", False))
            row = dict(segment=seg, naive_s=time.perf_counter() - t0, scored=sum(s.n_tokens for s in naive),
                       tokens=sum(len(lm.encode("".join(q.context))) + len(lm.encode(q.continuation)) for q in reqs),
                       gap=min(abs(a.score - b.score) for i, a in enumerate(naive) for b in naive[i + 1:]))
            for mode, cfg in modes.items():
                t = time.perf_counter()
                got = score_candidates(lm, query, segs, seg, cands, reference, cfg)
                row[f"{mode}_s"] = time.perf_counter() - t
                row[f"{mode}_match"] = _order([s.score for s in got]) == _order([s.score for s in naive])
                row[f"{mode}_diff"] = max(abs(a.mean_logprob - b.mean_logprob) for a, b in zip(got, naive))
                if mode == "auto":
                    row["rechecked"] = sum(s.precision == "fp32" for s in got)
            rows.append(row)
            log(f"step {r + 1}/{len(steps)} (segment {seg}): naive {row['naive_s']:.2f}s  fp32 engine {row['fp32_s']:.2f}s"
                f"  auto {row['auto_s']:.2f}s (re-checked {row['rechecked']}/{k})  bf16 {row['bf16_s']:.2f}s"
                f"  closest fp32 gap {row['gap']:.1e}  orders match: fp32 {row['fp32_match']} auto {row['auto_match']}"
                f" bf16 {row['bf16_match']}")
    timed = [r for r in rows if r["segment"] == segment]
    peak32, peak16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    naive_med = statistics.median(r["naive_s"] for r in timed)
    flops = model_flops(lm.model, timed[0]["tokens"], timed[0]["tokens"])
    speed = {m: statistics.median(r["naive_s"] / r[f"{m}_s"] for r in timed) for m in modes}
    default = ScoringConfig().precision
    return {
        "speedup": speed[default],
        "decisions_match": all(r[f"{default}_match"] for r in rows),
        "max_abs_diff": max(r[f"{default}_diff"] for r in rows),
        "default_precision": default,
        "fp32_speedup": speed["fp32"],
        "fp32_decisions_match": all(r["fp32_match"] for r in rows),
        "fp32_max_abs_diff": max(r["fp32_diff"] for r in rows),
        "auto_speedup": speed["auto"],
        "auto_decisions_match": all(r["auto_match"] for r in rows),
        "auto_rechecked": sum(r["rechecked"] for r in rows),
        "bf16_speedup": speed["bf16"],
        "bf16_decisions_match": all(r["bf16_match"] for r in rows),
        "bf16_max_abs_diff": max(r["bf16_diff"] for r in rows),
        "naive_s": naive_med,
        "engine_s": statistics.median(r[f"{default}_s"] for r in timed),
        "min_candidate_gap": min(r["gap"] for r in rows),
        "k": k, "segment": segment, "rounds": rounds, "steps_checked": len(rows),
        "tokens_per_step": timed[0]["tokens"], "scored_tokens_per_candidate": timed[0]["scored"] // k,
        "naive_gflops": flops / naive_med / 1e9,
        "matmul_peak_gflops_fp32": peak32, "matmul_peak_gflops_bf16": peak16,
        "model": lm.name, "threads": torch.get_num_threads(),
    }


def base_hf(lm):
    """The HFLM under an engine wrapper (a CT2LM's `.hf`), or `lm` itself."""
    return getattr(lm, "hf", lm)


# ---- REER search -------------------------------------------------------------------------------------
#
# `bench_reer`: items/hour of the REER search after its draft (K candidates per step, scoring,
# every event saved to an in-memory store) on a few HelloBench items, engine against a plain
# reference loop, interleaved item by item in the same run (alternating which goes first) so
# both see the same machine noise. The plain loop is the SAME search (`core.reer.jobs.reer_job`)
# through `PlainLM`: K separate n=1 generations instead of one batched call, and one full fp32
# forward per scoring request (full logits, no prefix sharing) instead of core.models.fastscore.
# Same work on both sides: `ExactLengthLM` makes every generation run to exactly its token
# budget (min_new_tokens = max_new_tokens, no stop strings, no early end of turn; the stop
# strings are then applied to the text, so parsing sees what it normally would). Without it a
# path that happens to sample an early `</rewrite>` would look faster for doing less. Each side
# writes its own draft (timed), and both searches are handed the plain side's text: the same seed
# samples different drafts in bf16 and fp32, and a different z0 meant different segments, steps,
# or an item dropped on one side only. So both searches refine the same z0 and take the same
# steps; their candidates differ (one batched sample vs K seeded ones), and so may the number of
# candidates each side's filters keep and scores. The scoring phase is therefore timed over the same
# work: after the searches, the plain loop scores the fast side's own scoring requests
# (`scoring_replay`), and that time stands for the plain side's scoring in the phase table and the
# totals (its own scoring time and the sequences each side scored are kept in `per_item`). Before a
# scoring call is timed, the writer's background work (CTranslate2's spare generator, loaded and fed
# the prompt's head after each seeded call) is waited for and counted as generation: on 2 busy
# cores it otherwise ran inside the scoring phase (quiet, --items 2: 0.96x with it there, 1.22x without).
# Regret needs steps with 2+ scored candidates: the budgets give drafts of several segments, the
# candidates' leftover filters (markers, leaked instructions, cut endings: quality, not speed) are
# off, and an item whose draft is dropped before any step is replaced by the next HelloBench item
# (`skipped`). The target is judged over at least MIN_REGRET_STEPS steps, else it is None.
# The prompt cache (GenerationConfig.static, core.models.gencache / ct2): after the fast side's
# search, its draft and candidate calls are replayed with the cache off (same prompts, seeds and
# lengths), so both phases are timed with and without it in the same run.

LEFTOVER_FILTERS = ("template_markers", "leaked_instructions", "cut_ending")  # core.quality.LEFTOVERS
REER_BENCH = dict(candidates=2, max_steps=3, draft_max_new_tokens=256, candidate_max_new_tokens=80)


class PlainLM:
    """The reference loop's model: a first version with no batching and no prefix sharing."""

    def __init__(self, lm):
        self.lm = lm  # an HFLM: its sampling knobs and weights are used directly
        self.name, self.max_length, self.has_fast_path = lm.name, lm.max_length, lm.has_fast_path

    def chat_text(self, messages, add_generation_prompt: bool = True) -> str:
        return self.lm.chat_text(messages, add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def count_tokens(self, text: str) -> int:
        return self.lm.count_tokens(text)

    def generate(self, messages, config, prefix: str = "") -> list[str]:
        """K separate n=1 calls in fp32 (no bf16 sampling, no prompt cache); sample j seeded with seed + j."""
        import dataclasses

        out, kept, cached = [], self.lm.gen_precision, self.lm.use_prefix_cache
        try:
            self.lm.gen_precision, self.lm.use_prefix_cache = "fp32", False
            for j in range(config.n):
                seed = None if config.seed is None else config.seed + j
                out += self.lm.generate(messages, dataclasses.replace(config, n=1, seed=seed), prefix=prefix)
        finally:
            self.lm.gen_precision, self.lm.use_prefix_cache = kept, cached
        return out

    def loglikelihood(self, requests, precision="fp32", truncate="error") -> list[TokenLogprobs]:
        """Each request alone: one plain fp32 forward of the whole sequence (naive_logprobs)."""
        results = []
        for req in requests:
            pieces, cont, dropped = self.lm._fit(*self.lm.encode_request(req), truncate)
            ctx = [t for p in pieces for t in p]
            with torch.inference_mode():
                lps = naive_logprobs(self.lm.model, ctx + cont, len(ctx), device=self.lm.device)
            toks = self.lm.tokenizer.convert_ids_to_tokens(cont)
            results.append(TokenLogprobs([self.lm.tokenizer.convert_tokens_to_string([t]) for t in toks],
                                         lps, len(ctx), dropped))
        return results


class ExactLengthLM:
    """Generation forced to its full token budget (see the section comment); scoring untouched.
    Also adds up the seconds spent generating and scoring (`seconds`)."""

    def __init__(self, lm):
        self.lm = lm
        self.name, self.max_length = lm.name, lm.max_length
        self.has_fast_path = lm.has_fast_path
        self.seconds = {"generate": 0.0, "score": 0.0}
        self.drafts: dict[str, str] = {}  # draft prompt -> the shared draft text (see the section comment)
        self.calls: list[tuple] = []  # (phase, messages, forced config, prefix, seconds) of every generation
        self.scored: list[tuple] = []  # (requests, precision, truncate) of every scoring call (scoring_replay)
        self.phase = "candidates"  # the phase the next generations are logged under
        # the writer's background work to finish before a scoring call is timed (CTranslate2's spare
        # generator, core.models.ct2.CT2LM.ready): generation's work, counted as generation's time
        self.settle = getattr(lm, "ready", lambda: None)

    def chat_text(self, messages, add_generation_prompt: bool = True) -> str:
        return self.lm.chat_text(messages, add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def count_tokens(self, text: str) -> int:
        return self.lm.count_tokens(text)

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        t = time.perf_counter()
        self.settle()
        self.seconds["generate"] += time.perf_counter() - t
        t = time.perf_counter()
        try:
            return self.lm.loglikelihood(requests, precision, truncate)
        finally:
            self.seconds["score"] += time.perf_counter() - t
            self.scored.append((list(requests), precision, truncate))

    def generate(self, messages, config, prefix: str = "") -> list[str]:
        import dataclasses

        from core.models.lm import FINISH_LENGTH, Generation, cut_at_stop, stop_reason

        if messages[-1]["content"] in self.drafts:  # only the draft prompt is ever in there
            return [self.drafts[messages[-1]["content"]]]
        forced = dataclasses.replace(config, stop=(), extra={**config.extra, "min_new_tokens": config.max_new_tokens})
        t = time.perf_counter()
        try:
            texts = self.lm.generate(messages, forced, prefix=prefix)
        finally:
            self.seconds["generate"] += time.perf_counter() - t
        self.calls.append((self.phase, messages, forced, prefix, time.perf_counter() - t))
        return [Generation(cut_at_stop(t, config.stop), stop_reason(t, config.stop, FINISH_LENGTH)) for t in texts]


def _timed_reer(lm, item: Item, cfg, scorer=None) -> tuple[float, dict, list]:
    from core.reer.jobs import reer_job, run_record
    from core.store import open_store

    store = open_store(None)
    pid, _ = store.add_prompt(item.query, item.reference, id=item.id)
    t = time.perf_counter()
    events = list(reer_job(store, lm, pid, cfg, scorer=scorer))
    seconds = time.perf_counter() - t
    rec = run_record(store, events[0].run_id)
    store.close()
    if rec["finish_reason"] is None:
        raise RuntimeError(f"{item.id}: the search failed: {getattr(events[-1], 'message', events[-1].kind)}")
    return seconds, rec, events


def _prompt_cache_tokens(lm) -> dict:
    """Prompt tokens the fast side's generations took from its prompt cache and computed, all calls
    so far (CTranslate2: the static heads; HF: core.models.gencache's blocks)."""
    if "static_tokens" in vars(lm):
        return dict(lm.static_tokens)
    cache = base_hf(lm).prefix_cache
    return {"reused": cache.reused_tokens, "computed": cache.computed_tokens}


def _kv_counts(hf) -> tuple[int, int]:
    """(tokens reused, tokens computed) so far by `hf`'s fp32 scoring store; (0, 0) without one."""
    store = hf.score_kv(torch.float32) if hasattr(hf, "score_kv") else None
    return (store.reused_tokens, store.computed_tokens) if store is not None else (0, 0)


def bench_reer(lm, items: int = 2, precision: str = "fp32", engine: str | None = None, log=print,
               scorer=None, template: str | None = None) -> dict:
    """Run the REER benchmark (section comment above); returns the result dict.

    `scorer`: another model that scores (ReerConfig.scorer); both sides score with it (the fast side
    through its fast path, the plain side with its plain fp32 loop) and regret is measured with it.
    `regret_target_met` is None over fewer than MIN_REGRET_STEPS measured steps (`regret_steps` says how many).
    `template`: the scoring layout (default REER's, or `none` for a scorer with no chat template).

    The fast side generates with `engine` (default: the setting, core.models.ct2) and scores with
    `precision`; the plain side is the unchanged fp32 loop (PlainLM). Phases: draft (each side
    writes its own forced-length draft, timed; both searches then refine the plain side's draft),
    candidate generation, scoring; regret per step (step_regrets); the fast side's draft and candidate
    generations again with its prompt cache off (uncached_replay). Items are HelloBench's in order; one
    whose draft is dropped before any step is skipped and the next one taken (at most `items` + 4 tried)."""
    import dataclasses

    from core.models.ct2 import engine_from_env, engines_of, with_engine
    from core.models.lm import GenerationConfig
    from core.prompts import render
    from core.quality import QualityConfig
    from core.reer.config import ReerConfig
    from core.reer.search import draft_config
    from core.segments import answer_part

    hf = base_hf(lm)
    if engine:
        fast_lm = with_engine(hf, engine)
    else:
        fast_lm = lm if lm is not hf else with_engine(hf, engine_from_env())
    sc_hf = base_hf(scorer) if scorer is not None else hf  # the model whose scores decide (and measure regret)
    # a scorer with no chat template (a base model) scores layout none (core.reer.jobs.check_scorer)
    if template is None and scorer is not None and getattr(sc_hf, "missing", lambda n: "")({"chat_template"}):
        template = "none"
    plain_cfg = ReerConfig(**REER_BENCH, scorer=sc_hf.name if scorer is not None else "",
                           quality=QualityConfig(disabled=LEFTOVER_FILTERS),
                           **({"template": template} if template else {}))
    fast_cfg = dataclasses.replace(plain_cfg, precision=precision)
    pool = hellobench_items()[:items + 4]
    fast, plain = ExactLengthLM(fast_lm), ExactLengthLM(PlainLM(hf))
    # each side's scorer: its own model, or a separate one timed the same way (ExactLengthLM.seconds)
    scorers = {"engine": ExactLengthLM(sc_hf) if scorer is not None else fast,
               "plain": ExactLengthLM(PlainLM(sc_hf)) if scorer is not None else plain}
    scorers["engine"].settle = fast.settle  # a scorer apart waits for the writer's background work too
    log(f"warming up {hf.name}{' and the scorer ' + sc_hf.name if scorer is not None else ''} (not timed)...")
    for m, s, c in ((fast, scorers["engine"], fast_cfg), (plain, scorers["plain"], plain_cfg)):  # one-off costs
        m.generate([{"role": "user", "content": "Hi"}], GenerationConfig(max_new_tokens=4, n=2, seed=0))
        s.loglikelihood([build_request(sc_hf, "Hi", ["A plan."], "An answer.", c.scoring())],
                        precision="bf16" if c.precision != "fp32" else "fp32")
        m.seconds = {"generate": 0.0, "score": 0.0}
        s.seconds = {"generate": 0.0, "score": 0.0}
    rows, regrets, skipped, load_before = [], [], [], os.getloadavg()
    reuse = {"reused_tokens": 0, "computed_tokens": 0}
    for item in pool:
        if len(rows) == items:
            break
        n = len(rows)
        prompt = render("reer_draft", task=item.query, answer=answer_part(item.reference)[:plain_cfg.max_answer_chars])
        order = [("engine", fast, fast_cfg), ("plain", plain, plain_cfg)]
        if n % 2:
            order.reverse()
        row = {"id": item.id, "reference_tokens": len(hf.encode(item.reference))}
        drafts, scored = {}, {}
        for label, m, c in order:  # the draft phase, timed on each side
            m.drafts, m.calls, m.phase = {}, [], "draft"
            kept = dict(m.seconds)
            t = time.perf_counter()
            drafts[label] = m.generate([{"role": "user", "content": prompt}], draft_config(c))[0]
            row[f"{label}_draft_s"] = time.perf_counter() - t
            m.seconds, m.phase = kept, "candidates"
        fast.drafts = plain.drafts = {prompt: drafts["plain"]}  # both refine the same z0
        for label, m, c in order:
            if f"{order[0][0]}_steps" in row and not row[f"{order[0][0]}_steps"]:
                break  # dropped before any step: the other side would only repeat that
            s = scorers[label]
            before, before_s, n_scored = dict(m.seconds), dict(s.seconds), len(s.scored)
            kv = _kv_counts(sc_hf)
            seconds, rec, events = _timed_reer(m, item, c, scorer=s if scorer is not None else None)
            if label == "engine":  # keys/values the fast side's scoring reused across calls (fastscore.ScoreKV)
                after = _kv_counts(sc_hf)
                reuse["reused_tokens"] += after[0] - kv[0]
                reuse["computed_tokens"] += after[1] - kv[1]
            row[f"{label}_search_s"] = seconds
            row[f"{label}_generate_s"] = m.seconds["generate"] - before["generate"] + (  # + a scorer apart's settle
                s.seconds["generate"] - before_s["generate"] if s is not m else 0.0)
            row[f"{label}_score_s"] = s.seconds["score"] - before_s["score"]
            row[f"{label}_steps"] = len(rec["steps"])
            scored[label] = s.scored[n_scored:]
            row[f"{label}_scored"] = sum(len(r) for r, _, _ in scored[label])  # sequences scored
            if label == "engine":
                steps = step_regrets(sc_hf, events, c.scoring())
                regrets += steps
                row["max_regret"], row["regret_steps"] = max((r["regret"] for r in steps), default=None), len(steps)
            row[f"{label}_s"] = row[f"{label}_draft_s"] + seconds
        if not row[f"{order[0][0]}_steps"]:
            skipped.append(item.id)
            log(f"{item.id}: the draft was dropped before any step ({'; '.join(rec['filters'].get('reasons', []))}); "
                "the next item is taken")
            continue
        # scoring, same work on both sides: the plain loop scores the fast side's own requests (the two
        # searches' filters may keep different candidates, so their own scoring calls differ)
        row["plain_own_score_s"] = row["plain_score_s"]
        row["plain_score_s"] = scoring_replay(PlainLM(sc_hf), scored["engine"])
        row["plain_search_s"] += row["plain_score_s"] - row["plain_own_score_s"]
        row["plain_s"] = row["plain_draft_s"] + row["plain_search_s"]
        for phase in ("draft", "candidates"):  # the same generations with the prompt cache off, and on
            row[f"cached_{phase}_s"] = sum(c[-1] for c in fast.calls if c[0] == phase)
        row.update({f"uncached_{k}_s": v for k, v in uncached_replay(fast_lm, fast.calls).items()})
        rows.append(row)
        log(f"item {n + 1}/{items} {item.id} ({row['reference_tokens']} reference tokens): "
            + "  ".join(f"{p} {row[p + '_s']:.1f}s (draft {row[p + '_draft_s']:.1f}s, generate "
                        f"{row[p + '_generate_s']:.1f}s, score {row[p + '_score_s']:.1f}s, {row[p + '_steps']} steps)"
                        for p in ("engine", "plain"))
            + f"  scored: {row['engine_scored']} sequences (the plain loop replayed them; its own search scored "
            f"{row['plain_scored']} in {row['plain_own_score_s']:.1f}s)"
            + f"  ratio {row['plain_s'] / row['engine_s']:.2f}x  regret over {row['regret_steps']} step(s): "
            f"{'-' if row['max_regret'] is None else format(row['max_regret'], '.1e')}  prompt cache: "
            f"candidates {row['uncached_candidates_s']:.1f}s off, {row['cached_candidates_s']:.1f}s on")
    if not rows:
        raise RuntimeError(f"bench reer: every item tried was dropped before any step ({', '.join(skipped)})")

    def total(key: str) -> float:
        return sum(r[key] for r in rows)

    phases = {}
    for phase, key in (("draft", "draft"), ("candidates", "generate"), ("scoring", "score"), ("search", "search")):
        phases[f"{phase}_engine_s"] = total(f"engine_{key}_s")
        phases[f"{phase}_plain_s"] = total(f"plain_{key}_s")
        phases[f"{phase}_speedup"] = total(f"plain_{key}_s") / max(total(f"engine_{key}_s"), 1e-9)
    cache = {}
    for phase in ("draft", "candidates"):  # the fast side's own generations, prompt cache off vs on
        cache[f"prompt_cache_{phase}_off_s"] = total(f"uncached_{phase}_s")
        cache[f"prompt_cache_{phase}_on_s"] = total(f"cached_{phase}_s")
        cache[f"prompt_cache_{phase}_speedup"] = total(f"uncached_{phase}_s") / max(total(f"cached_{phase}_s"), 1e-9)
    # "on" times the calls alone; CTranslate2's spare computes the next call's head in the background
    # (free where cores idle). With that work counted (the fast search's generation time, its waits
    # for the spare included), the cache's gain on busy cores:
    cache["prompt_cache_candidates_on_with_spare_s"] = total("engine_generate_s")
    cache["prompt_cache_candidates_speedup_with_spare"] = (total("uncached_candidates_s")
                                                           / max(total("engine_generate_s"), 1e-9))
    summary = regret_summary(regrets)
    return {
        "speedup": total("plain_s") / total("engine_s"),
        **summary,
        "scoring_target_met": scoring_target_met(summary, phases["scoring_speedup"]),
        "scoring_target": f">= {SCORING_TARGET}x the plain fp32 loop, regret <= 1e-3 over >= {MIN_REGRET_STEPS} steps",
        **phases, **cache, "prompt_cache_tokens": _prompt_cache_tokens(fast_lm), "skipped": skipped,
        "filters_off": list(LEFTOVER_FILTERS),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "engine_items_per_hour": 3600 * len(rows) / total("engine_s"),
        "plain_items_per_hour": 3600 * len(rows) / total("plain_s"),
        "engine_s": total("engine_s"), "plain_s": total("plain_s"),
        "engines": engines_of(fast_lm), "precision": precision,
        "scoring": dict(zip(("precision", "why"), scoring_precision(fast_lm, precision))), "score_kv": reuse, "plain": {"generate": "hf", "score": "hf fp32 naive, on the fast side's requests"},
        "scored_sequences": sum(r["engine_scored"] for r in rows),
        "same_steps": all(r["engine_steps"] == r["plain_steps"] for r in rows),
        "items": len(rows), **REER_BENCH, "template": plain_cfg.template, "exact_lengths": True, "store": "memory",
        "per_step": [{k: (float(f"{v:.3g}") if isinstance(v, float) else v) for k, v in r.items() if k != "fp32"}
                     for r in regrets],
        "per_item": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "model": hf.name, "scorer": sc_hf.name, "threads": torch.get_num_threads(),
    }
