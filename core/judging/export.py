"""Judgments in an export (called by core.export for the parquet and hf formats): every
annotator's judgment of the exported drafts as its own table, a reward-model pairs file, and the
dataset card's agreement section.

Knows:
- The judgments table (`judgments.parquet`, or a `judgments` datasets folder for hf): one row per
  judgment of a queue item whose draft is in the export (a trajectory exported, or a text of the R2
  run it came from): queue, item_id, ref, prompt_id, annotator ("unknown" never occurs here: queue
  judgments always name theirs), role (person / model), overall, scores (JSON text, criterion ->
  score), critique, note, created_at.
- `rm_pairs.jsonl`: {"prompt", "chosen", "rejected", "chosen_ref", "rejected_ref", "chosen_scores",
  "rejected_scores", "margin", "queue"} for two drafts of the same prompt in one queue that people
  agreed on: each has at least `min_raters` people's overall scores and every score of the chosen is
  above every score of the rejected (no overlap: not one person preferred the other or tied them);
  margin = median(chosen) - median(rejected). Model judgments never make a pair.
- Card lines: judgments per annotator and, per queue, Krippendorff's alpha and pairwise agreement
  (core.judging.agreement.card_lines).

Does not know: the export's folder handling (core.export writes into its temporary folder and
swaps it in) or its other formats.
"""
from __future__ import annotations

import itertools
import json
import statistics
from collections import Counter
from pathlib import Path

from core.judging import agreement as ag
from core.store import Store

JUDGMENTS_FILE = {"parquet": "judgments.parquet", "hf": "judgments"}
PAIRS_FILE = "rm_pairs.jsonl"
MIN_RATERS = 2  # people's judgments each draft of a pair needs


def _in_export(store: Store, trajectory_ids: set[int]) -> set[str]:
    """The refs an export covers: its trajectories and the R2 texts of their runs (by prefix)."""
    refs = {f"traj:{t}" for t in trajectory_ids}
    for t in trajectory_ids:
        row = store.get_trajectory(t)
        if row["kind"] == "r2":
            refs.add(f"r2:{row['run_id']}:")
    return refs


def _covered(ref: str, refs: set[str]) -> bool:
    return ref in refs or (ref.startswith("r2:") and ref[:ref.rfind(":") + 1] in refs)


def covered_refs(store: Store, trajectory_ids: set[int]):
    """A test `ref -> bool`: does an export of these trajectories cover the draft `ref`?"""
    refs = _in_export(store, trajectory_ids)
    return lambda ref: _covered(str(ref), refs)


def exported_items(store: Store, trajectory_ids: set[int] | None = None) -> list[dict]:
    """Queue items (with their queue) whose draft is in the export; every item when ids is None."""
    with store.reading():
        rows = list(store.db.query("SELECT * FROM judging_items ORDER BY queue, id"))
    if trajectory_ids is None:
        return rows
    refs = _in_export(store, trajectory_ids)
    return [r for r in rows if _covered(r["ref"], refs)]


def judgment_rows(store: Store, trajectory_ids: set[int] | None = None) -> list[dict]:
    """The judgments table's rows (see the module docstring)."""
    items = {r["id"]: r for r in exported_items(store, trajectory_ids)}
    if not items:
        return []
    with store.reading():
        rows = list(store.db.query("SELECT * FROM judging_judgments ORDER BY queue, item_id, id"))
    return [{"queue": j["queue"], "item_id": j["item_id"], "ref": items[j["item_id"]]["ref"],
             "prompt_id": items[j["item_id"]]["prompt_id"], "annotator": j["annotator"], "role": j["role"],
             "overall": j["overall"], "scores": j["scores"], "critique": j["critique"] or "", "note": j["note"] or "",
             "created_at": j["created_at"]} for j in rows if j["item_id"] in items]


def rm_pairs(store: Store, trajectory_ids: set[int] | None = None, min_raters: int = MIN_RATERS) -> list[dict]:
    """Reward-model pairs the people agreed on (see the module docstring)."""
    items = exported_items(store, trajectory_ids)
    scores: dict[int, list[float]] = {}
    with store.reading():
        for item_id, overall in store.db.execute("SELECT item_id, overall FROM judging_judgments WHERE role = 'person' "
                                                 "AND overall IS NOT NULL"):
            scores.setdefault(item_id, []).append(float(overall))
    groups: dict[tuple[str, str], list[dict]] = {}
    for it in items:
        if it["prompt_id"] and len(scores.get(it["id"], [])) >= min_raters:
            groups.setdefault((it["queue"], it["prompt_id"]), []).append(it)
    out = []
    for (queue, _), members in sorted(groups.items()):
        for a, b in itertools.combinations(members, 2):
            sa, sb = scores[a["id"]], scores[b["id"]]
            if min(sa) > max(sb):
                chosen, rejected = (a, sa), (b, sb)
            elif min(sb) > max(sa):
                chosen, rejected = (b, sb), (a, sa)
            else:
                continue
            out.append({"prompt": chosen[0]["query"] or "", "chosen": chosen[0]["text"], "rejected": rejected[0]["text"],
                        "chosen_ref": chosen[0]["ref"], "rejected_ref": rejected[0]["ref"],
                        "chosen_scores": sorted(chosen[1]), "rejected_scores": sorted(rejected[1]),
                        "margin": statistics.median(chosen[1]) - statistics.median(rejected[1]), "queue": queue})
    return out


def card_lines(store: Store, rows: list[dict], pairs: list[dict]) -> list[str]:
    """The card's "Human judgments" section (empty when there are no judgments)."""
    if not rows:
        return []
    people = Counter(r["annotator"] for r in rows if r["role"] == "person")
    models = Counter(r["annotator"] for r in rows if r["role"] == "model")
    lines = ["", "## Human judgments",
             f"{sum(people.values())} judgment(s) by {len(people)} annotator(s) in `{JUDGMENTS_FILE['parquet']}` "
             f"(hf: `{JUDGMENTS_FILE['hf']}/`), one row per annotator and draft; {len(pairs)} reward-model pair(s) "
             f"people agreed on in `{PAIRS_FILE}` (each draft judged by at least {MIN_RATERS}, every score of the "
             "chosen above every score of the rejected)."]
    lines += [f"- {name}: {n}" for name, n in sorted(people.items())]
    lines += [f"- {name} (model judge, not in the agreement figures): {n}" for name, n in sorted(models.items())]
    for queue in sorted({r["queue"] for r in rows}):
        lines += ["", "### Agreement"] + ag.card_lines(ag.report(store, queue))
    return lines


def write_tables(store: Store, fmt: str, folder: Path, trajectory_ids: set[int] | None = None) -> tuple[list[Path], list[str]]:
    """Write the judgments table and the pairs file into `folder` (an export's temporary folder) for
    the parquet / hf formats; returns (paths written, card lines). Nothing when no judgment covers the
    export (or for another format)."""
    if fmt not in JUDGMENTS_FILE:
        return [], []
    rows = judgment_rows(store, trajectory_ids)
    if not rows:
        return [], []
    pairs = rm_pairs(store, trajectory_ids)
    table = folder / JUDGMENTS_FILE[fmt]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), table)
    else:
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(table))
    with open(folder / PAIRS_FILE, "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    return [table, folder / PAIRS_FILE], card_lines(store, rows, pairs)
