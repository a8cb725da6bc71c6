"""DPO in the included backend (core.train.dpo, `palimpsest train --method dpo`): TRL's DPOTrainer
trains on the dpo export's REER step pairs and on its R2 pairs; the held-out pair accuracy and
reward margin are measured before and after and stored like the SFT perplexities; bad pair files
are refused by line. Tiny random Llama for the mechanics; the `model` test uses the built-in model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from needs import ROOT

from core import events as ev
from core import pairs as pp
from core.store import open_store
from core.train.data import DataError
from core.train.dpo import read_pairs, split_pairs
from core.train.trainer import METRICS_FILE, TrainConfig, run_training, train_job

TOPICS = ["tides", "rain", "wind", "snow", "fog", "frost"]


def sc(x):
    return {"score": x, "ppl": 1.0, "n_tokens": 3, "mean_logprob": -x, "truncated": 0}


def reer_run(topic: str) -> list:
    """One REER run's events: a 2-segment draft and one step of 3 scored candidates on segment 1."""
    r = f"run-{topic}"
    es = [ev.ReerStarted(r, item_id=topic, query=f"Write about {topic}.", reference="y", settings={}, model="m"),
          ev.InitialDraft(r, thinking="", segments=(f"I think about {topic}.", "Then I write."), score=sc(0.9)),
          ev.SegmentStarted(r, step=1, segment=1, text="Then I write.")]
    texts = [f"Then I name the {topic} plainly.", "Then words.", f"So {topic} {topic} {topic}."]
    for i, (t, s) in enumerate(zip(texts, [0.4, 0.7, 1.2])):
        es += [ev.CandidateGenerated(r, step=1, segment=1, index=i, raw=t, text=t),
               ev.CandidateScored(r, step=1, segment=1, index=i, score=sc(s))]
    es.append(ev.SegmentDecided(r, step=1, segment=1, action="accept", by="search", chosen=0, text=texts[0],
                                segments=(es[1].segments[0], texts[0]), score=sc(0.4)))
    return es


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def step_pairs(n_topics=len(TOPICS)):
    return [p for t in TOPICS[:n_topics] for p in pp.reer_pairs(reer_run(t))]


def r2_rows():
    out = []
    for t in TOPICS:
        rounds = [{"round": 1, "draft": f"{t} is weather.", "revision": f"The {t} came in over the hills at dawn.",
                   "judgment": {"overall": 4}, "reward": {"improvement": 0.3}}]
        out += pp.r2_pairs(f"r2-{t}", f"Describe the {t}.", rounds, final_overall=7, run=f"r2-{t}")
    return out


def test_reer_step_pairs_train_two_steps_and_pair_accuracy_is_measured_before_and_after(tmp_path, tiny_dir):
    rows = step_pairs()
    assert len(rows) == len(TOPICS) * 6  # C(3 + 1, 2) per step: the segment before and 3 candidates
    data = write(tmp_path / "train.jsonl", rows)
    m = run_training(data, tmp_path / "out", TrainConfig(method="dpo", model=str(tiny_dir), max_steps=2, lr=1e-3,
                                                          eval_frac=0.34, save_steps=0, threads=1, batch_size=2))
    assert m["status"] == "finished" and m["steps"] == 2 and len(m["train_loss"]) == 2 and m["method"] == "dpo"
    # two of six prompts held out whole: 12 pairs of prompts never trained on
    assert m["n_eval"] == 12 and m["n_train"] == 24
    assert m["eval_pair_accuracy_before"] == 0 and m["eval_reward_margin_before"] == 0  # policy = reference
    assert 0 <= m["eval_pair_accuracy_after"] <= 1 and m["eval_reward_margin_after"] != 0  # the weights moved
    assert m["eval_prefers_chosen_before"] is not None and len(m["eval_after"]["per_item"]) == 12
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_r2_pairs_train_with_lora_through_the_store_job(tmp_path, tiny_dir):
    data = write(tmp_path / "train.jsonl", r2_rows())
    with open_store(tmp_path / "p.db") as store:
        kinds = [e.kind for e in train_job(store, data, tmp_path / "out",
                                           TrainConfig(method="dpo", model=str(tiny_dir), max_steps=2, lora=True,
                                                       lora_r=4, eval_frac=0.34, save_steps=0, threads=1))]
        run = store.list_train_runs()[0]
        evals = [e for e in store.train_events(run["id"]) if e.kind == "train_evaluated"]
    assert kinds.count("train_progress") == 2 and kinds[-1] == "train_finished" and run["status"] == "finished"
    assert [e.stage for e in evals] == ["before", "after"] and evals[1].pair_accuracy is not None
    assert evals[1].ppl_with_thinking is None and evals[1].n_items == 2


def test_bad_pair_files_are_refused_by_line(tmp_path):
    chat = write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "q"}]}] * 3)
    with pytest.raises(DataError, match=r"chat.jsonl:1: a preference pair needs prompt, chosen and rejected"):
        read_pairs(chat)
    mixed = write(tmp_path / "m.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}, r2_rows()[0]])
    with pytest.raises(DataError, match="mixes conversational and plain-text pairs"):
        read_pairs(mixed)
    one = write(tmp_path / "one.jsonl", r2_rows()[:1])
    with pytest.raises(DataError, match="1 pair"):
        read_pairs(one)


def test_held_out_split_is_by_prompt(tmp_path):
    pairs = read_pairs(write(tmp_path / "p.jsonl", step_pairs()))
    train, held = split_pairs(pairs, 0.34, 0)
    assert not {json.dumps(p.prompt) for p in train} & {json.dumps(p.prompt) for p in held}


def test_accelerate_launch_trains_dpo_on_two_processes_and_reports_pair_accuracy(tmp_path, tiny_dir):
    """`accelerate launch` with two CPU processes (gloo, the code path of several GPUs; `--cpu
    --num_processes 2` would silently run one): both train, only the main one evaluates and writes."""
    import socket

    with socket.socket() as sock:  # a free port for the processes' rendezvous (29500 may be taken)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = write(tmp_path / "train.jsonl", step_pairs(2))  # 12 pairs of two prompts: one trained, one held out
    out, db = tmp_path / "model", tmp_path / "p.db"
    res = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "--main_process_port", str(port), "-m", "studio.cli", "train", "--method", "dpo",
                          "--data", str(data), "--out", str(out), "--model", str(tiny_dir), "--max-steps", "2",
                          "--batch-size", "1", "--eval-frac", "0.5", "--threads", "1", "--save-steps", "0",
                          "--lr", "1e-3", "--db", str(db)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    # said once (by the main process), before and after
    assert res.stderr.count("held-out pairs before training: pair accuracy 0.000, mean reward margin 0.000") == 1
    assert res.stderr.count("held-out pairs after training: pair accuracy") == 1 and "Traceback" not in res.stderr
    m = json.loads((out / METRICS_FILE).read_text())
    assert m["status"] == "finished" and m["steps"] == 2 and m["n_train"] == 6 and m["n_eval"] == 6
    assert m["eval_pair_accuracy_before"] == 0 and m["eval_pair_accuracy_after"] is not None
    assert m["eval_reward_margin_after"] != 0 and (out / "model.safetensors").exists()
    with open_store(db) as store:
        (run,) = store.list_train_runs()
        progress = [e for e in store.train_events(run["id"]) if e.kind == "train_progress"]
    # two processes took a batch of 1 each per step: 2 of the 6 pairs a step (one process: 1)
    assert run["status"] == "finished" and [round(e.epoch, 3) for e in progress] == [0.333, 0.667]


@pytest.mark.model
def test_cli_trains_dpo_on_the_builtin_model_and_prints_pair_accuracy_before_and_after(tmp_path):
    data = write(tmp_path / "train.jsonl", step_pairs(3) + r2_rows()[:3])
    out, db = tmp_path / "model", tmp_path / "p.db"
    res = subprocess.run([sys.executable, "-m", "studio.cli", "train", "--method", "dpo", "--data", str(data),
                          "--out", str(out), "--max-steps", "2", "--eval-frac", "0.34", "--threads", "1",
                          "--lora", "--db", str(db)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "held-out pairs before training: pair accuracy 0.000, mean reward margin 0.000" in res.stderr
    assert "held-out pairs after training: pair accuracy" in res.stderr and "Traceback" not in res.stderr
    m = json.loads((out / METRICS_FILE).read_text())
    assert m["steps"] == 2 and m["method"] == "dpo" and m["eval_pair_accuracy_after"] is not None
    with open_store(db) as store:
        assert store.list_train_runs()[0]["status"] == "finished"
    bad = write(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "q"}]}] * 2)
    res = subprocess.run([sys.executable, "-m", "studio.cli", "train", "--method", "dpo", "--data", str(bad),
                          "--out", str(tmp_path / "o2"), "--db", str(db)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and "chat.jsonl:1: a preference pair needs" in res.stderr
