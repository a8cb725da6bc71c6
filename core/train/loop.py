"""The run every training method shares: one loop for SFT (core.train.trainer) and DPO (core.train.dpo).

Knows: the run's folder (refusing to clobber it or to resume with other settings or data;
DIR/train_config.json; DIR/metrics.json, rewritten after every logged step so a crash keeps the
curve so far; checkpoints in DIR/checkpoints, whole or absent, core.train.checkpoints, resumed
from the newest complete one); the settings every method's Trainer takes (`trainer_args`,
`lora_config`, bf16); the Trainer run in a worker thread so that its callbacks can feed the
generator, with Stop (`stop()` returning True, closing the generator or Ctrl-C end training after
the current step with a checkpoint saved); the final save (LoRA merged in); and the events in
their order: TrainStarted, TrainEvaluated("before"), TrainProgress and TrainCheckpoint as they
happen, TrainEvaluated("after"), TrainFinished. Under `accelerate launch` every process trains;
only the main one evaluates and writes files.

Does not know: a method's data, Trainer class or evaluation: a `Method` brings those.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from core import events as ev
from core.models.lm import LMError
from core.train.checkpoints import clear_incomplete, newest_complete

log = logging.getLogger(__name__)
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"
# settings a resumed run may change (how long, how often it saves and logs); any other must match
RESUMABLE = ("max_steps", "epochs", "save_steps", "save_total_limit", "logging_steps", "threads")


class TrainError(LMError):
    """Training cannot start or go on as asked; the message says why and what to do."""


class Method:
    """What a training method brings to the shared run: its prepared data (core.train.trainer.Prepared)
    and settings, its Trainer and its before/after evaluation. `run` calls these in this order."""
    thread = "palimpsest-train"  # the worker thread's name

    def __init__(self, prep, cfg):
        self.prep = prep  # core.train.trainer.Prepared: records, split, tokenizer, model path
        self.cfg = cfg  # core.train.trainer.TrainConfig, resolved

    def metrics(self) -> dict:
        """Fields metrics.json gains at the start, beside the shared ones."""
        return {}

    def tokens(self) -> tuple[int, int]:
        """(tokens in the training split, tokens trained on) for TrainStarted."""
        raise NotImplementedError

    def before(self, model, metrics: dict, device, run_id: str) -> ev.TrainEvaluated | None:
        """Evaluate the untrained model on the held-out split, record it in `metrics`; None when a
        resumed run's metrics have it already (main process only)."""
        raise NotImplementedError

    def trainer(self, model, out: Path):
        """The method's transformers Trainer on `model`, checkpointing into out/checkpoints."""
        raise NotImplementedError

    def after(self, out: Path, metrics: dict, device, run_id: str) -> ev.TrainEvaluated:
        """Evaluate the saved model in `out` on the held-out split, record it in `metrics` (main process only)."""
        raise NotImplementedError


def process_state():
    """accelerate's view of this process (rank, device). Everything here asks through this one
    call: accelerate keeps the first state made in a process, and one made without `cpu=True`
    on a GPU-less machine would not join the other processes of `accelerate launch`."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)  # atomic: a kill never leaves half a file


def _steps_per_epoch(n: int, cfg, world: int) -> int:
    return max(1, math.ceil(math.ceil(n / (cfg.batch_size * world)) / cfg.grad_accum))


def total_steps(n_train: int, cfg, world: int = 1) -> int:
    """Optimizer steps the run makes in all (what Trainer computes from the same settings)."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * _steps_per_epoch(n_train, cfg, world)))


def last_checkpoint(out_dir: str | Path) -> str | None:
    """The newest complete checkpoint of the run in `out_dir` (core.train.checkpoints), or None."""
    return newest_complete(Path(out_dir) / CHECKPOINTS)[0]


def _check_out_dir(out: Path, record: dict, resume: bool, overwrite: bool) -> str | None:
    """The checkpoint to resume from (or None), after refusing to clobber or to mix settings."""
    saved = read_json(out / CONFIG_FILE)
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


def run(method: Method, data: str | Path, out_dir: str | Path, run_id: str = "", resume: bool = False,
        overwrite: bool = False, stop: Callable[[], bool] | None = None) -> Iterator[ev.Event]:
    """Train with `method`, yielding the events in the module docstring's order. A fatal problem
    before training raises TrainError; `stop()` returning True (or closing the generator) ends
    training after the current step, with a checkpoint to resume from."""
    import torch

    prep, cfg = method.prep, method.cfg
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
        write_json(out / CONFIG_FILE, record)
    state.wait_for_everyone()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    total = total_steps(len(prep.train), cfg, state.num_processes)
    start_step = _checkpoint_step(ckpt)
    metrics = _start_metrics(out, cfg, prep, resume, start_step)
    metrics.update(method.metrics())
    train_tokens, trained_tokens = method.tokens()
    yield ev.TrainStarted(run_id, config=record, out_dir=str(out), n_train=len(prep.train),
                          n_eval=len(prep.held_out), train_tokens=train_tokens, trained_tokens=trained_tokens,
                          total_steps=total, resumed_from=ckpt, start_step=start_step)

    model = load_model(prep, cfg, state.device)
    if main:
        before = method.before(model, metrics, state.device, run_id)
        if before is not None:
            write_json(out / METRICS_FILE, metrics)
            yield before
    state.wait_for_everyone()

    trainer = method.trainer(model, out)
    events: queue.Queue = queue.Queue()
    stop_flag = threading.Event()
    trainer.add_callback(_bridge(events, stop_flag, stop, run_id))

    def work():
        try:
            if cfg.threads:
                torch.set_num_threads(cfg.threads)  # OpenMP settings are per thread
            trainer.train(resume_from_checkpoint=ckpt)
            events.put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            events.put(("error", exc))

    worker = threading.Thread(target=work, name=method.thread, daemon=True)
    t_train = time.perf_counter()
    worker.start()
    last_loss, interrupted = None, None

    def note(progress: ev.TrainProgress) -> ev.TrainProgress:
        progress = dataclasses.replace(progress, total_steps=total)
        metrics["train_loss"].append(progress.loss)
        metrics["train_loss_steps"].append(progress.step)
        metrics["lr"].append(progress.lr)
        metrics.update(steps=progress.step, seconds=metrics["seconds_before"] + time.perf_counter() - t0)
        if main:
            write_json(out / METRICS_FILE, metrics)
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
                item = note(item)
                last_loss = item.loss
            yield item
    finally:
        stop_flag.set()  # a consumer that goes away stops training at the next step (a checkpoint is saved)
        worker.join()
        while not events.empty():  # what a departed consumer did not take still reaches metrics.json
            item = events.get()
            if isinstance(item, ev.TrainProgress):
                note(item)

    steps = trainer.state.global_step
    stopped = stop_flag.is_set() and steps < total
    train_seconds = time.perf_counter() - t_train  # this invocation's training (checkpoint saves included)
    metrics.update(steps=steps, train_seconds=metrics["train_seconds_before"] + train_seconds,
                   seconds_per_step=train_seconds / (steps - start_step) if steps > start_step else None)
    if stopped:
        metrics.update(status="stopped", seconds=metrics["seconds_before"] + time.perf_counter() - t0)
        if main:
            write_json(out / METRICS_FILE, metrics)
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
        after = method.after(out, metrics, state.device, run_id)
        metrics.update(status="finished", seconds=metrics["seconds_before"] + time.perf_counter() - t0)
        write_json(out / METRICS_FILE, metrics)
        yield after
    state.wait_for_everyone()
    yield ev.TrainFinished(run_id, reason="done", steps=steps, seconds=time.perf_counter() - t0,
                           out_dir=str(out), final_loss=last_loss)


def _checkpoint_step(ckpt: str | None) -> int:
    if not ckpt:
        return 0
    state = read_json(Path(ckpt) / "trainer_state.json") or {}
    return int(state.get("global_step", 0))


def _start_metrics(out: Path, cfg, prep, resume: bool, start_step: int) -> dict:
    """metrics.json's content at the start: fresh, or a resumed run's history up to its checkpoint."""
    fresh = {"status": "running", "model": cfg.model, "lora": cfg.lora, "n_train": len(prep.train),
             "n_eval": len(prep.held_out), "held_out_ids": [r.id for r in prep.held_out],
             "eval_ppl_before": None, "eval_ppl_after": None, "eval_ppl_before_no_thinking": None,
             "eval_ppl_after_no_thinking": None, "eval_before": None, "eval_after": None,
             "train_loss": [], "train_loss_steps": [], "lr": [], "steps": start_step, "seconds": 0.0,
             "train_seconds": 0.0, "seconds_per_step": None, "seconds_before": 0.0, "train_seconds_before": 0.0}
    old = read_json(out / METRICS_FILE) if resume else None
    if not old:
        return fresh
    keep = [i for i, s in enumerate(old.get("train_loss_steps", [])) if s <= start_step]
    for key in ("train_loss", "train_loss_steps", "lr"):
        old[key] = [old.get(key, [])[i] for i in keep]
    old.update(status="running", steps=start_step, seconds_before=old.get("seconds", 0.0),
               train_seconds_before=old.get("train_seconds", 0.0), eval_after=None, eval_ppl_after=None,
               eval_ppl_after_no_thinking=None)
    return {**fresh, **old}


def load_model(prep, cfg, device):
    """The model to train, from where prepare found it, in the settings' dtype, on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(prep.model_path, dtype=getattr(torch, cfg.dtype))
    except (OSError, ValueError) as exc:
        raise TrainError(f"model '{cfg.model}': could not be loaded ({str(exc).splitlines()[0]})") from None
    return model.to(device)


def _use_bf16(cfg) -> bool:
    import torch

    if cfg.bf16 is not None:
        return cfg.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def trainer_args(cfg, out: Path) -> dict:
    """The TrainingArguments every method's Trainer takes from the settings (a method adds its own)."""
    import torch

    return dict(
        output_dir=str(out / CHECKPOINTS), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps, save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500, save_total_limit=cfg.save_total_limit, bf16=_use_bf16(cfg),
        use_cpu=not torch.cuda.is_available(), seed=cfg.seed, data_seed=cfg.seed, report_to="none",
        disable_tqdm=True, activation_checkpointing=cfg.gradient_checkpointing, dataloader_num_workers=0)


def lora_config(cfg):
    """peft's LoraConfig from the settings, or None when the run trains all weights."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else \
        [t.strip() for t in cfg.lora_targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def _bridge(events: queue.Queue, stop_flag: threading.Event, stop: Callable[[], bool] | None, run_id: str):
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


def _save_final(trainer, prep, cfg, out: Path) -> None:
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
