"""Agreement between annotators on a judging queue: Krippendorff's alpha (ordinal) per criterion and
on the overall score, pairwise agreement (exact and within one point), the items people disagree on
most, and their resolution (a lead's judgment or a discussion note, stored).

The statistic comes from PyPI `krippendorff` (0.9.0, pure Python over numpy, maintained, MIT): it
takes a coders x units matrix with NaN for a missing value, which is exactly what a queue with
overlap k < number of annotators gives, and its ordinal metric is Krippendorff's own (the distance
between two values counts the values people used between them: δ²(c,k) = (Σ_{g=c..k} n_g -
(n_c+n_k)/2)²), so scores like 7.5 or an unused 4 need no mapping. tests/core/judging/test_judging_agreement.py
checks it against a coincidence matrix worked out by hand (docs/judging.md shows the sums).
Alpha is None (with a reason) when it is undefined: fewer than two values on any item, or every
value the same (no variation to agree on).

Only people's judgments count (role "person"); a model judge is compared with people by
core.judging.calibration, never mixed into their agreement.

Does not know: how judgments are collected (core.judging.queue) or shown.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

from core import annotators as who
from core.judging import queue as jq
from core.store import Store, now

OVERALL = "overall"  # the name the overall score goes by among the criteria


@dataclass(frozen=True)
class Alpha:
    value: float | None  # Krippendorff's alpha, ordinal; None when undefined
    units: int  # items with at least two values (pairable)
    values: int  # values on those items
    why: str = ""  # why value is None


def alpha_ordinal(matrix: list[list[float | None]]) -> Alpha:
    """Krippendorff's ordinal alpha of a coders x units matrix (None = missing)."""
    import krippendorff
    import numpy as np

    cols = list(zip(*matrix)) if matrix else []
    pairable = [[v for v in col if v is not None] for col in cols]
    pairable = [c for c in pairable if len(c) >= 2]
    units, values = len(pairable), sum(len(c) for c in pairable)
    if units == 0:
        return Alpha(None, 0, 0, "no item has two judgments yet")
    if len({v for c in pairable for v in c}) < 2:
        return Alpha(None, units, values, "every value is the same: nothing to agree or disagree on")
    data = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix], dtype=float)
    a = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))
    return Alpha(a if math.isfinite(a) else None, units, values, "" if math.isfinite(a) else "undefined")


def _value(j: dict, criterion: str) -> float | None:
    v = j["overall"] if criterion == OVERALL else (j.get("scores") or {}).get(criterion)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def table(store: Store, queue: str, only: set[int] | None = None) -> tuple[list[str], list[int], dict[tuple[str, int], dict]]:
    """(annotators, item ids, {(annotator, item): judgment}) of the people's judgments in the queue
    (of the items in `only` when given: what a person who is not a lead may see, jq.judged_items)."""
    got = {(j["annotator"], j["item_id"]): j for j in jq.queue_judgments(store, queue)
           if only is None or j["item_id"] in only}
    people = sorted({a for a, _ in got})
    item_ids = sorted({i for _, i in got})
    return people, item_ids, got


def pairwise(values: dict[str, dict[int, float]], within: float = 1.0) -> tuple[list[dict], dict]:
    """Per pair of annotators: items both judged (n), share with the same score (exact), share within
    `within` points; plus the pooled figures over every pair. Shares are None for n = 0."""
    pairs, tot = [], {"n": 0, "exact": 0, "within": 0}
    for a, b in itertools.combinations(sorted(values), 2):
        shared = sorted(set(values[a]) & set(values[b]))
        exact = sum(values[a][i] == values[b][i] for i in shared)
        near = sum(abs(values[a][i] - values[b][i]) <= within + 1e-9 for i in shared)
        n = len(shared)
        pairs.append({"a": a, "b": b, "n": n, "exact": exact / n if n else None, "within1": near / n if n else None})
        tot["n"] += n
        tot["exact"] += exact
        tot["within"] += near
    n = tot["n"]
    return pairs, {"n": n, "exact": tot["exact"] / n if n else None, "within1": tot["within"] / n if n else None}


def report(store: Store, queue: str, only: set[int] | None = None) -> dict:
    """{queue, annotators, items, criteria: [{criterion, alpha, why, units, values, exact, within1,
    pairs}], overall: {the same for the overall score}}; over the items in `only` when given."""
    q = jq.get_queue(store, queue)
    people, item_ids, got = table(store, queue, only)
    out = []
    for crit in list(q["rubric"]) + [OVERALL]:
        matrix = [[_value(got[(a, i)], crit) if (a, i) in got else None for i in item_ids] for a in people]
        al = alpha_ordinal(matrix)
        values = {a: {i: v for i, v in zip(item_ids, row) if v is not None} for a, row in zip(people, matrix)}
        pairs, pooled = pairwise(values)
        out.append({"criterion": crit, "alpha": al.value, "why": al.why, "units": al.units, "values": al.values,
                    "exact": pooled["exact"], "within1": pooled["within1"], "pairs": pairs})
    return {"queue": queue, "annotators": people, "items": len(item_ids), "criteria": out[:-1], "overall": out[-1]}


def default_spread(q: dict) -> float:
    """The spread that counts as a disagreement unless asked otherwise: a third of the scale (3 on 1-10)."""
    return (q["high"] - q["low"]) / 3


def disagreements(store: Store, queue: str, min_spread: float | None = None, only: set[int] | None = None) -> list[dict]:
    """Items whose people's overall scores (or any criterion's) spread by at least `min_spread`, widest
    first: {item_id, ref, spread (overall), worst (criterion, spread), scores {annotator: overall},
    resolved (bool), resolutions}; among the items in `only` when given."""
    q = jq.get_queue(store, queue)
    limit = default_spread(q) if min_spread is None else min_spread
    people, item_ids, got = table(store, queue, only)
    refs = {i["id"]: i["ref"] for i in jq.items(store, queue)}
    rows = []
    for i in item_ids:
        js = [got[(a, i)] for a in people if (a, i) in got]
        if len(js) < 2:
            continue
        spreads = {}
        for crit in list(q["rubric"]) + [OVERALL]:
            vals = [v for v in (_value(j, crit) for j in js) if v is not None]
            if len(vals) >= 2:
                spreads[crit] = max(vals) - min(vals)
        if not spreads or max(spreads.values()) < limit:
            continue
        worst = max(spreads.items(), key=lambda kv: kv[1])
        res = resolutions(store, i)
        rows.append({"item_id": i, "ref": refs.get(i), "spread": spreads.get(OVERALL, 0.0), "worst": list(worst),
                     "scores": {j["annotator"]: j["overall"] for j in js}, "resolved": bool(res),
                     "resolutions": res})
    rows.sort(key=lambda r: (-r["spread"], -r["worst"][1], r["item_id"]))
    return rows


def resolve(store: Store, item_id: int, resolver: str | None = None, overall: float | None = None,
            scores: dict | None = None, note: str = "") -> int:
    """Store a lead's resolution of an item: a judgment (overall, and criteria if given) and/or a
    discussion note; returns its id. JudgingError when neither is given or a score is off the scale."""
    name = who.resolve(resolver)
    if name is None:
        raise jq.JudgingError(f"resolve item {item_id}: say who resolves it (--annotator NAME)")
    if overall is None and not (note or "").strip():
        raise jq.JudgingError(f"resolve item {item_id}: give the lead's overall score (--overall) or a note (--note)")
    with store.transaction():
        item = jq.get_item(store, item_id)
        got = None
        if overall is not None:
            q = jq.get_queue(store, item["queue"])
            got, overall = jq.check_scores(q, scores, overall, where="resolution")
        return store.db["judging_resolutions"].insert({
            "item_id": item_id, "resolver": name, "overall": overall,
            "scores": json.dumps(got, ensure_ascii=False) if got is not None else None,
            "note": (note or "").strip(), "created_at": now()}).last_pk


def resolutions(store: Store, item_id: int) -> list[dict]:
    """The item's resolutions, oldest first: {resolver, overall, scores (or None), note, created_at}."""
    with store.reading():
        rows = list(store.db.query("SELECT resolver, overall, scores, note, created_at FROM judging_resolutions "
                                   "WHERE item_id = ? ORDER BY id", [item_id]))
    return [{**r, "scores": json.loads(r["scores"]) if r["scores"] else None} for r in rows]


def card_lines(rep: dict) -> list[str]:
    """The dataset card's agreement section: alpha and pairwise figures per criterion and overall."""
    def fmt(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [f"Queue `{rep['queue']}`: {len(rep['annotators'])} annotator(s), {rep['items']} judged item(s).", "",
             "| criterion | Krippendorff's alpha (ordinal) | exact | within ±1 | items |", "|---|---|---|---|---|"]
    for r in rep["criteria"] + [rep["overall"]]:
        crit = r["criterion"].replace("|", "/")
        lines.append(f"| {crit[:80]} | {fmt(r['alpha'])} | {fmt(r['exact'])} | {fmt(r['within1'])} | {r['units']} |")
    return lines
