"""Log-probs of a few short options after each of several long contexts that share a head: the
log-prob judge's cost (core.r2.judge.logprob_judge asks, per criterion, how likely "1/10" ..
"10/10" are after a prompt holding the task and the text, which every criterion shares).

Knows: the same numbers as `lm.loglikelihood` (each context and each option encoded on its own,
the option's token log-probs summed), computed in three steps on a local transformers model: the
contexts' common head once (keys/values kept), then each context's tail once on a copy of the
head's cache (its last position gives every option's first token), then all options of that
context as one right-padded batch over the context's cache (right padding never lets a real
token see a pad under causal attention). So a judge with C criteria and O options runs 1 + 2C
forwards instead of the grouped scorer's 1 + C*O (core.models.fastscore runs each of the C*O
suffixes, criterion tail included, one by one in fp32 on a CPU). Any other LM (a server, the
scripted fake) and any context that does not fit the window go through `lm.loglikelihood`.

Does not know: judging, prompts or scales.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

from core.models.lm import ScoreRequest

MIN_HEAD = 16  # shared tokens below this: no head step (each context runs whole)


def _local(lm):
    """The transformers model, its device and lock behind `lm` (an HFLM, or a wrapper that scores
    with one, e.g. core.models.ct2.CT2LM); None for anything else."""
    hf = getattr(lm, "hf", lm)
    model = getattr(hf, "model", None)
    if model is None or not hasattr(hf, "encode") or not hasattr(model, "base_model_prefix"):
        return None
    return hf


def _lcp(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    i = 0
    while i < n and all(s[i] == seqs[0][i] for s in seqs):
        i += 1
    return i


def option_logprobs(lm, contexts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
    """[context][option] -> sum of the option's token log-probs after the context (fp32)."""
    hf = _local(lm)
    if hf is not None:
        ctx_ids = [hf.encode(c) for c in contexts]
        opt_ids = [hf.encode(o) for o in options]
        fits = all(ids for ids in ctx_ids) and all(opt_ids) and \
            max(len(c) for c in ctx_ids) + max(len(o) for o in opt_ids) <= hf.max_length
        if fits:
            return _local_scores(hf, ctx_ids, opt_ids)
    flat = lm.loglikelihood([ScoreRequest(context=(c,), continuation=o) for c in contexts for o in options])
    sums = [sum(r.logprobs) for r in flat]
    return [sums[i * len(options):(i + 1) * len(options)] for i in range(len(contexts))]


def _local_scores(hf, ctx_ids: list[list[int]], opt_ids: list[list[int]]) -> list[list[float]]:
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    from core.models.gencache import cache_kw

    model = hf.twin("fp32") if hasattr(hf, "twin") else hf.model
    base, head_proj = getattr(model, model.base_model_prefix), model.get_output_embeddings()
    kw = cache_kw(base)
    dev = hf.device
    shared = min(_lcp(ctx_ids), min(len(c) for c in ctx_ids) - 1)
    shared = shared if shared >= MIN_HEAD else 0
    longest = max(len(o) for o in opt_ids)
    pad = 0
    rows = torch.tensor([o + [pad] * (longest - len(o)) for o in opt_ids], device=dev)
    lock = getattr(hf, "_lock", None)
    out = []
    with (lock if lock is not None else _nolock()), torch.inference_mode():
        head_cache = DynamicCache()
        if shared:
            base(input_ids=torch.tensor([ctx_ids[0][:shared]], device=dev), **{kw: head_cache}, use_cache=True)
        for ids in ctx_ids:
            cache = copy.deepcopy(head_cache) if shared else DynamicCache()
            tail = torch.tensor([ids[shared:]], device=dev)
            last = base(input_ids=tail, **{kw: cache}, use_cache=True).last_hidden_state[0, -1]
            first = F.log_softmax(head_proj(last).float(), dim=-1)
            cache.batch_repeat_interleave(len(opt_ids))
            hidden = base(input_ids=rows, **{kw: cache}, use_cache=True).last_hidden_state
            logp = F.log_softmax(head_proj(hidden[:, :longest - 1]).float(), dim=-1) if longest > 1 else None
            sums = []
            for r, o in enumerate(opt_ids):
                total = float(first[o[0]])
                for t in range(1, len(o)):
                    total += float(logp[r, t - 1, o[t]])
                sums.append(total)
            out.append(sums)
    return out


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
