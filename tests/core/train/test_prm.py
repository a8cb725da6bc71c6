"""The prm export loaded by the trainer it is for (core.train.prm): TRL 1.16 has no PRM trainer,
so its former PRMTrainer's layout — one label per step, on the separator after it — trains a
token-classification model with transformers' Trainer. The store holds two R2 trajectories of
the shape the engine saves (tests/library_fixtures.py: a round that improved, one that did not)."""
from __future__ import annotations

import json

import pytest
import torch
from library_fixtures import add_r2

from core.export import export
from core.store import open_store
from core.train.data import IGNORE, DataError
from core.train.prm import SEPARATOR, read_steps, step_row


@pytest.fixture
def prm_file(tmp_path):
    with open_store(tmp_path / "p.db") as store:
        add_r2(store)
        add_r2(store, "Describe a lighthouse at dusk in four sentences.")
        report = export(store, "prm", tmp_path / "prm", status="any")
    return report.files[0]


def test_the_prm_export_trains_a_token_classifier_with_one_label_per_step_on_its_separator(prm_file, tiny_dir,
                                                                                          tmp_path):
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    records = read_steps(prm_file)
    assert [r["labels"] for r in records] == [[True, False]] * 2  # reward totals +1.5, -1.0
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows = [step_row(r, tok) for r in records]
    sep = tok.encode(SEPARATOR, add_special_tokens=False)
    for r, row in zip(records, rows):
        at = [i for i, x in enumerate(row["labels"]) if x != IGNORE]
        assert [row["labels"][i] for i in at] == [int(x) for x in r["labels"]]  # one per step, in order
        text = r["prompt"]
        for i, step in zip(at, r["completions"]):
            assert row["input_ids"][i - len(sep) + 1:i + 1] == sep  # the label sits on the separator's last token
            text += step + SEPARATOR
            assert tok.decode(row["input_ids"][:i + 1], skip_special_tokens=True) == text  # right after its step
        assert at[-1] == len(row["input_ids"]) - 1

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=2)
    head = model.score.weight.detach().clone()
    args = TrainingArguments(output_dir=str(tmp_path / "ckpt"), max_steps=2, per_device_train_batch_size=2,
                             learning_rate=1e-2, use_cpu=True, report_to="none", save_strategy="no",
                             disable_tqdm=True, logging_steps=1, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=rows, processing_class=tok,
                      data_collator=DataCollatorForTokenClassification(tok))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(0 < x < 10 for x in losses)
    assert not torch.equal(head, model.score.weight.detach())  # the step classifier learned


def test_bad_step_records_are_refused_by_line(tmp_path, prm_file):
    good = json.loads(open(prm_file).readline())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "labels": [True]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: labels must be one true/false per step \(2 step"):
        read_steps(bad)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(DataError, match="chat.jsonl:1: a step record needs prompt"):
        read_steps(chat)
