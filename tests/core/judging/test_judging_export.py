"""Export of judgments: the parquet / hf exports carry every annotator's judgment of the exported drafts
as their own table, reward-model pairs only where people agreed, and the card's agreement figures;
other formats and exports without judgments are unchanged."""
from __future__ import annotations

import json

from library_fixtures import REER_ITEMS

from core.export import export
from core.judging import export as jx
from core.judging import queue as jq


def _drafts_of_one_prompt(store, answers):
    """Trajectories of the same prompt (one REER run each), accepted; their ids."""
    q, thinking, ref = REER_ITEMS[0]
    pid, _ = store.add_prompt(q, ref)
    ids = []
    for a in answers:
        run = store.create_run("reer", pid, {}, "m")
        t = store.save_trajectory(run, thinking, a, final_score=0.3, filters={"passed": True, "reasons": []})
        store.set_status(t, "accepted")
        ids.append(t)
    return ids


def _judged(store):
    ids = _drafts_of_one_prompt(store, ["Best answer.", "Middle answer.", "Weak answer."])
    jq.create_queue(store, "q", ["clear"], overlap=2, open_items=True)  # judged by id
    items, _ = jq.add_items(store, "q", [f"traj:{t}" for t in ids])
    # best: 8, 9; middle: 5, 7; weak: 6, 2 -> best > middle (5,7 < 8), best > weak; middle vs weak overlap (6 in 5..7)
    for name, scores in (("ann", [8, 5, 6]), ("bob", [9, 7, 2])):
        for item, s in zip(items, scores):
            jq.submit(store, item, name, {"clear": s}, overall=s)
    jq.record_model_judgment(store, items[0], "model:scripted:", {"clear": 4}, 4)
    return ids, items


def test_pairs_only_where_every_person_agrees(store):
    _judged(store)
    pairs = jx.rm_pairs(store)
    assert [(p["chosen"], p["rejected"], p["margin"]) for p in pairs] == [
        ("Best answer.", "Middle answer.", 2.5), ("Best answer.", "Weak answer.", 4.5)]
    assert pairs[0]["chosen_scores"] == [8, 9] and pairs[0]["prompt"] == REER_ITEMS[0][0]
    assert jx.rm_pairs(store, min_raters=3) == []


def test_parquet_export_carries_judgments_pairs_and_agreement(store, tmp_path):
    import pyarrow.parquet as pq

    _judged(store)
    rep = export(store, "parquet", tmp_path / "out")
    names = sorted(p.rsplit("/", 1)[-1] for p in rep.files)
    assert names == ["data.parquet", "judgments.parquet", "rm_pairs.jsonl"]
    rows = pq.read_table(tmp_path / "out" / "judgments.parquet").to_pylist()
    assert sorted((r["annotator"], r["role"], r["overall"]) for r in rows)[:2] == [("ann", "person", 5.0),
                                                                                  ("ann", "person", 6.0)]
    assert len(rows) == 7 and json.loads(rows[0]["scores"]) == {"clear": 8}
    assert len((tmp_path / "out" / "rm_pairs.jsonl").read_text().splitlines()) == 2
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Human judgments" in card and "Krippendorff's alpha (ordinal)" in card and "- ann: 3" in card
    manifest = json.loads((tmp_path / "out" / ".palimpsest-export.json").read_text())
    assert {"judgments.parquet", "rm_pairs.jsonl"} <= set(manifest["files"])


def test_only_judgments_of_exported_drafts_and_not_in_other_formats(store, tmp_path):
    ids, items = _judged(store)
    store.set_status(ids[0], "rejected")  # the best draft leaves the export: its judgments and pairs go too
    assert {r["item_id"] for r in jx.judgment_rows(store, set(ids[1:]))} == set(items[1:])
    assert jx.rm_pairs(store, set(ids[1:])) == []
    rep = export(store, "chat", tmp_path / "chat")
    assert [p.rsplit("/", 1)[-1] for p in rep.files] == ["train.jsonl"]
    assert "Human judgments" not in (tmp_path / "chat" / "README.md").read_text()


def test_hf_export_has_a_judgments_folder(store, tmp_path):
    from datasets import load_from_disk

    _judged(store)
    export(store, "hf", tmp_path / "hf")
    assert len(load_from_disk(str(tmp_path / "hf" / "judgments"))) == 7
