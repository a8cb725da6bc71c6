"""`palimpsest train`: fine-tune a model on a chat export (core.train.trainer), with a progress bar.

Thin: parses arguments into a TrainConfig (its flags generated from the config, core.settings),
runs core.train.trainer.train_job (every event saved in --db as it happens), draws the bar from
the events, prints the before/after figures. Works
unchanged under `accelerate launch -m studio.cli train ...` (only the main process prints and
writes). Does not know how training works.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from core.models.lm import DEFAULT_MODEL
from studio.cli.common import CLIError


def add_train_parser(sub, default_db: str) -> None:
    """Register `train` on the `palimpsest` subcommand set; its training settings are TrainConfig's
    fields (core.settings generates the flags)."""
    from core.settings import add_arguments
    from core.train.trainer import TrainConfig

    t = sub.add_parser("train", help="fine-tune a model on a chat export (loss on the assistant turn only), or DPO on "
                                     "preference pairs (--method dpo)",
                       description="Supervised fine-tuning on chat JSONL ({'messages': [user, assistant]} with "
                                   "'<think>...</think>' + answer in the assistant turn; query/thinking/reference "
                                   "lines work too), or with --method dpo TRL's DPOTrainer on an `export --format dpo` "
                                   "train.jsonl (held-out pair accuracy and reward margin before and after). DIR "
                                   "receives the trained model (load it with --model DIR), "
                                   "train_config.json, metrics.json and checkpoints/.")
    t.add_argument("--data", required=True, help="chat JSONL to train on (--method dpo: preference pairs JSONL)")
    t.add_argument("--out", required=True, help="output folder DIR (must be empty unless --resume/--overwrite; "
                                                "never the --data file, nor holding it with --overwrite)")
    t.add_argument("--resume", action="store_true", help="continue DIR's run from its newest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace what DIR holds")
    t.add_argument("--db", default=default_db, help="SQLite store for the live metrics")
    t.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    settings = t.add_argument_group("training settings (TrainConfig); --lora-alpha defaults to 2 x --lora-r")
    flags = add_arguments(settings, TrainConfig, defaults={"lora_alpha": None})
    t.set_defaults(func=cmd_train, setting_flags=flags)


def config_from_args(args):
    """The TrainConfig the flags give (SettingError names a bad one); LoRA alpha is twice the rank
    unless given."""
    import dataclasses

    from core.settings import from_args
    from core.train.trainer import TrainConfig

    cfg = from_args(TrainConfig, args)
    cfg = dataclasses.replace(cfg, model=(cfg.model or DEFAULT_MODEL).strip())
    if getattr(args, "lora_alpha", None) is None:
        cfg = dataclasses.replace(cfg, lora_alpha=2 * cfg.lora_r)
    return cfg


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


PARENT_ENV = "PALIMPSEST_STOP_WITH_PARENT"  # a pid: when that process dies, stop as on Ctrl-C


def stop_with_parent(say=print) -> None:
    """When $PALIMPSEST_STOP_WITH_PARENT names our parent (the studio sets it), watch it: if the
    parent dies (even by SIGKILL) this process interrupts itself as Ctrl-C would, so the step in
    progress is finished, checkpointed and recorded as stopped instead of training on unseen."""
    want = os.environ.get(PARENT_ENV, "")
    if not want.isdigit() or int(want) != os.getppid():
        return

    def watch() -> None:
        while os.getppid() == int(want):
            time.sleep(1.0)
        say(f"the studio that started this run (pid {want}) is gone: stopping with a checkpoint", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def cmd_train(args) -> int:
    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    from core.outputs import OutputError, check_folder_out, oserror_line
    from core.store import StoreError, open_store
    from core.train.data import DataError
    from core.train.trainer import TrainError, process_state, train_job

    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite contradict each other; pass one") from None
    try:  # before any work: not a file, not the data or the store (nor holding them when replaced), writable
        check_folder_out(args.out, {"--data": args.data, "--db": args.db}, replaces=args.overwrite)
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    hf_logging.disable_progress_bar()  # one bar: ours
    cfg = config_from_args(args)
    main = process_state().is_main_process
    try:
        store = open_store(args.db) if main else None
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    show = main and (sys.stderr.isatty() or args.progress)
    # Ctrl-C / the studio's Stop is SIGINT; a process started in the background by a
    # non-interactive shell (nohup ... &) inherits SIGINT ignored, so take it back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_with_parent()
    bar, step, finished = None, 0, False
    say = print if main else (lambda *a, **k: None)
    try:
        for event in train_job(store, args.data, args.out, cfg, resume=args.resume, overwrite=args.overwrite):
            if event.kind == "train_started":
                step = event.start_step
                what = (f"resuming at step {event.start_step} from {os.path.basename(event.resumed_from)}" if event.resumed_from
                        else "training")
                say(f"{what}: {event.n_train} record(s) ({event.trained_tokens} of {event.train_tokens} tokens "
                    f"trained), {event.n_eval} held out, {event.total_steps} step(s) -> {event.out_dir}",
                    file=sys.stderr)
                bar = tqdm(total=event.total_steps, initial=event.start_step, desc="train", unit="step",
                           file=sys.stderr, disable=not show)
            elif event.kind == "train_progress" and bar is not None:
                step = event.step
                bar.update(event.step - bar.n)
                bar.set_postfix({"loss": f"{event.loss:.4f}", "lr": f"{event.lr:.2e}"}, refresh=True)
                if not show:
                    say(f"step {event.step}/{event.total_steps} loss {event.loss:.4f} lr {event.lr:.2e}",
                        file=sys.stderr)
            elif event.kind == "train_evaluated" and cfg.method == "dpo":
                say(f"held-out pairs {event.stage} training: pair accuracy {_fmt(event.pair_accuracy)}, mean reward "
                    f"margin {_fmt(event.reward_margin)}, model prefers chosen {_fmt(event.prefers_chosen)} "
                    f"({event.n_items} pair(s))", file=sys.stderr)
            elif event.kind == "train_evaluated":
                say(f"held-out answer perplexity {event.stage} training: {_fmt(event.ppl_with_thinking)} with "
                    f"thinking, {_fmt(event.ppl_without_thinking)} without ({event.n_items} record(s), "
                    f"{event.n_tokens} tokens)", file=sys.stderr)
            elif event.kind == "train_finished":
                finished = True
                if bar is not None:
                    bar.close()
                if event.reason == "stopped":
                    say(f"stopped at step {event.steps}; run again with --resume to continue", file=sys.stderr)
                else:
                    say(f"saved the trained model in {event.out_dir} ({event.steps} steps, {event.seconds:.0f} s); "
                        f"use it with --model {event.out_dir}; figures in {event.out_dir}/metrics.json",
                        file=sys.stderr)
    except (DataError, TrainError, OutputError) as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:  # disk full while checkpointing, a read-only folder: one line
        raise CLIError(oserror_line(exc)) from None
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if finished:
            pass  # the stop was reported with its step already
        elif step:
            say(f"interrupted after step {step}: the step in progress was finished and checkpointed, and every "
                "event is in the store; run the same command with --resume to continue", file=sys.stderr)
        else:
            say("interrupted before the first step: nothing to resume", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
        if store is not None:
            store.close()
    return 0
