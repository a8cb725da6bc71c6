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
"""
from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import torch

from core.fastscore import naive_logprobs
from core.scoring import ScoringConfig, build_request, score_candidates, summarize
from core.lm import TokenLogprobs

HELLOBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hellobench"

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


def hellobench_pairs(root: Path = HELLOBENCH) -> list[dict]:
    path = root / "heuristic_text_generation_claude35_responses.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: HelloBench data not found; pass --data DIR")
    return [json.loads(line) for line in path.open()]


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
    from core.lm import GenerationConfig
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
    pairs = hellobench_pairs()
    rec = pairs[item]
    query, reference = rec["instruction"], rec["response"]
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
