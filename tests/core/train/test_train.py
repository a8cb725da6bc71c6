"""The training backend (core.train.trainer, core.train.data, `palimpsest train`).

Data and mask tests need only the real tokenizer; resume and LoRA run on a tiny random Llama
saved to a folder (milliseconds per step); the `model` tests fine-tune the built-in model on
short synthetic records with one thread, so they take a minute or two on a busy 2-core box.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from needs import ROOT

from core.models.hf import builtin_model_dir
from core.models.lm import GenerationConfig
from core.models.load import load_lm
from core.models.scoring import score
from core.settings import SettingError
from core.store import open_store
from core.train.data import (
    IGNORE,
    DataError,
    chat_record,
    encode,
    read_chat_jsonl,
    split_records,
)
from core.train.trainer import (
    METRICS_FILE,
    TrainConfig,
    TrainError,
    prepare,
    run_training,
    train_job,
)

ANIMALS = ["otter", "heron", "badger", "falcon", "beaver", "lynx", "marten", "stork", "weasel", "puffin",
           "ibex", "bison", "crane", "hare", "newt", "moose"]
PLACES = ["river", "marsh", "forest", "cliff", "lake", "mountain", "meadow", "coast"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(builtin_model_dir())


def write_chat(path: Path, records) -> Path:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps({"id": r.id, "messages": list(r.messages)}) + "\n")
    return path


def animal_records(n: int):
    """Short records in one pattern, so what the model learns on some carries to the others."""
    out = []
    for i in range(n):
        a, p = ANIMALS[i % len(ANIMALS)], PLACES[(i * 3) % len(PLACES)]
        out.append(chat_record(f"a{i}", f"Where does the {a} live?",
                               f"The {a} is found near the {p}. One plain sentence will do.",
                               f"The {a} lives by the {p}."))
    return out


# ---- data and mask -------------------------------------------------------------------------------

def test_loss_mask_covers_exactly_the_assistant_turn(tokenizer):
    rec = chat_record("r1", "Write a line about rain.", "I want a quiet image.\n\nMaybe the roof.",
                      "Rain taps the roof all night.")
    ex = encode(tokenizer, rec)
    trained = [i for i, lab in enumerate(ex.labels) if lab != IGNORE]
    assert trained == list(range(trained[0], trained[-1] + 1))  # one contiguous span
    assert [ex.labels[i] for i in trained] == [ex.input_ids[i] for i in trained]
    assert tokenizer.decode([ex.input_ids[i] for i in trained]) == \
        "<think>\nI want a quiet image.\n\nMaybe the roof.\n</think>\nRain taps the roof all night.<|im_end|>"
    before = tokenizer.decode(ex.input_ids[:trained[0]])
    assert before.endswith("<|im_start|>assistant\n") and "Write a line about rain." in before
    assert tokenizer.decode(ex.input_ids[trained[-1] + 1:]) == "\n"  # the template's newline is not trained

    # with a system message and an earlier exchange, only the last assistant turn is trained
    multi = read_chat_lines(tokenizer, [{"id": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "A word for joy?"},
        {"role": "assistant", "content": "<think>\nshort\n</think>\nGlee."}]}])[0]
    ex = encode(tokenizer, multi)
    assert tokenizer.decode([t for t in ex.labels if t != IGNORE]) == "<think>\nshort\n</think>\nGlee.<|im_end|>"
    assert "Hello." in tokenizer.decode(ex.input_ids)


def read_chat_lines(tokenizer, objs, tmp=Path("/tmp")):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(json.dumps(o) for o in objs) + "\n")
    return read_chat_jsonl(f.name)


@pytest.mark.parametrize("line, field, words", [
    ("{oops", "", "not valid JSON"),
    ('{"id": 1, "messages": [{"role": "user", "content": "q"}]}', "messages", "at least two"),
    ('{"id": 1, "messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}]}',
     "messages[1].role", "must be the assistant"),
    ('{"id": 1, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]}',
     "messages[1].content", "must be a string"),
    ('{"id": 1, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\\nx"}]}',
     "messages[1].content", "broken think block"),
    ('{"id": 1, "messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}',
     "messages[1].role", "not one of"),
    ('{"id": 1, "text": "neither"}', "messages", "missing"),
])
def test_malformed_lines_name_file_line_and_field(tmp_path, line, field, words):
    good = json.dumps({"id": 0, "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    src = tmp_path / "d.jsonl"
    src.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        read_chat_jsonl(src)
    where = f"{src}:2" + (f" field '{field}'" if field else "")
    assert where in str(err.value) and words in str(err.value)


def test_empty_duplicate_and_sample_shaped_data(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        read_chat_jsonl(empty)
    dup = write_chat(tmp_path / "dup.jsonl", [chat_record("x", "q", "t", "a"), chat_record("x", "q2", "t", "a")])
    with pytest.raises(DataError, match=r"dup.jsonl:2 field 'id': 'x' repeats line 1"):
        read_chat_jsonl(dup)
    # query/thinking/reference lines (data/samples.jsonl) become chats in the export's shape
    recs = read_chat_jsonl(ROOT / "data" / "samples.jsonl")
    raw = [json.loads(line) for line in open(ROOT / "data" / "samples.jsonl")]
    assert [r.id for r in recs] == [x["id"] for x in raw]
    assert recs[0].messages[-1]["content"] == f"<think>\n{raw[0]['thinking'].strip()}\n</think>\n{raw[0]['reference'].strip()}"
    assert (recs[0].query, recs[0].thinking, recs[0].answer) == \
        (raw[0]["query"], raw[0]["thinking"].strip(), raw[0]["reference"].strip())


def test_split_is_seeded_and_never_empties_training():
    recs = animal_records(10)
    a, b = split_records(recs, 0.3, seed=1), split_records(recs, 0.3, seed=1)
    assert [r.id for r in a[1]] == [r.id for r in b[1]] and len(a[1]) == 3 and len(a[0]) == 7
    assert {r.id for r in a[0]} | {r.id for r in a[1]} == {r.id for r in recs}
    assert len(split_records(recs[:2], 0.01, 0)[1]) == 1  # any fraction above 0 holds one out
    with pytest.raises(DataError, match="nothing to train"):
        split_records(recs[:1], 0.5, 0)


def test_too_long_records_and_server_models_fail_before_compute(tmp_path, tiny_dir):
    src = write_chat(tmp_path / "d.jsonl", animal_records(4))
    with pytest.raises(DataError) as err:
        prepare(src, TrainConfig(model=str(tiny_dir), max_length=20))
    assert f"{src}:1 (id a0," in str(err.value) and "do not fit the 20-token context" in str(err.value)
    with pytest.raises(TrainError, match="is a server"):
        prepare(src, TrainConfig(model="http://localhost:8000/v1#some/model"))
    with pytest.raises(SettingError, match="setting lr=-1"):  # refused when built, before any compute
        prepare(src, TrainConfig(model=str(tiny_dir), lr=-1))


def test_training_events_round_trip_through_the_store_and_move_the_run_status():
    import core.events as ev

    store = open_store(None)
    run = store.create_train_run({"lr": 1e-3}, model="m", data="d.jsonl", out_dir="/tmp/o")
    sent = [ev.TrainStarted(run, config={"lr": 1e-3}, out_dir="/tmp/o", n_train=3, n_eval=1, train_tokens=90,
                            trained_tokens=40, total_steps=2),
            ev.TrainProgress(run, step=1, total_steps=2, loss=2.5, lr=1e-3, epoch=0.5),
            ev.TrainProgress(run, step=2, total_steps=2, loss=2.25, lr=5e-4, epoch=1.0, grad_norm=0.75)]
    assert [store.append_train_event(e) for e in sent] == [1, 2, 3]
    assert store.train_events(run) == sent and store.train_events(run, after_seq=2) == sent[2:]
    assert store.train_loss(run) == [(1, 2.5), (2, 2.25)]
    assert store.get_train_run(run)["status"] == "running" and store.get_train_run(run)["config"] == {"lr": 1e-3}
    store.append_train_event(ev.TrainFinished(run, reason="done", steps=2, seconds=1.0, out_dir="/tmp/o"))
    assert store.get_train_run(run)["status"] == "finished"
    assert [r["id"] for r in store.list_train_runs(out_dir="/tmp/o")] == [run]


# ---- runs on the tiny model ----------------------------------------------------------------------

def test_resume_continues_the_step_count_and_the_stored_curve(tmp_path, tiny_dir):
    src = write_chat(tmp_path / "d.jsonl", animal_records(12))
    cfg = TrainConfig(model=str(tiny_dir), max_steps=5, save_steps=10, batch_size=2, lr=1e-3, eval_frac=0.2,
                      threads=1)
    out, store = tmp_path / "out", open_store(None)
    calls = itertools.count(1)
    first = list(train_job(store, src, out, cfg, stop=lambda: next(calls) >= 2))  # stop after step 2
    assert [e.step for e in first if e.kind == "train_progress"] == [1, 2]
    assert first[-1].kind == "train_finished" and first[-1].reason == "stopped" and first[-1].steps == 2
    assert [e.step for e in first if e.kind == "train_checkpoint"] == [2]
    assert not (out / "config.json").exists()  # no final model for a stopped run
    run_id = first[0].run_id
    assert store.get_train_run(run_id)["status"] == "stopped"
    with pytest.raises(TrainError, match="not empty"):
        list(train_job(store, src, out, cfg))
    with pytest.raises(TrainError, match="other settings"):
        list(train_job(store, src, out, TrainConfig(**{**cfg.as_dict(), "lr": 5e-4}), resume=True))

    second = list(train_job(store, src, out, cfg, resume=True))
    started = second[0]
    assert started.kind == "train_started" and started.start_step == 2 and started.resumed_from.endswith("checkpoint-2")
    assert [e.step for e in second if e.kind == "train_progress"] == [3, 4, 5]
    assert [e.stage for e in second if e.kind == "train_evaluated"] == ["after"]  # "before" was kept from run 1
    assert second[-1].kind == "train_finished" and second[-1].steps == 5
    assert {e.run_id for e in second} == {run_id}
    assert [s for s, _ in store.train_loss(run_id)] == [1, 2, 3, 4, 5]
    assert store.get_train_run(run_id)["status"] == "finished"
    m = json.loads((out / METRICS_FILE).read_text())
    assert m["train_loss_steps"] == [1, 2, 3, 4, 5] and m["steps"] == 5 and len(m["train_loss"]) == 5
    assert m["eval_ppl_before"] is not None and m["eval_ppl_after"] is not None
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["lr"] == 1e-3 and saved["max_steps"] == 5 and len(saved["data_sha256"]) == 64


def test_lora_run_saves_a_merged_plain_model(tmp_path, tiny_dir):
    from safetensors.torch import load_file

    src = write_chat(tmp_path / "d.jsonl", animal_records(6))
    out = tmp_path / "out"
    m = run_training(src, out, TrainConfig(model=str(tiny_dir), max_steps=3, lora=True, lora_r=4, lr=1e-2,
                                           eval_frac=0.2, save_steps=0, threads=1))
    assert m["status"] == "finished" and m["steps"] == 3 and m["lora"] is True
    keys = load_file(str(out / "model.safetensors")).keys()
    assert not [k for k in keys if "lora" in k] and not (out / "adapter_config.json").exists()
    base = load_file(str(tiny_dir / "model.safetensors"))
    merged = load_file(str(out / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[name], merged[name])  # the adapters' update is in the weights
    lm = load_lm(str(out))
    assert lm.tokenizer.chat_template == load_lm(str(tiny_dir)).tokenizer.chat_template


# ---- the built-in model --------------------------------------------------------------------------

def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "studio.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.model
def test_cli_trains_the_builtin_model_into_a_folder_that_loads_generates_and_scores(tmp_path):
    src = write_chat(tmp_path / "d.jsonl", animal_records(5))
    out, db = tmp_path / "model", tmp_path / "p.db"
    res = cli("train", "--data", str(src), "--out", str(out), "--max-steps", "2", "--eval-frac", "0.2",
              "--threads", "1", "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "held-out answer perplexity before training" in res.stderr and "Traceback" not in res.stderr
    m = json.loads((out / METRICS_FILE).read_text())
    assert m["steps"] == 2 and len(m["train_loss"]) == 2 and m["seconds"] > 0 and m["seconds_per_step"] > 0
    assert m["eval_ppl_before"] > 1 and m["eval_ppl_after"] > 1
    lm = load_lm(str(out))
    text = lm.generate([{"role": "user", "content": "Where does the otter live?"}],
                       GenerationConfig(max_new_tokens=12, temperature=0))[0]
    assert text.strip()
    with open_store(db) as store:
        run = store.list_train_runs()[0]
        assert run["status"] == "finished" and [s for s, _ in store.train_loss(run["id"])] == [1, 2]
    # scored here (`palimpsest score --model FOLDER` is tests/core/data/test_reader.py's, on a tiny model folder)
    got = score(lm, "Where does the otter live?", "", "The otter lives by the river.")
    assert got.n_tokens > 0 and got.ppl > 1

    # bad input: one line, exit 2, before any model is loaded
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "messages": [{"role": "user", "content": "q"}]}\n')
    res = cli("train", "--data", str(bad), "--out", str(tmp_path / "o2"), "--db", str(db))
    assert res.returncode == 2 and f"{bad}:1 field 'messages'" in res.stderr and "Traceback" not in res.stderr
    res = cli("train", "--data", str(src), "--out", str(tmp_path / "o3"), "--model", "http://localhost:1/v1",
              "--db", str(db))
    assert res.returncode == 2 and "is a server" in res.stderr and "loading" not in res.stderr


@pytest.mark.model
def test_held_out_answer_perplexity_drops_after_a_dozen_steps(tmp_path):
    # 12 steps at 1e-4 (was 24 at 5e-5: each step costs seconds on a shared CPU); measured here:
    # held-out ppl 4.4 -> 1.0, without thinking 22 -> 3.3, train loss (4 steps) 7.9 -> 0.3
    src = write_chat(tmp_path / "d.jsonl", animal_records(16))
    m = run_training(src, tmp_path / "out", TrainConfig(max_steps=12, batch_size=2, lr=1e-4, eval_frac=0.25,
                                                        save_steps=0, threads=1, seed=0))
    assert m["steps"] == 12 and m["n_eval"] == 4
    assert m["eval_ppl_after"] < m["eval_ppl_before"]
    assert m["eval_ppl_after_no_thinking"] < m["eval_ppl_before_no_thinking"]
    assert sum(m["train_loss"][-4:]) < sum(m["train_loss"][:4])


def test_resume_takes_the_newest_complete_checkpoint_and_a_save_cut_short_leaves_none(tmp_path, tiny_dir, monkeypatch,
                                                                                       caplog):
    """Before: a SIGKILL while checkpoint-N was written left it incomplete; `train --resume` then failed
    ("Can't find a valid checkpoint"), said "resuming at step 0" and marked the run failed."""
    from transformers import Trainer

    from core.train.checkpoints import STAGING

    src = write_chat(tmp_path / "d.jsonl", animal_records(12))
    cfg = TrainConfig(model=str(tiny_dir), max_steps=6, save_steps=2, save_total_limit=3, batch_size=2, lr=1e-3,
                      eval_frac=0.2, threads=1)
    out, store = tmp_path / "out", open_store(None)
    calls = itertools.count(1)
    real_rng = Trainer._save_rng_state

    def cut_short(self, output_dir):  # the save of step 4 dies half-way, as under a SIGKILL
        if self.state.global_step == 4:
            raise RuntimeError("killed mid-save")
        return real_rng(self, output_dir)
    monkeypatch.setattr(Trainer, "_save_rng_state", cut_short)
    with pytest.raises(TrainError, match="killed mid-save"):
        list(train_job(store, src, out, cfg, stop=lambda: next(calls) >= 5))
    monkeypatch.setattr(Trainer, "_save_rng_state", real_rng)
    ckpts = out / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert (ckpts / STAGING / "checkpoint-4").is_dir()  # the cut-short save stayed aside
    # an incomplete checkpoint folder as an older version (or Trainer's own save) leaves it
    (ckpts / "checkpoint-5").mkdir()
    (ckpts / "checkpoint-5" / "model.safetensors").write_bytes(b"\0" * 64)
    with caplog.at_level("WARNING"):
        second = list(train_job(store, src, out, cfg, resume=True))
    started = second[0]
    assert started.start_step == 2 and started.resumed_from.endswith("checkpoint-2")
    assert "checkpoint-5 (no trainer_state.json)" in caplog.text and "resuming from checkpoint-2" in caplog.text
    assert [e.step for e in second if e.kind == "train_progress"] == [3, 4, 5, 6]
    assert second[-1].kind == "train_finished" and second[-1].steps == 6
    assert not (ckpts / STAGING).exists() or not any((ckpts / STAGING).iterdir())
    assert all((p / "trainer_state.json").is_file() for p in ckpts.iterdir() if p.name.startswith("checkpoint-"))
