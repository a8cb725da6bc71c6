"""Bradley-Terry ranking of a pairwise queue's drafts (or their sources), with bootstrap intervals.

Knows:
- The comparisons are the people's judgments of the queue (model judges' are left out), one per
  judgment: (a, b, outcome) with outcome 1 (a preferred), 0 (b preferred) or 0.5 (a tie). By
  draft the keys are the drafts' refs; by source, the drafts' sources (a judgment between two
  drafts of the same source says nothing about sources and is left out).
- Ties: a tie counts as half a win for each side (the comparison matrix takes 0.5 in both cells),
  so a tie pulls two strengths together without counting as a decision.
- The fit is choix's iterative Luce spectral ranking (`choix.ilsr_pairwise_dense`), the maximum
  likelihood Bradley-Terry estimate when every draft can be reached from every other by "beat"
  links (the graph of wins is strongly connected: the MLE exists); otherwise (a draft that won, or
  lost, everything) with choix's regulariser ALPHA, so its strength stays finite. Strengths are log-strengths centred on mean 0: the
  chance that i beats j is 1 / (1 + exp(s_j - s_i)).
- Intervals: a bootstrap over judgments (RESAMPLES resamples with replacement, seeded), each refit;
  the 2.5th and 97.5th percentiles of each strength are its 95% interval.
- `uncertain_order`: the queue's items, the one whose outcome the current fit is least sure of
  first (predicted chance closest to one half), for the "uncertain" policy.

Does not know: how judgments are taken (core.judging.pairwise), how the ranking is drawn.
"""
from __future__ import annotations

import numpy as np

from core.judging import queue as jq

RESAMPLES = 200  # bootstrap resamples for the intervals
ALPHA = 0.01  # choix's regulariser: keeps a never-beaten draft's strength finite
OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5}


def comparisons(store, queue: str, by: str = "draft", only: set[int] | None = None) -> list[tuple[str, str, float]]:
    """(a, b, outcome) per person's judgment of the queue (of the items in `only` when given: a
    person who is not a lead sees only the pairs they judged): 1 a won, 0 b won, 0.5 a tie."""
    if by not in ("draft", "source"):
        raise jq.JudgingError(f"ranking --by: {by!r}; use draft or source")
    q = jq.get_queue(store, queue)
    if q.get("kind") != "pairwise":
        raise jq.JudgingError(f"queue {queue!r} scores drafts one at a time; a ranking needs a pairwise queue "
                              "(`judge queue create NAME --pairwise`)")
    items = {i["id"]: i for i in jq.items(store, queue)}
    out = []
    for j in jq.queue_judgments(store, queue, role="person"):
        if only is not None and j["item_id"] not in only:
            continue
        it = items[j["item_id"]]
        a, b = (it["ref_a"], it["ref_b"]) if by == "draft" else (it["source"], it["source_b"])
        if a != b and j.get("prefer") in OUTCOME:
            out.append((a, b, OUTCOME[j["prefer"]]))
    return out


def _matrix(keys: list[str], comps) -> np.ndarray:
    idx = {k: i for i, k in enumerate(keys)}
    m = np.zeros((len(keys), len(keys)))
    for a, b, y in comps:
        m[idx[a], idx[b]] += y
        m[idx[b], idx[a]] += 1.0 - y
    return m


def fit(keys: list[str], comps, alpha: float = ALPHA) -> np.ndarray:
    """Bradley-Terry log-strengths of `keys` (mean 0) from (a, b, outcome) comparisons, by choix
    (unregularised when the MLE exists, else with `alpha`)."""
    import choix

    from scipy.sparse.csgraph import connected_components

    if len(keys) < 2:
        return np.zeros(len(keys))
    m = _matrix(keys, comps)
    strong = connected_components(m > 0, directed=True, connection="strong")[0] == 1
    s = np.asarray(choix.ilsr_pairwise_dense(m, alpha=0.0 if strong else alpha), dtype=float)
    return s - s.mean()


def ranking(store, queue: str, by: str = "draft", resamples: int = RESAMPLES, seed: int = 0,
            only: set[int] | None = None) -> dict:
    """{queue, by, judgments, resamples, seed, alpha, ties, rows}: a row per draft (or source), the
    strongest first, with strength, low and high (95% bootstrap interval), wins, losses, ties and
    judgments. Keys never compared are left out. `only`: count only these items' judgments."""
    comps = comparisons(store, queue, by, only)
    keys = sorted({k for a, b, _ in comps for k in (a, b)})
    s = fit(keys, comps)
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, len(keys)))
    for r in range(resamples):
        pick = rng.integers(0, len(comps), len(comps)) if comps else []
        boot[r] = fit(keys, [comps[i] for i in pick])
    lo, hi = (np.percentile(boot, [2.5, 97.5], axis=0) if resamples and keys else (s, s))
    rows = []
    for i, k in enumerate(keys):
        won = sum(y == 1.0 for a, b, y in comps if a == k) + sum(y == 0.0 for a, b, y in comps if b == k)
        lost = sum(y == 0.0 for a, b, y in comps if a == k) + sum(y == 1.0 for a, b, y in comps if b == k)
        tied = sum(y == 0.5 for a, b, y in comps if k in (a, b))
        rows.append({"key": k, "strength": round(float(s[i]), 4), "low": round(float(lo[i]), 4),
                     "high": round(float(hi[i]), 4), "wins": won, "losses": lost, "ties": tied,
                     "judgments": won + lost + tied})
    rows.sort(key=lambda r: (-r["strength"], r["key"]))
    for n, r in enumerate(rows, 1):
        r["rank"] = n
    return {"queue": queue, "by": by, "judgments": len(comps), "resamples": resamples, "seed": seed,
            "alpha": ALPHA, "regularised": "only when a draft won or lost every comparison", "ties": "half a win each", "method": "Bradley-Terry, choix.ilsr_pairwise_dense",
            "rows": rows}


def least_sure(pairs, strengths: dict, seen: dict) -> list[int]:
    """Indexes of `pairs` ((key a, key b) each), least certain predicted outcome first: |P(a beats
    b) - 1/2| smallest under `strengths` (a key without one counts as 0), then fewest judgments
    (`seen`: index -> count), then index. Shared by the queue policy and core.judging.simulate."""
    scored = []
    for i, (a, b) in enumerate(pairs):
        p = 1.0 / (1.0 + np.exp(strengths.get(b, 0.0) - strengths.get(a, 0.0)))
        scored.append((round(abs(p - 0.5), 12), seen.get(i, 0), i))
    return [i for _, _, i in sorted(scored)]


def uncertain_order(store, queue: str) -> list[int]:
    """The queue's item ids, least certain predicted outcome first under the current fit of all
    people's judgments (`least_sure`); pairs of drafts never compared count as a coin toss."""
    comps = comparisons(store, queue, "draft")
    keys = sorted({k for a, b, _ in comps for k in (a, b)})
    s = dict(zip(keys, fit(keys, comps))) if comps else {}
    its = jq.items(store, queue)
    counts: dict[int, int] = {}
    for j in jq.queue_judgments(store, queue, role="person"):
        counts[j["item_id"]] = counts.get(j["item_id"], 0) + 1
    seen = {n: counts.get(it["id"], 0) for n, it in enumerate(its)}
    return [its[n]["id"] for n in least_sure([(it["ref_a"], it["ref_b"]) for it in its], s, seen)]
