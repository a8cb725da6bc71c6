"""DPO in the included backend: TRL's DPOTrainer on an `export --format dpo` file, evaluated before and after.

Knows: reading and checking preference pairs (core.pairs' records, or any JSONL of
prompt/chosen/rejected in TRL's conversational or standard layout); the held-out split, by prompt
when the pairs have two prompts or more (a REER run's step pairs share one prompt: holding out
pairs of a prompt trained on would flatter the score); `Dpo`, the method core.train.loop runs
(the same events, checkpoints, metrics.json, Stop and resume as SFT): DPOTrainer (TRL's loss,
reference model and tokenisation; LoRA through its peft_config as for SFT; accelerate
underneath, so `accelerate launch` works unchanged); and the held-out evaluation:
  reward margin of a pair = beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))),
  log-probabilities summed over the answer's tokens after the rendered prompt, exactly as TRL
  splits them; pair_accuracy = share of held-out pairs with a margin above 0 (the policy prefers
  chosen over rejected more than the reference model, the model before training, does), and
  reward_margin = their mean. Before training the policy is the reference, so both are 0 by
  definition; `prefers_chosen` (share of pairs the model itself gives the chosen answer the
  higher log-probability) is meaningful before and after.

Does not know: how pairs are made (core.pairs), the studio, the SFT data reader.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core import events as ev
from core.train import loop
from core.train.data import DataError, json_lines, split_records


@dataclass(frozen=True)
class Pair:
    """One preference pair as DPOTrainer reads it."""
    id: str  # the record's id (or its line number)
    prompt: object  # [messages] (conversational) or text (standard)
    chosen: object  # [assistant message] or text
    rejected: object
    line: int  # 1-based line in the file

    def row(self) -> dict:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}


def _messages(x) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                   and m.get("role") in ("user", "assistant", "system") for m in x)


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a JSONL file; DataError naming the line and the fix for anything else."""
    path = Path(path)
    out, kinds = [], set()
    for n, r in json_lines(path, "dpo"):
        if not isinstance(r, dict) or not {"prompt", "chosen", "rejected"} <= set(r):
            raise DataError(f"{path}:{n}: a preference pair needs prompt, chosen and rejected (`export --format dpo` "
                            "writes them); a chat export trains with --method sft")
        conv = _messages(r["prompt"]) and _messages(r["chosen"]) and _messages(r["rejected"])
        std = all(isinstance(r[k], str) and r[k].strip() for k in ("prompt", "chosen", "rejected"))
        if not (conv or std):
            raise DataError(f"{path}:{n}: prompt, chosen and rejected must all be message lists "
                            "([{role, content}]) or all be non-empty texts")
        kinds.add(conv)
        out.append(Pair(str(r.get("id", n)), r["prompt"], r["chosen"], r["rejected"], n))
    if len(kinds) > 1:
        raise DataError(f"{path}: mixes conversational and plain-text pairs; DPOTrainer reads one layout per file")
    if len(out) < 2:
        raise DataError(f"{path}: {len(out)} pair(s); DPO needs at least 2 (one to train, one to hold out), "
                        "export more with a lower --min-margin or more sources")
    return out


def _key(p: Pair) -> str:
    return json.dumps(p.prompt[:1] if isinstance(p.prompt, list) else p.prompt, sort_keys=True)


def split_pairs(pairs: Sequence[Pair], eval_frac: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out): by prompt when there are two prompts or more (module docstring), else by pair."""
    groups: dict[str, list[Pair]] = {}
    for p in pairs:
        groups.setdefault(_key(p), []).append(p)
    if len(groups) < 2 or eval_frac == 0:
        return split_records(list(pairs), eval_frac, seed)
    keys = sorted(groups)
    train_k, held_k = split_records(keys, eval_frac, seed)
    return [p for k in train_k for p in groups[k]], [p for k in held_k for p in groups[k]]


def prepare_pairs(data: str | Path, cfg):
    """core.train.trainer.Prepared for DPO: pairs read and checked, model and tokenizer found, before any compute."""
    from core.train.trainer import Prepared, TrainError, model_tokenizer

    cfg.check()
    pairs = read_pairs(data)
    train, held = split_pairs(pairs, cfg.eval_frac, cfg.seed)
    tok, where, max_length = model_tokenizer(cfg)
    if isinstance(pairs[0].prompt, list) and not getattr(tok, "chat_template", None):
        raise TrainError(f"model '{cfg.model}' has no chat template for these conversational pairs; train a chat model")
    return Prepared(pairs, train, held, [], tok, where, max_length, hashlib.sha256(Path(data).read_bytes()).hexdigest())


# ---- evaluation --------------------------------------------------------------------------------

def _ids(tok, pair: Pair, which: str) -> tuple[list[int], int]:
    """(prompt + answer token ids, where the answer starts), split as DPOTrainer splits them."""
    from trl.data_utils import is_conversational

    row = pair.row()
    if is_conversational(row):
        p = tok.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)
        full = tok.apply_chat_template(row["prompt"] + row[which], tokenize=True, return_dict=False)
    else:
        p = tok(row["prompt"])["input_ids"]
        full = tok(row["prompt"] + row[which] + (tok.eos_token or ""))["input_ids"]
    start = 0
    while start < min(len(p), len(full)) and p[start] == full[start]:
        start += 1
    return list(full), start


def logps(model, tok, pairs: Sequence[Pair], max_length: int, device) -> list[tuple[float, float]]:
    """(log p(chosen), log p(rejected)) per pair, summed over the answer tokens (kept within max_length)."""
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for p in pairs:
            both = []
            for which in ("chosen", "rejected"):
                ids, start = _ids(tok, p, which)
                ids = ids[:max_length]
                x = torch.tensor([ids], device=device)
                lp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
                tgt = x[0, 1:]
                tok_lp = lp.gather(1, tgt[:, None])[:, 0][max(0, start - 1):]
                both.append(float(tok_lp.sum()))
            out.append((both[0], both[1]))
    return out


def evaluate_pairs(policy: Sequence[tuple[float, float]], ref: Sequence[tuple[float, float]], beta: float,
                   ids: Sequence[str]) -> dict:
    """pair_accuracy, reward_margin and prefers_chosen (module docstring) from the log-probabilities."""
    if not policy:
        return {"pair_accuracy": None, "reward_margin": None, "prefers_chosen": None, "n_items": 0, "per_item": {}}
    margins = [beta * ((pc - rc) - (pr - rr)) for (pc, pr), (rc, rr) in zip(policy, ref)]
    return {"pair_accuracy": sum(m > 0 for m in margins) / len(margins),
            "reward_margin": sum(margins) / len(margins),
            "prefers_chosen": sum(pc > pr for pc, pr in policy) / len(policy), "n_items": len(policy),
            "per_item": {i: {"margin": m, "logp_chosen": pc, "logp_rejected": pr}
                         for i, m, (pc, pr) in zip(ids, margins, policy)}}


def _evaluated(run_id: str, stage: str, result: dict, seconds: float) -> ev.TrainEvaluated:
    return ev.TrainEvaluated(run_id, stage=stage, ppl_with_thinking=None, ppl_without_thinking=None,
                             n_items=result["n_items"], n_tokens=0, seconds=seconds, per_item=result["per_item"],
                             pair_accuracy=result["pair_accuracy"], reward_margin=result["reward_margin"],
                             prefers_chosen=result["prefers_chosen"])


# ---- DPO in the shared run (core.train.loop) -------------------------------------------------------

class Dpo(loop.Method):
    """Preference pairs through TRL's DPOTrainer; pair accuracy and reward margin before and after."""
    thread = "palimpsest-dpo"

    def metrics(self) -> dict:
        return {"method": "dpo", "beta": self.cfg.beta}

    def tokens(self) -> tuple[int, int]:
        tok, train = self.prep.tokenizer, self.prep.train
        sizes = [sum(len(_ids(tok, p, w)[0]) for w in ("chosen", "rejected")) for p in train]
        answers = [sum(len(i) - s for i, s in (_ids(tok, p, w) for w in ("chosen", "rejected"))) for p in train]
        return sum(sizes), sum(answers)

    def _ids(self) -> list[str]:
        return [p.id for p in self.prep.held_out]

    def before(self, model, metrics: dict, device, run_id: str) -> ev.TrainEvaluated | None:
        if metrics.get("eval_before") is not None and metrics.get("ref_logps"):
            return None
        prep, t1 = self.prep, time.perf_counter()
        ref = logps(model, prep.tokenizer, prep.held_out, prep.max_length, device)
        before = evaluate_pairs(ref, ref, self.cfg.beta, self._ids())
        metrics.update(ref_logps=ref, eval_before=before, eval_pair_accuracy_before=before["pair_accuracy"],
                       eval_reward_margin_before=before["reward_margin"],
                       eval_prefers_chosen_before=before["prefers_chosen"])
        return _evaluated(run_id, "before", before, time.perf_counter() - t1)

    def trainer(self, model, out: Path):
        from datasets import Dataset
        from datasets.utils.logging import disable_progress_bar
        from transformers import PrinterCallback
        from trl import DPOConfig, DPOTrainer

        from core.train.checkpoints import atomic

        prep, cfg = self.prep, self.cfg
        args = DPOConfig(**loop.trainer_args(cfg, out), beta=cfg.beta, max_length=prep.max_length)
        disable_progress_bar()  # progress reaches the caller as events, not bars
        data = Dataset.from_list([p.row() for p in prep.train])
        trainer = atomic(DPOTrainer)(model=model, args=args, train_dataset=data, processing_class=prep.tokenizer,
                                     peft_config=loop.lora_config(cfg))
        trainer.remove_callback(PrinterCallback)
        return trainer

    def after(self, out: Path, metrics: dict, device, run_id: str) -> ev.TrainEvaluated:
        import torch
        from transformers import AutoModelForCausalLM

        prep, t1 = self.prep, time.perf_counter()
        trained = AutoModelForCausalLM.from_pretrained(str(out), dtype=getattr(torch, self.cfg.dtype)).to(device)
        after = evaluate_pairs(logps(trained, prep.tokenizer, prep.held_out, prep.max_length, device),
                               metrics["ref_logps"], self.cfg.beta, self._ids())
        del trained
        metrics.update(eval_after=after, eval_pair_accuracy_after=after["pair_accuracy"],
                       eval_reward_margin_after=after["reward_margin"],
                       eval_prefers_chosen_after=after["prefers_chosen"])
        return _evaluated(run_id, "after", after, time.perf_counter() - t1)
