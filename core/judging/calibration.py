"""Calibrating a model judge against people: its scores against the human consensus on the same
drafts, per criterion and overall: Spearman's rho, Kendall's tau-b, mean bias and n, with the
points for a scatter plot; and `calibrate`, which asks the model judge (core.r2.judge.model_judge)
about a sample of drafts, stores its judgments as annotator "model:<spec>" and queues the same
drafts for people.

The correlations are computed here, exactly, in a few lines (Spearman: Pearson's r of average
ranks; Kendall: tau-b, which corrects for ties), not with scipy: scipy is a 40 MB dependency for two
formulas, and judge scores on a 1-10 scale are full of ties, which both formulas handle as
written. tests/core/judging/test_judging_calibration.py checks them against values worked by hand (with and
without ties). A correlation is None when it is undefined (fewer than two items, or one side
constant).

The consensus of an item is the median (or mean) of its people's scores; a lead's resolution with
scores (core.judging.agreement.resolve) replaces it when `use_resolutions`.

Does not know: how people's judgments are collected (core.judging.queue), plots (the studio draws
the points), the R2 loop.
"""
from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Iterator, Sequence

from core.judging import agreement
from core import annotators as who
from core.judging import queue as jq
from core.store import Store

OVERALL = agreement.OVERALL
TRUST_MIN_N = 5  # fewer items than this in common with people: agreement counts as unknown
TRUST_LOW = 0.3  # a Spearman rho on the overall score below this counts as low
RESAMPLES = 1000  # bootstrap resamples of the drafts for the correlations' 95% intervals


def average_ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the average ranks (ties handled); None when undefined."""
    return pearson(average_ranks(xs), average_ranks(ys)) if len(xs) == len(ys) else None


def kendall_tau_b(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Kendall's tau-b: (concordant - discordant) / sqrt((pairs - ties in x)(pairs - ties in y)); None
    when undefined. O(n²): calibration samples are tens to hundreds of drafts."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0:
                tx += 1
            if dy == 0:
                ty += 1
            if dx != 0 and dy != 0:
                if (dx > 0) == (dy > 0):
                    conc += 1
                else:
                    disc += 1
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - tx) * (pairs - ty))
    return (conc - disc) / denom if denom > 0 else None


def bootstrap_ci(xs: Sequence[float], ys: Sequence[float], stat, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[float | None, float | None]:
    """The 95% interval (2.5th and 97.5th percentiles) of `stat(xs, ys)` over `resamples` bootstrap
    resamples of the drafts (pairs drawn with replacement, seeded); a resample where the statistic is
    undefined (one side constant) is left out; (None, None) when most are."""
    n = len(xs)
    if n < 2 or resamples < 1:
        return None, None
    rng = random.Random(seed)
    got = []
    for _ in range(resamples):
        pick = [rng.randrange(n) for _ in range(n)]
        v = stat([xs[i] for i in pick], [ys[i] for i in pick])
        if v is not None:
            got.append(v)
    if len(got) < resamples / 2:
        return None, None
    got.sort()
    at = lambda q: got[min(len(got) - 1, max(0, round(q * (len(got) - 1))))]  # noqa: E731
    return round(at(0.025), 4), round(at(0.975), 4)


def consensus(store: Store, queue: str, how: str = "median", use_resolutions: bool = True) -> dict[int, dict]:
    """{item_id: {criterion or "overall": consensus score}} over the people's judgments of each item."""
    if how not in ("median", "mean"):
        raise jq.JudgingError(f"consensus: {how!r}; use median or mean")
    q = jq.get_queue(store, queue)
    agg = statistics.median if how == "median" else statistics.fmean
    by_item: dict[int, list[dict]] = {}
    for j in jq.queue_judgments(store, queue):
        by_item.setdefault(j["item_id"], []).append(j)
    out = {}
    for item_id, js in by_item.items():
        row = {}
        for crit in list(q["rubric"]) + [OVERALL]:
            vals = [v for v in (agreement._value(j, crit) for j in js) if v is not None]
            if vals:
                row[crit] = float(agg(vals))
        if use_resolutions:
            lead = [r for r in agreement.resolutions(store, item_id) if r["overall"] is not None]
            if lead:
                r = lead[-1]
                row.update({c: float(v) for c, v in (r["scores"] or {}).items() if v is not None})
                row[OVERALL] = float(r["overall"])
        out[item_id] = row
    return out


def model_judges(store: Store, queue: str) -> list[str]:
    """The model judges ("model:<spec>") with judgments in the queue."""
    return sorted({j["annotator"] for j in jq.queue_judgments(store, queue, role="model")})


def report(store: Store, queue: str, model: str, how: str = "median", only: set[int] | None = None) -> dict:
    """{queue, model, consensus, criteria: [{criterion, n, spearman, kendall, spearman_ci, kendall_ci, bias,
    points}], overall: {...}}; *_ci: the 95% bootstrap interval (bootstrap_ci, RESAMPLES, seed 0).
    bias = mean(model - consensus); points = [(consensus, model, item_id)] for a scatter plot. Over the
    items in `only` when given (what a person who is not a lead may see, jq.judged_items)."""
    q = jq.get_queue(store, queue)
    human = {i: row for i, row in consensus(store, queue, how).items() if only is None or i in only}
    machine = {j["item_id"]: j for j in jq.queue_judgments(store, queue, role="model")
               if j["annotator"] == model and (only is None or j["item_id"] in only)}
    rows = []
    for crit in list(q["rubric"]) + [OVERALL]:
        pts = []
        for item_id in sorted(set(human) & set(machine)):
            h, m = human[item_id].get(crit), agreement._value(machine[item_id], crit)
            if h is not None and m is not None:
                pts.append((h, float(m), item_id))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        rows.append({"criterion": crit, "n": len(pts), "spearman": spearman(xs, ys), "kendall": kendall_tau_b(xs, ys),
                     "spearman_ci": bootstrap_ci(xs, ys, spearman), "kendall_ci": bootstrap_ci(xs, ys, kendall_tau_b),
                     "bias": sum(y - x for x, y in zip(xs, ys)) / len(pts) if pts else None, "points": pts})
    unparsed = sum(1 for j in machine.values() if j["overall"] is None)
    return {"queue": queue, "model": model, "consensus": how, "judged_by_model": len(machine), "unparsed": unparsed,
            "criteria": rows[:-1], "overall": rows[-1]}


def trust(store: Store, spec: str, rubric: Sequence[str] | None = None) -> dict:
    """How far the model judge `spec` agrees with people, for the R2 page's warning: {level: "unknown"
    | "low" | "ok", spearman, interval, n, queue, message}. Looks at every queue (with this rubric, if
    given) where the model judged drafts that people judged too; the one with most such drafts
    decides. Low: Spearman below TRUST_LOW; ok: its 95% bootstrap interval lies wholly at or above
    TRUST_LOW; unknown: fewer than TRUST_MIN_N drafts, or an interval that reaches below TRUST_LOW
    while the point is above it (too few drafts to tell)."""
    name = who.model_name(spec)
    best = None
    for q in jq.list_queues(store):
        if rubric is not None and list(q["rubric"]) != [c.strip() for c in rubric]:
            continue
        if name not in model_judges(store, q["name"]):
            continue
        r = report(store, q["name"], name)["overall"]
        if best is None or r["n"] > best[1]["n"]:
            best = (q["name"], r)
    if best is None or best[1]["n"] < TRUST_MIN_N or best[1]["spearman"] is None:
        n = best[1]["n"] if best else 0
        return {"level": "unknown", "spearman": None, "interval": None, "n": n, "queue": best[0] if best else None,
                "message": f"agreement of {spec} with people on this rubric is unknown ({n} draft(s) judged by both; "
                           f"calibrate it on {TRUST_MIN_N} or more: `palimpsest judge calibrate`)"}
    q, r = best
    lo, hi = r["spearman_ci"]
    level = "low" if r["spearman"] < TRUST_LOW else ("ok" if lo is not None and lo >= TRUST_LOW else "unknown")
    ci = f", 95% interval {lo:.2f} to {hi:.2f}" if lo is not None else ""
    return {"level": level, "spearman": r["spearman"], "interval": [lo, hi], "n": r["n"], "queue": q,
            "message": f"{spec} vs people on queue {q}: Spearman {r['spearman']:.2f}{ci} over {r['n']} drafts"
                       + (" (low: check its scores by hand)" if level == "low" else
                          f" (the interval reaches below {TRUST_LOW:g}: too few drafts to tell; calibrate on more)"
                          if level == "unknown" else "")}


# ---- asking the model judge -------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibrated:
    """One draft judged by the model during `iter_calibrate`."""
    done: int  # drafts judged so far (this one included)
    total: int  # drafts to judge
    item_id: int  # the queue item
    ref: str  # the draft
    overall: float | None  # the model's overall score (None: its reply did not parse)
    error: str | None = None  # why it did not parse


def sample_refs(store: Store, n: int, seed: int = 0, kind: str | None = None, status: str | None = None) -> list[str]:
    """`n` trajectories picked at random (seeded: the same seed, the same sample), as traj:ID refs."""
    rows = store.list_trajectories(status=status, kind=kind)
    if n < 1:
        raise jq.JudgingError(f"calibrate: sample size {n}; give 1 or more")
    if not rows:
        raise jq.JudgingError("calibrate: no trajectories to sample; run REER or R2, or import some first")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    return [f"traj:{r['id']}" for r in sorted(picked, key=lambda r: r["id"])]


def iter_calibrate(store: Store, lm, spec: str, queue: str, refs: Sequence[str], cfg=None, overlap: int | None = None,
                   rubric: Sequence[str] | None = None, seed: int = 0, by: str | None = None) -> Iterator[Calibrated]:
    """Queue the drafts (creating the queue with `rubric` and `overlap` if it does not exist), then ask
    the model judge about each, storing its judgment as "model:<spec>" as soon as it is read (a kill
    keeps every one stored so far; a rerun judges again and replaces). Yields one Calibrated per draft."""
    from core.r2.judge import JudgeConfig, model_judge

    existing = {q["name"] for q in jq.list_queues(store)}
    if queue not in existing:
        jq.create_queue(store, queue, rubric, overlap=overlap or jq.DEFAULT_OVERLAP, created_by=by)
    q = jq.get_queue(store, queue)
    cfg = cfg or JudgeConfig(low=q["low"], high=q["high"])
    if (cfg.low, cfg.high) != (q["low"], q["high"]):
        raise jq.JudgingError(f"calibrate: the judge's scale {cfg.low:g}-{cfg.high:g} is not queue {queue!r}'s "
                              f"{q['low']:g}-{q['high']:g}")
    jq.add_items(store, queue, refs, added_by=by)
    wanted = {jq.draft(store, r)["ref"] for r in refs}
    todo = [i for i in jq.items(store, queue) if i["ref"] in wanted]
    name = who.model_name(spec)
    for n, item in enumerate(todo, 1):
        j = model_judge(lm, item["query"] or "", item["text"], tuple(q["rubric"]), cfg, seed=seed)
        jq.record_model_judgment(store, item["id"], name, dict(j.scores), j.overall if j.parsed else None,
                                 critique=j.critique, note=j.error or "")
        yield Calibrated(n, len(todo), item["id"], item["ref"], j.overall if j.parsed else None, j.error)


def calibrate(store: Store, lm, spec: str, queue: str, refs: Sequence[str], **kw) -> dict:
    """iter_calibrate to the end; returns the calibration report (empty correlations until people judge)."""
    for _ in iter_calibrate(store, lm, spec, queue, refs, **kw):
        pass
    return report(store, queue, who.model_name(spec))
