"""TrainRunner: starts and stops `palimpsest train` in a SEPARATE PROCESS for the studio.

What it knows: how to turn the Train page's choices into a `palimpsest train` command line
(writing its live metrics to the app's own store file with --db), the processes it started (by
output folder), their log files, and how to stop one (SIGINT first: the engine finishes the step
in progress, checkpoints and records `train_finished`; terminate only if it does not exit in
time). A studio that dies, even by SIGKILL, stops its training the same clean way: the process
watches its parent (studio.cli.train.stop_with_parent). What it does not know: training itself (core.train.trainer), Gradio, drawing. Pages read a run's
progress from the store's train_events, so a reload or a second tab sees the same run.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.store import Store
from core.train.data import read_chat_jsonl

ROOT = Path(__file__).resolve().parents[2]  # the folder holding `studio` and `core` (checkout or site-packages)


class TrainRunnerError(Exception):
    """A training request that cannot start; the message names the field and the fix."""


@dataclass(frozen=True)
class TrainRequest:
    data: str  # chat JSONL to train on
    out_dir: str  # where the trained model goes (empty or absent)
    model: str  # model spec to fine-tune
    max_steps: int  # optimizer steps (>= 1)
    lr: float | None = None  # peak learning rate; None: the engine's default for the mode
    lora: bool = False  # LoRA adapters instead of all weights
    eval_frac: float = 0.1  # share of records held out for the before/after evaluation
    save_steps: int = 0  # checkpoint every N steps (0: only when stopped)
    method: str = "sft"  # sft (chat JSONL) or dpo (an `export --format dpo` file, core.train.dpo)

    def check(self) -> None:
        if not self.data or not Path(self.data).expanduser().is_file():
            raise TrainRunnerError(f"Data: {self.data or '(empty)'!s} is not a file; pick an export, give the path "
                                   "of a chat JSONL file, or build one from the accepted trajectories")
        if self.method == "dpo":
            from core.train.dpo import read_pairs

            read_pairs(Path(self.data).expanduser())  # DataError names the file and line
        elif self.method == "sft":
            read_chat_jsonl(Path(self.data).expanduser())  # DataError names the file, line and field
        else:
            raise TrainRunnerError(f"Method: {self.method!r}; use sft or dpo")
        if not self.model.strip():
            raise TrainRunnerError("Model: empty; give a model spec (the built-in alias smollm2-135m works)")
        if self.max_steps is None or int(self.max_steps) < 1:
            raise TrainRunnerError(f"Max steps: {self.max_steps!r}; give a whole number of at least 1")
        if self.lr is not None and not 0 < float(self.lr) < 1:
            raise TrainRunnerError(f"Learning rate: {self.lr!r}; give a small positive number such as 2e-5, or 0 "
                                   "for the default")
        if not 0 <= float(self.eval_frac) < 1:
            raise TrainRunnerError(f"Eval fraction: {self.eval_frac!r}; give a share from 0 to below 1, e.g. 0.1")
        out = Path(self.out_dir).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise TrainRunnerError(f"Output folder: {out} exists and is not empty; choose a new folder")

    def argv(self, db: str) -> list[str]:
        cmd = [sys.executable, "-m", "studio.cli", "train", "--data", str(Path(self.data).expanduser()),
               "--out", str(Path(self.out_dir).expanduser()), "--model", self.model.strip(),
               "--max-steps", str(int(self.max_steps)), "--eval-frac", str(float(self.eval_frac)),
               "--save-steps", str(int(self.save_steps)), "--method", self.method, "--db", db]
        if self.lr:
            cmd += ["--lr", str(float(self.lr))]
        if self.lora:
            cmd.append("--lora")
        return cmd


@dataclass
class _Proc:
    popen: subprocess.Popen
    log: Path
    started: float
    stop_sent: float | None = None  # when Stop was sent (the page says "stopping…" until the process ends)


@dataclass
class TrainRunner:
    store: Store  # the app's store; its file is what the training process writes to
    stop_grace_s: float = 60.0  # after SIGINT, how long a process may take to checkpoint before terminate
    _procs: dict = field(default_factory=dict)  # resolved out_dir -> _Proc
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def db_path(self) -> str | None:
        return str(self.store.path) if self.store.path else None

    def start(self, req: TrainRequest) -> str:
        """Check the request, launch the process; returns the resolved output folder (the key)."""
        if self.db_path is None:
            raise TrainRunnerError("Training runs in its own process and reports through the store file: start the "
                                   "studio with --db PATH (an in-memory store cannot be shared)")
        req.check()
        out = str(Path(req.out_dir).expanduser().resolve())
        with self._lock:
            if self.running(out):
                raise TrainRunnerError(f"a training run into {out} is going already; stop it first")
            log = Path(out + ".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                       PYTHONUNBUFFERED="1", PALIMPSEST_STOP_WITH_PARENT=str(os.getpid()))
            with log.open("w", encoding="utf-8") as f:
                p = subprocess.Popen(req.argv(self.db_path), env=env, stdout=f,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self._procs[out] = _Proc(p, log, time.time())
        return out

    def running(self, out: str) -> bool:
        p = self._procs.get(out)
        return p is not None and p.popen.poll() is None

    def stopping(self, out: str) -> bool:
        """True while a Stop was sent and the process has not ended yet."""
        p = self._procs.get(out)
        return p is not None and p.stop_sent is not None and p.popen.poll() is None

    def returncode(self, out: str) -> int | None:
        p = self._procs.get(out)
        return None if p is None else p.popen.poll()

    def log_tail(self, out: str, chars: int = 1500) -> str:
        p = self._procs.get(out)
        if p is None or not p.log.is_file():
            return ""
        return p.log.read_text(encoding="utf-8", errors="replace")[-chars:]

    def stop(self, out: str) -> bool:
        """SIGINT the process (it checkpoints and records the stop); a watcher terminates it if it
        has not exited after stop_grace_s. False when no process of this app trains into `out`."""
        p = self._procs.get(out)
        if p is None or p.popen.poll() is not None:
            return False
        p.popen.send_signal(signal.SIGINT)
        p.stop_sent = time.time()

        def watch():
            try:
                p.popen.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                p.popen.terminate()
                try:
                    p.popen.wait(10)
                except subprocess.TimeoutExpired:
                    p.popen.kill()

        threading.Thread(target=watch, daemon=True, name="train-stop").start()
        return True

    def wait(self, out: str, timeout: float | None = None) -> int | None:
        p = self._procs.get(out)
        if p is None:
            return None
        try:
            return p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def run_for(self, out: str) -> dict | None:
        """The newest store training run into `out` (written by the process), if any yet."""
        rs = self.store.list_train_runs(out_dir=out)
        return rs[0] if rs else None
