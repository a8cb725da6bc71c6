"""What `bench reer` replays after a search, untimed or timed apart from it (core.bench).

`step_regrets` / `regret_summary`: each step's regret, the fp32 score of the candidate the run chose
minus the best fp32 score among the step's candidates, and whether the target holds, judged only
over MIN_REGRET_STEPS measured steps or more. `uncached_replay`: a side's logged generations run again
with the prompt cache off (core.models.gencache, core.models.ct2's static prompt), to time the cache.
`scoring_replay`: the fast side's scoring calls run again through the plain fp32 loop, to time the
scoring phase over the same requests on both sides.
"""
from __future__ import annotations

import time

from core.models.scoring import score_candidates

MIN_REGRET_STEPS = 3  # regret_target_met is None over fewer measured steps
SCORING_TARGET = 2.5  # the fast scoring path's target: this many times the plain fp32 loop, regret kept


def regret_summary(regrets: list[dict], target: float = 1e-3, least: int = MIN_REGRET_STEPS) -> dict:
    """max_regret, identical_choices, regret_steps and regret_target_met of `step_regrets` rows.
    The target is judged only over `least` measured steps or more: over fewer, too little was shown
    to call it met or missed, so it is None (and max_regret None over none)."""
    met = all(r["regret"] <= target for r in regrets) if len(regrets) >= least else None
    return {"max_regret": max((r["regret"] for r in regrets), default=None),
            "identical_choices": sum(r["identical"] for r in regrets), "regret_steps": len(regrets),
            "regret_target_met": met}


def scoring_target_met(summary: dict, scoring_speedup: float) -> bool | None:
    """The fast scoring path's target (SCORING_TARGET times the plain loop with the regret target met);
    None when the regret target was not judged (too few measured steps)."""
    met = summary["regret_target_met"]
    return None if met is None else bool(met and scoring_speedup >= SCORING_TARGET)


def uncached_replay(lm, calls) -> dict[str, float]:
    """Seconds per phase of a side's logged generations (ExactLengthLM.calls) run again with the
    prompt cache off: same prompts, seeds and lengths, each after the engine's spare is ready."""
    hf = getattr(lm, "hf", lm)  # the HFLM under an engine wrapper
    flags = [(o, a) for o, a in ((lm, "use_prompt_cache"), (hf, "use_prefix_cache")) if a in vars(o)]
    kept = [getattr(o, a) for o, a in flags]
    out: dict[str, float] = {}
    try:
        for o, a in flags:
            setattr(o, a, False)
        for phase, messages, config, prefix, _ in calls:
            getattr(lm, "ready", lambda: None)()
            t = time.perf_counter()
            lm.generate(messages, config, prefix=prefix)
            out[phase] = out.get(phase, 0.0) + time.perf_counter() - t
    finally:
        for (o, a), v in zip(flags, kept):
            setattr(o, a, v)
    return out


def scoring_replay(plain, scored) -> float:
    """Seconds the plain loop (`plain`, core.bench.PlainLM) takes to score a side's logged scoring
    calls (ExactLengthLM.scored): the same requests, in the same calls, in fp32. So the scoring phase
    is compared over the same work: the two sides' searches may keep different candidates."""
    seconds = 0.0
    for requests, _, truncate in scored:
        t = time.perf_counter()
        plain.loglikelihood(requests, "fp32", truncate)
        seconds += time.perf_counter() - t
    return seconds


def step_regrets(lm, events, scfg) -> list[dict]:
    """For every step of a finished search that scored 2+ candidates: the fp32 score of the
    candidate the run chose (lowest score as the run computed it) minus the best fp32 score
    among them (0 = the choice fp32 makes), re-scored here with `lm` in fp32 (untimed)."""
    import dataclasses

    exact = dataclasses.replace(scfg, precision="fp32")
    start = next(e for e in events if e.kind == "run_started")
    segs, rows, texts, fast, at = None, [], {}, {}, 0
    for e in events:
        if e.kind == "initial_draft":
            segs = list(e.segments)
        elif e.kind == "segment_started":
            texts, fast, at = {}, {}, e.segment
        elif e.kind == "candidate_generated" and e.text is not None:
            texts[e.index] = e.text
        elif e.kind == "candidate_scored" and e.index >= 0:
            fast[e.index] = (e.score["score"], e.score.get("precision", "fp32"))
        elif e.kind == "segment_decided":
            if len(fast) >= 2 and segs is not None:
                ks = sorted(fast)
                ref = score_candidates(lm, start.query, segs, at, [texts[k] for k in ks], start.reference, exact)
                fp32 = {k: s.score for k, s in zip(ks, ref)}
                chosen = min(ks, key=lambda k: (fast[k][0], k))
                best = min(ks, key=lambda k: (fp32[k], k))
                rows.append({"step": e.step, "segment": at, "candidates": len(ks), "chosen": chosen,
                             "fp32": [fp32[k] for k in ks],
                             "regret": fp32[chosen] - fp32[best], "identical": chosen == best,
                             "rechecked": sum(p == "fp32" for _, p in fast.values()),
                             "fast_error": max(abs(fast[k][0] - fp32[k]) for k in ks),
                             "gap": min(abs(fp32[a] - fp32[b]) for a in ks for b in ks if a < b)})
            segs = list(e.segments)
    return rows
