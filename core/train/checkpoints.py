"""Training checkpoints that are whole or absent: written aside, renamed into place when complete,
and the newest complete one found for a resume.

Knows: where transformers' Trainer puts a checkpoint (`checkpoint-N` under its output folder) and
what a complete one holds (`trainer_state.json`, written last by Trainer, and the weights:
`model.safetensors`, a sharded index, `pytorch_model.bin` or a LoRA `adapter_model.*`). `atomic`
makes a Trainer subclass whose checkpoints are written to STAGING/checkpoint-N (a hidden folder
beside them), flushed to disk, then renamed to checkpoint-N in one step (a kill mid-write leaves
only the staging folder, cleared on the next start), after which the old ones are rotated as
Trainer does. `newest_complete` picks the highest-numbered complete checkpoint and names the
incomplete ones it passed over (checkpoints written before this module, or by a kill during
Trainer's own save, can be incomplete), so a resume says which it took and why.

Does not know: the run's settings, events or metrics (core.train.trainer).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from core.outputs import fsync_path, fsync_tree

log = logging.getLogger(__name__)

STAGING = ".staging"  # the folder beside the checkpoints where one is written before its rename
STATE_FILE = "trainer_state.json"  # Trainer writes it last: a checkpoint without it was cut short
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
           "adapter_model.safetensors", "adapter_model.bin")
_NAME = re.compile(r"^checkpoint-(\d+)$")


def why_incomplete(folder: Path) -> str:
    """'' for a complete checkpoint folder, else what it lacks."""
    if not (folder / STATE_FILE).is_file():
        return f"no {STATE_FILE}"
    if not any((folder / w).is_file() and (folder / w).stat().st_size > 0 for w in WEIGHTS):
        return "no weights file"
    return ""


def newest_complete(folder: str | Path) -> tuple[str | None, list[str]]:
    """(the newest complete checkpoint-N under `folder`, or None; "checkpoint-M (what it lacks)" for
    each newer incomplete one passed over)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None, []
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _NAME.match(p.name))),
                   reverse=True)
    skipped = []
    for _, path in found:
        why = why_incomplete(path)
        if not why:
            return str(path), skipped
        skipped.append(f"{path.name} ({why})")
    return None, skipped


def clear_incomplete(folder: str | Path, skipped: list[str]) -> None:
    """Remove the staging folder and the incomplete checkpoints `newest_complete` passed over (they
    cannot be resumed from, and Trainer's rotation would count them as kept checkpoints)."""
    folder = Path(folder)
    shutil.rmtree(folder / STAGING, ignore_errors=True)
    for entry in skipped:
        name = entry.split(" ", 1)[0]
        log.warning("removing the incomplete checkpoint %s", folder / entry)
        shutil.rmtree(folder / name, ignore_errors=True)


def atomic(trainer_class: type) -> type:
    """A subclass of `trainer_class` (transformers.Trainer) whose checkpoints appear whole or not at all."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
    try:
        from transformers.trainer_utils import rotate_checkpoints
    except ImportError:  # older transformers: rotation is a Trainer method
        rotate_checkpoints = None

    class AtomicCheckpoints(trainer_class):
        def _save_checkpoint(self, model, trial):
            run_dir = Path(self._get_output_dir(trial=trial))
            staging = run_dir / STAGING
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.args.should_save:
                shutil.rmtree(staging / name, ignore_errors=True)
            self._get_output_dir = lambda trial=None: str(staging)  # Trainer writes staging/checkpoint-N
            try:
                super()._save_checkpoint(model, trial)
            finally:
                del self._get_output_dir
            if not self.args.should_save:
                return
            final = run_dir / name
            fsync_tree(staging / name)
            if final.exists():  # the same step saved twice (a stop right after a scheduled save)
                shutil.rmtree(final)
            os.replace(staging / name, final)
            fsync_path(run_dir)
            if rotate_checkpoints is not None:
                rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                                   best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
            else:
                self._rotate_checkpoints(use_mtime=True, output_dir=str(run_dir))

    AtomicCheckpoints.__name__ = f"Atomic{trainer_class.__name__}"
    return AtomicCheckpoints
