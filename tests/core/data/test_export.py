"""Exports: every format loads with the library that reads it, the chat export keeps the training
contract, import -> export -> import keeps every field, R2 rounds become step labels and
preference pairs, every export writes a card and a row in the store, the template check finds
dropped and mangled think blocks, and TRL's SFTTrainer trains on the chat export with a loss
mask covering only the assistant turn."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from library_fixtures import REER_ITEMS, filled_store, r2_details

from core.data import curation as cur
from core.export import (
    FORMATS,
    ExportError,
    export,
    list_exports,
)
from core.data.imports import import_files
from core.format import assistant_turn
from core.store import open_store


@pytest.fixture
def filled(store):
    return store, filled_store(store)


def read_jsonl(path) -> list[dict]:
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines()]


def test_chat_export_keeps_the_contract(filled, tmp_path):
    store, ids = filled
    cur.edit(store, ids["reer"][0], thinking="Edited plan.\n\nSecond thought.")
    report = export(store, "chat", tmp_path / "chat")
    rows = read_jsonl(report.files[0])
    assert Path(report.files[0]).name == "train.jsonl" and report.count == len(rows) == 3  # accepted only
    for r in rows:
        assert set(r) == {"id", "messages", "source", "scores"}
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    by_src = {r["source"]: r for r in rows}
    assert set(by_src) == {"reer", "r2"}
    reer = rows[0]
    assert reer["messages"][0]["content"] == REER_ITEMS[0][0]
    assert reer["messages"][1]["content"] == "<think>\nEdited plan.\n\nSecond thought.\n</think>\n" + REER_ITEMS[0][2]
    assert reer["scores"] == {"initial_score": 0.52, "final_score": 0.3, "initial_ppl": 2.5, "final_ppl": 1.9}
    r2 = by_src["r2"]
    d = r2_details("x")
    assert r2["scores"] == {"initial_overall": 4.5, "final_overall": 6.0, "reward_total": 0.5, "rounds": 2}
    assert r2["messages"][1]["content"].endswith("</think>\n" + d["final"])


def test_chat_export_and_training_agree_on_the_one_assistant_turn(filled, tmp_path):
    """Export writes core.format's turn; the training reader gets the same thinking and answer back."""
    from core.train.data import read_chat_jsonl

    store, ids = filled
    cur.edit(store, ids["reer"][1], thinking="Edited plan.\n\nIt ends on a blank line.\n\n")
    report = export(store, "chat", tmp_path / "chat", status="any")
    rows = read_jsonl(report.files[0])
    made = {store.get_prompt(t["prompt_id"])["query"]: t
            for t in cur.list_trajectories(store)}
    back = read_chat_jsonl(report.files[0])
    assert len(rows) == len(back) == len(made) == 4
    for row, rec in zip(rows, back):
        query = row["messages"][0]["content"]
        z, y = made[query]["thinking"], made[query]["answer"]
        assert row["messages"][-1]["content"] == assistant_turn(z, y)
        assert (rec.query, rec.thinking, rec.answer) == (query, z.strip(), y.strip())
    assert next(r.thinking for r in back if r.query == REER_ITEMS[1][0]) == "Edited plan.\n\nIt ends on a blank line."


def test_status_and_source_filters(filled, tmp_path):
    store, ids = filled
    assert export(store, "chat", tmp_path / "a", status="any").count == 4
    assert export(store, "chat", tmp_path / "a", status="accepted").count == 3  # an earlier export is replaced
    assert len(read_jsonl(tmp_path / "a" / "train.jsonl")) == 3
    assert export(store, "chat", tmp_path / "b", source="r2").count == 1
    assert export(store, "chat", tmp_path / "c", status="pending", source="reer").count == 1
    with pytest.raises(ExportError, match="nothing to export as chat"):
        export(store, "chat", tmp_path / "d", status="rejected")
    with pytest.raises(ExportError, match="--format: 'csv' is not a format"):
        export(store, "csv", tmp_path / "e")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "mine.txt").write_text("do not delete")
    with pytest.raises(ExportError, match="a folder with other files in it"):
        export(store, "chat", tmp_path / "f")
    assert (tmp_path / "f" / "mine.txt").read_text() == "do not delete"


def test_every_format_loads_with_datasets_and_has_a_card(filled, tmp_path):
    from datasets import load_dataset, load_from_disk

    store, ids = filled
    loaded = {}
    for fmt in FORMATS:
        report = export(store, fmt, tmp_path / fmt)
        data = report.files[0]
        if fmt == "hf":
            ds = load_from_disk(data)
        else:
            ds = load_dataset("parquet" if fmt == "parquet" else "json", data_files=data, split="train")
        assert len(ds) == report.count > 0
        loaded[fmt] = ds
        card = Path(report.card).read_text(encoding="utf-8")
        assert card.startswith(f"# Palimpsest export ({fmt})") and f"- records: {report.count}" in card
        assert "- status: accepted" in card and "smollm2-135m" in card
    assert loaded["sharegpt"][0]["conversations"][0] == {"from": "human", "value": REER_ITEMS[0][0]}
    assert loaded["alpaca"][0]["output"] == assistant_turn(REER_ITEMS[0][1], REER_ITEMS[0][2])
    assert json.loads((tmp_path / "sharegpt" / "dataset_info.json").read_text())["palimpsest"]["formatting"] == "sharegpt"
    assert set(loaded["parquet"].column_names) >= {"id", "query", "thinking", "answer", "messages", "status", "scores"}
    assert loaded["hf"]["query"] == loaded["parquet"]["query"]
    assert "| final_score | 2 | 0.3 | 0.35 | 0.4 |" in (tmp_path / "chat" / "README.md").read_text()  # REER's only
    rows = list_exports(store)
    assert [r["format"] for r in rows] == list(reversed(FORMATS))
    assert rows[-1]["count"] == 3 and rows[-1]["stats"]["reer"]["final_score"]["n"] == 2


def test_prm_labels_and_dpo_pairs_come_from_r2_rounds(filled, tmp_path):
    store, ids = filled
    d = r2_details("x")
    prm = read_jsonl(export(store, "prm", tmp_path / "prm").files[0])
    assert len(prm) == 1 and prm[0]["id"] == "r2-tides"
    assert prm[0]["steps"] == [r["reflection"] for r in d["rounds"]]
    assert prm[0]["labels"] == [True, False] and prm[0]["rewards"] == [1.5, -1.0]
    assert prm[0]["reward_components"][1] == d["rounds"][1]["reward"]
    report = export(store, "dpo", tmp_path / "dpo")
    (pair,) = read_jsonl(report.files[0])  # round 2 made it worse: no pair (REER rows of this store have no steps)
    assert pair["source"] == "r2-revision" and pair["margin"] == 1.5
    assert pair["chosen"] == [{"role": "assistant", "content": assistant_turn("", d["rounds"][0]["revision"])}]
    assert pair["rejected"] == [{"role": "assistant", "content": assistant_turn("", d["rounds"][0]["draft"])}]
    with pytest.raises(ExportError, match="without REER steps that make preference pairs"):
        export(store, "dpo", tmp_path / "dpo2", source="reer")


@pytest.mark.parametrize("fmt", ["chat", "sharegpt", "alpaca", "parquet", "hf"])
def test_round_trip_import_export_import_keeps_every_field(filled, tmp_path, fmt):
    store, ids = filled
    cur.rate(store, ids["reer"][0], 5)
    cur.tag(store, ids["reer"][0], "gold")
    cur.note(store, ids["reer"][0], "keep this one")
    first = export(store, fmt, tmp_path / "one", status="any")
    copy = open_store(None)
    rep = import_files(copy, first.files[0] if fmt != "hf" else first.out)  # hf: the export folder itself
    assert rep.total("trajectories") == 4 and not rep.problems
    second = export(copy, fmt, tmp_path / "two", status="any")

    def load(report):
        p = Path(report.files[0])
        if fmt == "parquet":
            import pyarrow.parquet as pq
            return pq.read_table(p).to_pylist()
        if fmt == "hf":
            from datasets import load_from_disk
            return load_from_disk(str(p)).to_list()
        return json.loads(p.read_text()) if p.suffix == ".json" else read_jsonl(p)

    a, b = load(first), load(second)
    assert a == b and len(a) == 4
    if fmt in ("parquet", "hf"):
        row = next(r for r in b if "gold" in r["tags"])
        assert (row["rating"], row["notes"], row["status"], row["category"]) == (5, "keep this one", "accepted", "essay")
        assert row["rubric"] == ["clear", "vivid"] and json.loads(row["scores"])["final_ppl"] == 1.9
    # importing the export again finds only duplicates
    assert import_files(copy, first.files[0]).total("duplicates") == 4


def test_template_check_finds_dropped_and_mangled_think_blocks(filled, tmp_path):
    from core.data.template_check import check_records, load_tokenizer

    store, ids = filled
    records = read_jsonl(export(store, "chat", tmp_path / "c").files[0])
    tok = load_tokenizer()
    assert check_records(records, tok) == []  # SmolLM2 keeps think blocks verbatim
    stock = tok.chat_template
    try:  # a DeepSeek-R1-like template that keeps only what follows </think>
        tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['role'] == 'assistant' %}"
                             "{{ m['content'].split('</think>')[-1] }}{% else %}{{ m['content'] }}{% endif %}"
                             "<|im_end|>\n{% endfor %}")
        issues = check_records(records, tok)
        assert [i.problem for i in issues] == ["dropped"] * 3 and issues[0].id == records[0]["id"]
        tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | replace('\n\n', '\n') }}"
                             "<|im_end|>\n{% endfor %}")
        issues = check_records(records, tok)
        assert {i.problem for i in issues} == {"mangled"}  # every thinking here has a blank line in it
        report = export(store, "chat", tmp_path / "c2", check_template=True, tokenizer=tok)
        assert len(report.template_issues) == 3
        assert "3 lost or changed the think block" in Path(report.card).read_text()
    finally:
        tok.chat_template = stock


def test_trl_sft_trainer_takes_the_chat_export_and_masks_all_but_the_assistant_turn(filled, tmp_path, tiny_lm):
    """Per NOTES-training.md: SmolLM2's template has no {% generation %} markers, so training uses a
    copy with the markers around the assistant content (rendering the same text)."""
    import copy

    import torch
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(1)
    store, ids = filled
    data = export(store, "chat", tmp_path / "chat").files[0]
    ds = load_dataset("json", data_files=data, split="train")
    tok = tiny_lm.tokenizer
    stock = tok.chat_template
    marked = stock.replace("{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}",
                           "{{'<|im_start|>' + message['role'] + '\n'}}{% if message['role'] == 'assistant' %}"
                           "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
                           "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}")
    assert marked != stock
    try:
        tok.chat_template = marked
        assert tok.apply_chat_template(ds[0]["messages"], tokenize=False) == \
            tok.apply_chat_template(ds[0]["messages"], tokenize=False, chat_template=stock)
        cfg = SFTConfig(output_dir=str(tmp_path / "run"), assistant_only_loss=True, max_steps=1,
                        per_device_train_batch_size=2, use_cpu=True, bf16=False, activation_checkpointing=False,
                        report_to=[], save_strategy="no", logging_strategy="no", max_length=512, dataset_num_proc=None)
        model = copy.deepcopy(tiny_lm.model)  # trained here: the session's tiny_lm keeps its weights
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
        assert len(trainer.train_dataset) == len(ds)  # no record lost its assistant turn to truncation
        for i, row in enumerate(trainer.train_dataset):  # "Building labels": -100 outside the assistant turn
            trained = tok.decode([t for t, l in zip(row["input_ids"], row["labels"]) if l != -100])
            assert trained == ds[i]["messages"][1]["content"] + "<|im_end|>"
            assert "<think>\n" in trained and ds[i]["messages"][0]["content"] not in trained
        batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
        labels, inputs = batch["labels"][0], batch["input_ids"][0]
        kept = tok.decode(inputs[labels != -100])
        assert kept == ds[0]["messages"][1]["content"] + "<|im_end|>"
        out = trainer.train()
        assert out.training_loss > 0
    finally:
        tok.chat_template = stock
