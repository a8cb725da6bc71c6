"""R2 runs waiting for a person, through a judging queue: which texts wait (`waiting_refs`), and
`feed`, which hands the people's consensus on a queued text back to its run as the human judgment it
waits for (core.r2.jobs.submit_judgment), so the run goes on when resumed.

Knows: a paused R2 run waits on a `judgment_requested` event for one version of its text
(core.r2.jobs.pending_request); its queue reference is `r2:RUN_ID:VERSION` (core.judging.queue). The
consensus is the median of the people's overall and per-criterion scores (criteria matched by their
text with the run's rubric; the run's others stay unscored), the critique their critiques joined
(one is needed: it becomes the writer's reflection), the judgment's annotator the person who feeds
it, and its note names the people.

Does not know: the R2 loop itself (core.r2.loop), nor when a run is resumed (the CLI's `r2 run`, the
studio's runner).
"""
from __future__ import annotations

import statistics

from core import annotators as who
from core.judging import queue as jq
from core.store import Store


def waiting_refs(store: Store) -> list[str]:
    """`r2:RUN_ID:VERSION` of every R2 run paused for a person's judgment, oldest run first."""
    from core.r2.jobs import pending_request

    out = []
    for run in reversed(store.list_runs(kind="r2", status="paused")):
        req = pending_request(store, run["id"])
        if req is not None:
            out.append(f"r2:{run['id']}:{req.version}")
    return out


def feed(store: Store, item_id: int, by: str | None = None) -> int:
    """Give the run of an `r2:` item the people's consensus judgment; returns the event's seq.
    JudgingError when the item is no R2 text, its run no longer waits for that version, nobody has
    judged it, or nobody wrote a critique."""
    from core.r2.jobs import pending_request, submit_judgment
    from core.r2.judge import JudgeConfig, human_judgment

    item = jq.get_item(store, item_id)
    if not item["ref"].startswith("r2:"):
        raise jq.JudgingError(f"item {item_id} ({item['ref']}) is not a text of an R2 run; only r2: items feed a run")
    run_id, _, version = item["ref"][3:].rpartition(":")
    req = pending_request(store, run_id)
    if req is None or req.version != int(version):
        raise jq.JudgingError(f"item {item_id}: run {run_id!r} is not waiting for a judgment of version {version}")
    people = jq.queue_judgments(store, item["queue"])
    people = [j for j in people if j["item_id"] == item_id]
    if not people:
        raise jq.JudgingError(f"item {item_id}: nobody has judged it yet; `palimpsest judge next {item['queue']}`")
    critique = " ".join(j["critique"].strip() for j in people if (j["critique"] or "").strip())
    if not critique:
        raise jq.JudgingError(f"item {item_id}: no judge wrote a critique; the writer needs one to reflect on "
                              "(submit with --critique)")
    started = store.events(run_id)[0]
    judge = started.settings["judge"]
    q = jq.get_queue(store, item["queue"])
    scores = {}
    for crit in started.rubric:
        vals = [j["scores"].get(crit) for j in people if j["scores"].get(crit) is not None]
        if vals:
            scores[crit] = statistics.median(vals)
    if (q["low"], q["high"]) != (judge["low"], judge["high"]):
        raise jq.JudgingError(f"item {item_id}: queue {q['name']!r} scores {q['low']:g}-{q['high']:g}, the run "
                              f"{judge['low']:g}-{judge['high']:g}; judge it in a queue on the run's scale")
    names = ", ".join(sorted(j["annotator"] for j in people))
    j = human_judgment(started.rubric, statistics.median(j["overall"] for j in people), critique, scores,
                       cfg=JudgeConfig(low=judge["low"], high=judge["high"]),
                       note=f"median of {names} (judging queue {q['name']}, item {item_id})",
                       annotator=who.resolve(by))
    return submit_judgment(store, run_id, j, version=int(version))  # refused if the run moved on meanwhile
