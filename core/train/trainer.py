"""The training backend: supervised fine-tuning on the chat export, evaluated before and after.

Knows: the settings (`TrainConfig`, one commented dataclass, written to DIR/train_config.json
with every run); checking data and model before any compute (core.train.data does the data);
fine-tuning on transformers' `Trainer` (accelerate underneath, so `accelerate launch` and
torchrun work unchanged) with the loss only on the last assistant turn, full or LoRA (peft,
merged into the weights before the final save), bf16 where the hardware has it, gradient
accumulation, checkpoints in DIR/checkpoints (whole or absent, core.train.checkpoints) and resume
from the newest complete one, naming any incomplete one passed over; the held-out
evaluation (perplexity of the reference answers given the query, with the record's thinking
and with an empty think block, through core.models.scoring in the training format); the run as a
generator of typed events (`train`) with a non-streaming twin (`run_training`) and a job that
saves every event to the store as it happens (`train_job`). DIR ends up a plain model folder
(config, weights, tokenizer with its stock chat template) that `load_lm(DIR)` and every
`--model DIR` load, plus train_config.json and metrics.json (rewritten after every logged step,
so a crash keeps the curve so far).

Does not know: the export (core.data.imports), the studio's plots, judges. Trainer runs in a worker
thread so that its callbacks can feed the generator; closing the generator (or `stop()`
returning True) ends training after the current step with a checkpoint saved.
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core import events as ev
from core.models.lm import DEFAULT_MODEL, LMError
from core.models.urls import is_server_spec
from core.settings import SettingError, checking, invalid, loading, setting, validate
from core.train.checkpoints import atomic, clear_incomplete, newest_complete
from core.train.data import (
    ChatRecord,
    DataError,
    Example,
    check_lengths,
    collate,
    encode,
    read_chat_jsonl,
    split_records,
)
from core.train.evaluation import evaluate

log = logging.getLogger(__name__)
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
# settings a resumed run may change (how long, how often it saves and logs); any other must match
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")  # transformers' schedulers that need no extra arguments
RESUMABLE = ("max_steps", "epochs", "save_steps", "save_total_limit", "logging_steps", "threads")


class TrainError(LMError):
    """Training cannot start or go on as asked; the message says why and what to do."""


@dataclass(frozen=True)
class TrainConfig:
    method: str = setting("sft", choices=("sft", "dpo"), help="sft: on a chat export; dpo: TRL's DPOTrainer on "
                                                               "an `export --format dpo` file (preference pairs; docs/training.md)")
    beta: float = setting(0.1, above=0, max=100, help="dpo: DPO's beta (pull towards the reference model)")
    model: str = setting(DEFAULT_MODEL, label="Model to fine-tune",
                         help="model spec to fine-tune: the built-in alias, a local folder or a hub id")
    epochs: float = setting(1.0, min=0, help="passes over the training records (ignored when max_steps > 0)")
    max_steps: int = setting(0, min=0, help="optimizer steps in all; 0 = as many as epochs takes")
    lr: float | None = setting(None, above=0, below=1, label="Learning rate",
                               help="peak learning rate; none = 2e-5 for full fine-tuning, 2e-4 for LoRA (dpo: 5e-6, "
                                    "5e-5)")
    batch_size: int = setting(2, min=1, help="records per device per forward pass")
    grad_accum: int = setting(1, min=1, help="forward passes per optimizer step (effective batch = "
                                                          "batch_size * grad_accum * devices)")
    lr_scheduler: str = setting("linear", choices=SCHEDULERS, flag=("--lr-scheduler", "--scheduler"),
                                help="learning-rate schedule (transformers' scheduler name)")
    warmup_steps: int = setting(0, min=0, help="steps of linear warm-up from 0 to lr")
    weight_decay: float = setting(0.0, min=0, max=10, help="AdamW weight decay")
    max_grad_norm: float = setting(1.0, min=0, help="gradient clipping (0 = none)")
    max_length: int | None = setting(None, min=8,
                                     help="longest record in tokens; none = the model's window. Longer records are "
                                          "an error")
    eval_frac: float = setting(0.1, min=0, below=1, label="Eval fraction",
                               help="share of records held out for the before/after evaluation (at least one if > 0)")
    seed: int = setting(0, min=0, max=2**32 - 1, help="the held-out split, shuffling and initialisation")
    lora: bool = setting(False, label="LoRA",
                         help="train LoRA adapters instead of all weights (merged into the saved model)")
    lora_r: int = setting(16, min=1, help="LoRA rank (the inner size of each adapter)")
    lora_alpha: int = setting(32, min=1, help="LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = setting(0.05, min=0, below=1, help="dropout on the LoRA input")
    lora_targets: str = setting("all-linear", help='peft target_modules: "all-linear" or comma-separated module names')
    dtype: str = setting("float32", choices=("float32", "bfloat16"),
                         help="weights as loaded: float32, or bfloat16 (halves memory; for big models on GPUs)")
    bf16: bool | None = setting(None, help="bf16 autocast; auto (none) = on where a GPU supports bf16, off on CPU")
    gradient_checkpointing: bool = setting(False, help="recompute activations in the backward pass: less memory, "
                                                       "~1.8x slower")
    save_steps: int = setting(50, min=0, help="a checkpoint every this many steps (0 = only when "
                                                              "stopped); resume uses the newest")
    save_total_limit: int = setting(2, min=1, help="checkpoints kept (older ones are deleted)")
    logging_steps: int = setting(1, min=1, help="a progress event (loss, lr) every this many steps")
    threads: int | None = setting(None, min=1, help="CPU threads for torch; none leaves torch's default")

    def __post_init__(self):
        validate(self)
        if checking() and not (self.epochs > 0 or self.max_steps > 0):
            invalid("epochs", self.epochs, "must be above 0 (or give max_steps)", self)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Stored settings (DIR/train_config.json), as they were run: not re-validated."""
        known = {f.name for f in dataclasses.fields(cls)}
        with loading():
            return cls(**{k: v for k, v in d.items() if k in known})

    def resolved(self) -> "TrainConfig":
        """The settings with defaults that depend on others filled in (what a run records)."""
        default = (2e-4 if self.lora else 2e-5) if self.method == "sft" else (5e-5 if self.lora else 5e-6)
        return dataclasses.replace(self, lr=self.lr if self.lr is not None else default)

    def check(self) -> None:
        """TrainError naming the first setting out of range (a config built normally was checked
        already; one read back with from_dict was not)."""
        try:
            self.__post_init__()
        except SettingError as exc:
            raise TrainError(str(exc)) from None


@dataclass(frozen=True)
class Prepared:
    """Everything checked before the first forward pass."""
    records: list[ChatRecord]  # all records, in file order
    train: list[ChatRecord]  # the training split
    held_out: list[ChatRecord]  # the evaluation split
    examples: list[Example]  # the training split, tokenized and masked
    tokenizer: object  # the model's tokenizer
    model_path: str  # where from_pretrained loads the model
    max_length: int  # the context the records were checked against
    data_sha256: str  # of the data file, recorded to refuse resuming on other data


def process_state():
    """accelerate's view of this process (rank, device). Everything here asks through this one
    call: accelerate keeps the first state made in a process, and one made without `cpu=True`
    on a GPU-less machine would not join the other processes of `accelerate launch`."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def check_model_spec(spec: str) -> str:
    """Where `from_pretrained` finds a trainable model for `spec`, or TrainError (no compute spent)."""
    if is_server_spec(spec):
        raise TrainError(f"model '{spec}' is a server: its weights are not here to train. Train a local model "
                         f"('{DEFAULT_MODEL}', a folder or a hub id), then serve the result")
    from core.models.hf import resolve_spec

    return resolve_spec(spec)


def prepare(data: str | Path, cfg: TrainConfig) -> Prepared:
    """Read and check the data, the model spec and the lengths; DataError/TrainError before any compute."""
    from transformers import AutoConfig, AutoTokenizer

    cfg.check()
    records = read_chat_jsonl(data)
    train_recs, held_out = split_records(records, cfg.eval_frac, cfg.seed)
    where = check_model_spec(cfg.model)
    try:
        tok = AutoTokenizer.from_pretrained(where)
        window = int(getattr(AutoConfig.from_pretrained(where), "max_position_embeddings", 0) or 0)
    except (OSError, ValueError) as exc:
        raise TrainError(f"model '{cfg.model}': could not be loaded ({str(exc).splitlines()[0]}); use "
                         f"'{DEFAULT_MODEL}' or a folder with config.json, weights and a tokenizer") from None
    if not getattr(tok, "chat_template", None):
        raise TrainError(f"model '{cfg.model}' has no chat template, so the assistant turn cannot be located; "
                         "train a chat (instruct) model")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    max_length = min(x for x in (cfg.max_length, window) if x) if (cfg.max_length or window) else 2048
    examples = [encode(tok, r) for r in records]
    check_lengths(examples, records, max_length, str(data))
    for r, e in zip(records, examples):
        if e.n_trained == 0:
            raise DataError(f"{data}:{r.line} (id {r.id}): the assistant turn has no tokens to learn")
    by_id = {r.id: e for r, e in zip(records, examples)}
    return Prepared(records, train_recs, held_out, [by_id[r.id] for r in train_recs], tok, where, max_length,
                    hashlib.sha256(Path(data).read_bytes()).hexdigest())


# ---- the run -----------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)  # atomic: a kill never leaves half a file


def _steps_per_epoch(n: int, cfg: TrainConfig, world: int) -> int:
    return max(1, math.ceil(math.ceil(n / (cfg.batch_size * world)) / cfg.grad_accum))


def total_steps(n_train: int, cfg: TrainConfig, world: int = 1) -> int:
    """Optimizer steps the run makes in all (what Trainer computes from the same settings)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * _steps_per_epoch(n_train, cfg, world)))


def last_checkpoint(out_dir: str | Path) -> str | None:
    """The newest complete checkpoint of the run in `out_dir` (core.train.checkpoints), or None."""
    return newest_complete(Path(out_dir) / CHECKPOINTS)[0]


def _check_out_dir(out: Path, record: dict, resume: bool, overwrite: bool) -> str | None:
    """The checkpoint to resume from (or None), after refusing to clobber or to mix settings."""
    saved = _read_json(out / CONFIG_FILE)
    if resume:
        ckpt, skipped = newest_complete(out / CHECKPOINTS)
        if saved is None or ckpt is None:
            raise TrainError(f"{out}: nothing to resume (no {CONFIG_FILE} or no complete checkpoint in "
                             f"{out / CHECKPOINTS}" + (f"; incomplete: {', '.join(skipped)}" if skipped else "")
                             + "); start without --resume")
        if skipped:
            log.warning("%s: resuming from %s, the newest complete checkpoint; passed over the incomplete %s (cut "
                        "short by a kill)", out, Path(ckpt).name, ", ".join(skipped))
        diff = [k for k in sorted(set(saved) | set(record)) if saved.get(k) != record.get(k) and k not in RESUMABLE]
        if diff:
            k = diff[0]
            raise TrainError(f"{out}: cannot resume with other settings or data ({k} was {saved.get(k)!r}, now "
                             f"{record.get(k)!r}); pass the same ones, or start a fresh run in another --out")
        return ckpt
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TrainError(f"{out}: the folder is not empty; pass --resume to continue its run, --overwrite to "
                         "replace it, or another --out")
    return None


def train(data: str | Path, out_dir: str | Path, cfg: TrainConfig = TrainConfig(), run_id: str = "",
          resume: bool = False, overwrite: bool = False, stop: Callable[[], bool] | None = None,
          prepared: Prepared | None = None) -> Iterator[ev.Event]:
    """Fine-tune, yielding typed events: TrainStarted, TrainEvaluated("before"), TrainProgress and
    TrainCheckpoint as they happen, TrainEvaluated("after"), TrainFinished. A fatal problem before
    training raises DataError/TrainError; `stop()` returning True (or closing the generator) ends
    training after the current step, with a checkpoint to resume from."""
    import torch

    cfg = cfg.resolved()
    if cfg.method == "dpo":  # preference pairs through TRL's DPOTrainer, the same run machinery
        from core.train.dpo import train_dpo

        yield from train_dpo(data, out_dir, cfg, run_id, resume, overwrite, stop, prepared)
        return
    prep = prepared or prepare(data, cfg)
    out = Path(out_dir).expanduser().resolve()
    record = {**cfg.as_dict(), "data": str(Path(data).resolve()), "data_sha256": prep.data_sha256}
    state = process_state()
    main = state.is_main_process
    ckpt = _check_out_dir(out, record, resume, overwrite)  # every process: each raises the same error
    state.wait_for_everyone()
    if main:
        if resume:
            clear_incomplete(out / CHECKPOINTS, newest_complete(out / CHECKPOINTS)[1])
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / CONFIG_FILE, record)
    state.wait_for_everyone()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    total = total_steps(len(prep.train), cfg, state.num_processes)
    start_step = _checkpoint_step(ckpt)
    metrics = _start_metrics(out, cfg, prep, resume, start_step)
    trained = sum(e.n_trained for e in prep.examples)
    yield ev.TrainStarted(run_id, config=record, out_dir=str(out), n_train=len(prep.train),
                          n_eval=len(prep.held_out), train_tokens=sum(len(e.input_ids) for e in prep.examples),
                          trained_tokens=trained, total_steps=total, resumed_from=ckpt, start_step=start_step)

    model = _load_model(prep, cfg, state.device)
    if main and metrics.get("eval_before") is None:
        from core.models.hf import HFLM

        before = evaluate(HFLM(model, prep.tokenizer, name=cfg.model, device=str(state.device)), prep.held_out)
        metrics.update(eval_before=before, eval_ppl_before=before["ppl_with_thinking"],
                       eval_ppl_before_no_thinking=before["ppl_without_thinking"])
        _write_json(out / METRICS_FILE, metrics)
        yield ev.TrainEvaluated(run_id, stage="before", **before)
    state.wait_for_everyone()

    trainer = _build_trainer(model, prep, cfg, out, state)
    events: queue.Queue = queue.Queue()
    stop_flag = threading.Event()
    trainer.add_callback(_bridge(events, stop_flag, stop, run_id, out))

    def work():
        try:
            if cfg.threads:
                torch.set_num_threads(cfg.threads)  # OpenMP settings are per thread
            trainer.train(resume_from_checkpoint=ckpt)
            events.put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            events.put(("error", exc))

    worker = threading.Thread(target=work, name="palimpsest-train", daemon=True)
    t_train = time.perf_counter()
    worker.start()
    last_loss, interrupted = None, None

    def record(progress: ev.TrainProgress) -> ev.TrainProgress:
        progress = dataclasses.replace(progress, total_steps=total)
        metrics["train_loss"].append(progress.loss)
        metrics["train_loss_steps"].append(progress.step)
        metrics["lr"].append(progress.lr)
        metrics.update(steps=progress.step, seconds=metrics["seconds_before"] + time.perf_counter() - t0)
        if main:
            _write_json(out / METRICS_FILE, metrics)
        return progress

    try:
        while True:
            try:
                item = events.get()
            except KeyboardInterrupt as exc:  # Ctrl-C: finish the step in progress, checkpoint, report it all
                interrupted = exc
                stop_flag.set()
                continue
            if isinstance(item, tuple):
                if item[0] == "error":
                    raise TrainError(f"training failed: {item[1]}") from item[1]
                break
            if isinstance(item, ev.TrainProgress):
                item = record(item)
                last_loss = item.loss
            yield item
    finally:
        stop_flag.set()  # a consumer that goes away stops training at the next step (a checkpoint is saved)
        worker.join()
        while not events.empty():  # what a departed consumer did not take still reaches metrics.json
            item = events.get()
            if isinstance(item, ev.TrainProgress):
                record(item)

    steps = trainer.state.global_step
    stopped = stop_flag.is_set() and steps < total
    train_seconds = time.perf_counter() - t_train  # this invocation's training (checkpoint saves included)
    metrics.update(steps=steps, train_seconds=metrics["train_seconds_before"] + train_seconds,
                   seconds_per_step=train_seconds / (steps - start_step) if steps > start_step else None)
    if stopped:
        metrics.update(status="stopped", seconds=metrics["seconds_before"] + time.perf_counter() - t0)
        if main:
            _write_json(out / METRICS_FILE, metrics)
        yield ev.TrainFinished(run_id, reason="stopped", steps=steps, seconds=time.perf_counter() - t0,
                               out_dir="", final_loss=last_loss)
        if interrupted is not None:
            raise interrupted
        return
    _save_final(trainer, prep, cfg, out)
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if main:
        from core.models.load import load_lm

        trained_lm = load_lm(str(out), dtype=cfg.dtype, device=str(state.device))  # the saved folder, as users load it
        after = evaluate(trained_lm, prep.held_out)
        del trained_lm
        metrics.update(eval_after=after, eval_ppl_after=after["ppl_with_thinking"],
                       eval_ppl_after_no_thinking=after["ppl_without_thinking"], status="finished",
                       seconds=metrics["seconds_before"] + time.perf_counter() - t0)
        _write_json(out / METRICS_FILE, metrics)
        yield ev.TrainEvaluated(run_id, stage="after", **after)
    state.wait_for_everyone()
    yield ev.TrainFinished(run_id, reason="done", steps=steps, seconds=time.perf_counter() - t0,
                           out_dir=str(out), final_loss=last_loss)


def _checkpoint_step(ckpt: str | None) -> int:
    if not ckpt:
        return 0
    state = _read_json(Path(ckpt) / "trainer_state.json") or {}
    return int(state.get("global_step", 0))


def _start_metrics(out: Path, cfg: TrainConfig, prep: Prepared, resume: bool, start_step: int) -> dict:
    """metrics.json's content at the start: fresh, or a resumed run's history up to its checkpoint."""
    fresh = {"status": "running", "model": cfg.model, "lora": cfg.lora, "n_train": len(prep.train),
             "n_eval": len(prep.held_out), "held_out_ids": [r.id for r in prep.held_out],
             "eval_ppl_before": None, "eval_ppl_after": None, "eval_ppl_before_no_thinking": None,
             "eval_ppl_after_no_thinking": None, "eval_before": None, "eval_after": None,
             "train_loss": [], "train_loss_steps": [], "lr": [], "steps": start_step, "seconds": 0.0,
             "train_seconds": 0.0, "seconds_per_step": None, "seconds_before": 0.0, "train_seconds_before": 0.0}
    old = _read_json(out / METRICS_FILE) if resume else None
    if not old:
        return fresh
    keep = [i for i, s in enumerate(old.get("train_loss_steps", [])) if s <= start_step]
    for key in ("train_loss", "train_loss_steps", "lr"):
        old[key] = [old.get(key, [])[i] for i in keep]
    old.update(status="running", steps=start_step, seconds_before=old.get("seconds", 0.0),
               train_seconds_before=old.get("train_seconds", 0.0), eval_after=None, eval_ppl_after=None,
               eval_ppl_after_no_thinking=None)
    return {**fresh, **old}


def _load_model(prep: Prepared, cfg: TrainConfig, device):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(prep.model_path, dtype=getattr(torch, cfg.dtype))
    except (OSError, ValueError) as exc:
        raise TrainError(f"model '{cfg.model}': could not be loaded ({str(exc).splitlines()[0]})") from None
    return model.to(device)


def _use_bf16(cfg: TrainConfig) -> bool:
    import torch

    if cfg.bf16 is not None:
        return cfg.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _build_trainer(model, prep: Prepared, cfg: TrainConfig, out: Path, state):
    import functools

    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else \
            [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps, save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500, save_total_limit=cfg.save_total_limit, bf16=_use_bf16(cfg),
        use_cpu=not torch.cuda.is_available(), seed=cfg.seed, data_seed=cfg.seed, report_to="none",
        disable_tqdm=True, remove_unused_columns=False, activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0, ddp_find_unused_parameters=False)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in prep.examples]
    trainer = atomic(Trainer)(model=model, args=args, train_dataset=rows, processing_class=prep.tokenizer,
                              data_collator=functools.partial(collate, pad_id=prep.tokenizer.pad_token_id))
    trainer.remove_callback(PrinterCallback)  # progress reaches the caller as events, not prints
    return trainer


def _bridge(events: queue.Queue, stop_flag: threading.Event, stop: Callable[[], bool] | None, run_id: str,
            out: Path):
    """A TrainerCallback that turns Trainer's logs and saves into events, and asks it to stop."""
    from transformers import TrainerCallback

    class Bridge(TrainerCallback):
        def __init__(self):
            self.last = (0, time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            if stop_flag.is_set() or (stop is not None and stop()):
                stop_flag.set()
                control.should_training_stop = True
                control.should_save = True  # resume continues from here

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs:
                return
            step0, t0 = self.last
            now = time.perf_counter()
            per = (now - t0) / (state.global_step - step0) if state.global_step > step0 else None
            self.last = (state.global_step, now)
            gn = logs.get("grad_norm")
            events.put(ev.TrainProgress(run_id, step=state.global_step, total_steps=state.max_steps,
                                        loss=float(logs["loss"]), lr=float(logs.get("learning_rate", 0.0)),
                                        epoch=float(logs.get("epoch") or state.epoch or 0.0),
                                        grad_norm=float(gn) if gn is not None else None, seconds_per_step=per))

        def on_save(self, args, state, control, **kwargs):
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            events.put(ev.TrainCheckpoint(run_id, step=state.global_step, path=str(path)))

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (state.global_step, time.perf_counter())

    return Bridge()


def _save_final(trainer, prep: Prepared, cfg: TrainConfig, out: Path) -> None:
    """The trained model as a plain folder in `out` (LoRA merged in), with the stock tokenizer."""
    if cfg.lora:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.is_world_process_zero():
            merged = model.merge_and_unload()
            merged.save_pretrained(str(out))
            prep.tokenizer.save_pretrained(str(out))
    else:
        trainer.save_model(str(out))  # gathers sharded weights where needed; saves the tokenizer too
    trainer.accelerator.wait_for_everyone()


def run_training(data: str | Path, out_dir: str | Path, cfg: TrainConfig = TrainConfig(), **kwargs) -> dict:
    """The non-streaming twin of `train`: runs it to the end and returns DIR/metrics.json's content."""
    for _ in train(data, out_dir, cfg, **kwargs):
        pass
    return json.loads((Path(out_dir) / METRICS_FILE).read_text())


def train_job(store, data: str | Path, out_dir: str | Path, cfg: TrainConfig = TrainConfig(), resume: bool = False,
              overwrite: bool = False, stop: Callable[[], bool] | None = None) -> Iterator[ev.Event]:
    """`train` with every event saved to the store (train_runs / train_events) before it is passed on.

    Checks data and model first (nothing is stored for input that cannot train). A resumed run
    appends to the newest unfinished store run of the same folder, so its loss curve continues.
    """
    cfg = cfg.resolved()
    from core.train.dpo import prepare_pairs  # dpo: pairs, read and checked the same way

    prep = (prepare_pairs if cfg.method == "dpo" else prepare)(data, cfg)
    out = str(Path(out_dir).expanduser().resolve())
    main = process_state().is_main_process
    run_id = ""
    if main:
        # the run that trained into this folder and did not finish (attempts refused at the start trained nothing)
        old = [r for r in store.list_train_runs(out_dir=out)
               if r["status"] in ("running", "stopped", "failed") and store.train_loss(r["id"])]
        if resume and old:
            run_id = old[0]["id"]
        else:
            run_id = store.create_train_run(cfg.as_dict(), cfg.model, str(Path(data).resolve()), out)
    step, finished = 0, False
    events = train(data, out_dir, cfg, run_id=run_id, resume=resume, overwrite=overwrite, stop=stop, prepared=prep)
    try:
        for event in events:
            if main:
                store.append_train_event(event)
            step = getattr(event, "step", step)
            finished = event.kind == "train_finished"
            yield event
    except (TrainError, DataError) as exc:
        if main:
            store.append_train_event(ev.RunError(run_id, message=str(exc), where="train"))
        raise
    except (KeyboardInterrupt, GeneratorExit):
        events.close()  # stops training after the step in progress, with a checkpoint
        if main and not finished:
            store.append_train_event(ev.TrainFinished(run_id, reason="stopped", steps=step, seconds=0.0, out_dir=""))
        raise
