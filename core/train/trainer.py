"""The training backend: supervised fine-tuning on the chat export, evaluated before and after.

Knows: the settings (`TrainConfig`, one commented dataclass, written to DIR/train_config.json
with every run); checking data and model before any compute (core.train.data does the data);
SFT as a method of the shared run (`Sft`, core.train.loop): transformers' `Trainer` (accelerate
underneath, so `accelerate launch` and torchrun work unchanged) with the loss only on the last
assistant turn, full or LoRA (peft, merged into the weights before the final save), and the
held-out evaluation (perplexity of the reference answers given the query, with the record's
thinking and with an empty think block, through core.models.scoring in the training format);
`train`, which runs the method the settings name (dpo: core.train.dpo) through core.train.loop
(events, checkpoints and resume, metrics.json, Stop), with a non-streaming twin (`run_training`)
and a job that saves every event to the store as it happens (`train_job`). DIR ends up a plain
model folder (config, weights, tokenizer with its stock chat template) that `load_lm(DIR)` and
every `--model DIR` load, plus train_config.json and metrics.json.

Does not know: the export (core.data.imports), the studio's plots, judges, the run loop itself
(core.train.loop).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from core import events as ev
from core.models.lm import DEFAULT_MODEL
from core.models.urls import is_server_spec
from core.settings import SettingError, checking, invalid, loading, setting, validate
from core.train import loop
from core.train.checkpoints import atomic
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
from core.train.loop import (  # noqa: F401  (the run's files and errors, shared by every method, named here too)
    CHECKPOINTS,
    CONFIG_FILE,
    METRICS_FILE,
    TrainError,
    last_checkpoint,
    process_state,
)

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")  # transformers' schedulers that need no extra arguments


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


def check_model_spec(spec: str) -> str:
    """Where `from_pretrained` finds a trainable model for `spec`, or TrainError (no compute spent)."""
    if is_server_spec(spec):
        raise TrainError(f"model '{spec}' is a server: its weights are not here to train. Train a local model "
                         f"('{DEFAULT_MODEL}', a folder or a hub id), then serve the result")
    from core.models.hf import resolve_spec

    return resolve_spec(spec)


def model_tokenizer(cfg: TrainConfig) -> tuple[object, str, int]:
    """(the tokenizer, with a pad token; where from_pretrained finds the model; the longest record
    in tokens) for the settings' model, or TrainError before any compute."""
    from transformers import AutoConfig, AutoTokenizer

    where = check_model_spec(cfg.model)
    try:
        tok = AutoTokenizer.from_pretrained(where)
        window = int(getattr(AutoConfig.from_pretrained(where), "max_position_embeddings", 0) or 0)
    except (OSError, ValueError) as exc:
        raise TrainError(f"model '{cfg.model}': could not be loaded ({str(exc).splitlines()[0]}); use "
                         f"'{DEFAULT_MODEL}' or a folder with config.json, weights and a tokenizer") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    max_length = min(x for x in (cfg.max_length, window) if x) if (cfg.max_length or window) else 2048
    return tok, where, max_length


def prepare(data: str | Path, cfg: TrainConfig) -> Prepared:
    """Read and check the data, the model spec and the lengths; DataError/TrainError before any compute."""
    cfg.check()
    records = read_chat_jsonl(data)
    train_recs, held_out = split_records(records, cfg.eval_frac, cfg.seed)
    tok, where, max_length = model_tokenizer(cfg)
    if not getattr(tok, "chat_template", None):
        raise TrainError(f"model '{cfg.model}' has no chat template, so the assistant turn cannot be located; "
                         "train a chat (instruct) model")
    examples = [encode(tok, r) for r in records]
    check_lengths(examples, records, max_length, str(data))
    for r, e in zip(records, examples):
        if e.n_trained == 0:
            raise DataError(f"{data}:{r.line} (id {r.id}): the assistant turn has no tokens to learn")
    by_id = {r.id: e for r, e in zip(records, examples)}
    return Prepared(records, train_recs, held_out, [by_id[r.id] for r in train_recs], tok, where, max_length,
                    hashlib.sha256(Path(data).read_bytes()).hexdigest())


# ---- SFT in the shared run (core.train.loop) -------------------------------------------------------

def train(data: str | Path, out_dir: str | Path, cfg: TrainConfig = TrainConfig(), run_id: str = "",
          resume: bool = False, overwrite: bool = False, stop: Callable[[], bool] | None = None,
          prepared: Prepared | None = None) -> Iterator[ev.Event]:
    """Fine-tune, yielding typed events: TrainStarted, TrainEvaluated("before"), TrainProgress and
    TrainCheckpoint as they happen, TrainEvaluated("after"), TrainFinished. A fatal problem before
    training raises DataError/TrainError; `stop()` returning True (or closing the generator) ends
    training after the current step, with a checkpoint to resume from. Method dpo trains
    preference pairs (core.train.dpo) in the same run."""
    cfg = cfg.resolved()
    if cfg.method == "dpo":
        from core.train.dpo import Dpo, prepare_pairs

        method = Dpo(prepared or prepare_pairs(data, cfg), cfg)
    else:
        method = Sft(prepared or prepare(data, cfg), cfg)
    yield from loop.run(method, data, out_dir, run_id, resume, overwrite, stop)


class Sft(loop.Method):
    """Supervised fine-tuning: transformers' Trainer, the loss on the last assistant turn, perplexity before and after."""

    def tokens(self) -> tuple[int, int]:
        examples = self.prep.examples
        return sum(len(e.input_ids) for e in examples), sum(e.n_trained for e in examples)

    def before(self, model, metrics: dict, device, run_id: str) -> ev.TrainEvaluated | None:
        if metrics.get("eval_before") is not None:
            return None
        from core.models.hf import HFLM

        before = evaluate(HFLM(model, self.prep.tokenizer, name=self.cfg.model, device=str(device)), self.prep.held_out)
        metrics.update(eval_before=before, eval_ppl_before=before["ppl_with_thinking"],
                       eval_ppl_before_no_thinking=before["ppl_without_thinking"])
        return ev.TrainEvaluated(run_id, stage="before", **before)

    def trainer(self, model, out: Path):
        import functools

        from transformers import PrinterCallback, Trainer, TrainingArguments

        prep, cfg = self.prep, self.cfg
        if cfg.lora:
            from peft import get_peft_model

            model = get_peft_model(model, loop.lora_config(cfg))
        if cfg.gradient_checkpointing:
            model.config.use_cache = False
        args = TrainingArguments(**loop.trainer_args(cfg, out), remove_unused_columns=False,
                                 ddp_find_unused_parameters=False)
        rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in prep.examples]
        trainer = atomic(Trainer)(model=model, args=args, train_dataset=rows, processing_class=prep.tokenizer,
                                  data_collator=functools.partial(collate, pad_id=prep.tokenizer.pad_token_id))
        trainer.remove_callback(PrinterCallback)  # progress reaches the caller as events, not prints
        return trainer

    def after(self, out: Path, metrics: dict, device, run_id: str) -> ev.TrainEvaluated:
        from core.models.load import load_lm

        trained_lm = load_lm(str(out), dtype=self.cfg.dtype, device=str(device))  # the saved folder, as users load it
        after = evaluate(trained_lm, self.prep.held_out)
        del trained_lm
        metrics.update(eval_after=after, eval_ppl_after=after["ppl_with_thinking"],
                       eval_ppl_after_no_thinking=after["ppl_without_thinking"])
        return ev.TrainEvaluated(run_id, stage="after", **after)


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
