"""Batched, prefix-shared log-prob scoring for local causal LMs (the hot loop of REER).

Input: requests as token ids (context pieces, continuation). Output: log p of each
continuation token. Requests that share a long token prefix (REER's candidates share
x + z_1..z_{i-1}) are grouped; the prefix's keys/values are computed once, and the suffixes
of a group run as one right-padded batch with "cascade" attention:
  - every suffix query attends to the shared prefix with no mask at all,
  - and causally to its own suffix (right padding comes after every real token, so a causal
    kernel never lets a real token see a pad),
  - the two partial softmaxes are merged exactly by their log-sum-exp.
No explicit attention mask is ever built (on CPU, masked flash attention computes every block,
which is why padded and naively cached batches lose to batch 1). The vocabulary head and
log-softmax run only at the positions that predict continuation tokens.

`naive_logprobs` is the reference: one plain full forward per request, full logits.
Works for decoder models whose attention goes through transformers' AttentionInterface
(Llama, Mistral, Qwen2/3, Gemma-like without soft-capping); others should use precision fp32
through `naive_logprobs`.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Sequence

import torch
import torch.nn.functional as F

from core.models.gencache import cache_kw

ATTN_NAME = "palimpsest_cascade"
MIN_SHARED = 32  # tokens two requests must share before a prefix cache is worth it
BATCH_TOKENS = 6144  # padded suffix tokens per forward (memory bound, not speed bound)

_state = threading.local()  # per-thread: the prefix keys/values of the group being scored


def _flash(q, k, v, causal: bool, scale):
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)
    return out, lse


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def cascade_attention(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, **kwargs):
    """AttentionInterface function: causal over the given keys, plus an unmasked shared prefix.

    query (B, H, S, D); key/value (B, Hkv, S, D): no cache (the prefix's keys are computed with
    an empty one). A prefix installed by `prefix_scope` is seen by every row. Never used with
    padding masks or a non-empty cache.
    """
    if attention_mask is not None or key.shape[2] != query.shape[2]:
        raise RuntimeError("cascade attention takes no masks and no cache; score through core.models.fastscore")
    n_rep = query.shape[1] // key.shape[1]
    s = query.shape[2]
    parts = [_attend(query, _repeat_kv(key, n_rep), _repeat_kv(value, n_rep), scaling, causal=True)]
    installed = getattr(_state, "prefix", None)
    if installed is not None:
        pk, pv = installed[module.layer_idx]
        b = query.shape[0]
        if pk.shape[0] == 1 and b > 1:  # one shared prefix: fold the batch into the query length
            q = query.transpose(0, 1).reshape(1, query.shape[1], b * s, query.shape[3])
            o, l = _attend(q, _repeat_kv(pk, n_rep), _repeat_kv(pv, n_rep), scaling, causal=False)
            o = o.reshape(query.shape[1], b, s, -1).transpose(0, 1)
            l = l.reshape(query.shape[1], b, s).transpose(0, 1)
        else:
            o, l = _attend(query, _repeat_kv(pk, n_rep), _repeat_kv(pv, n_rep), scaling, causal=False)
        parts.append((o, l))
    out = _merge(parts) if len(parts) > 1 else parts[0][0]
    return out.transpose(1, 2).contiguous(), None


def _attend(q, k, v, scale, causal: bool):
    """(output, log-sum-exp): the CPU flash kernel returns both; elsewhere (GPUs, not run on
    these machines) the same maths explicitly."""
    return _flash(q, k, v, causal, scale) if q.device.type == "cpu" else _sdpa_lse(q, k, v, causal, scale)


def _sdpa_lse(q, k, v, causal, scale):
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    w = (q.float() @ k.float().transpose(-1, -2)) * scale
    if causal:
        s, t = w.shape[-2:]
        w = w.masked_fill(torch.ones(s, t, dtype=torch.bool, device=q.device).triu(t - s + 1), float("-inf"))
    lse = torch.logsumexp(w, dim=-1)
    return (torch.softmax(w, -1) @ v.float()).to(q.dtype), lse


def _merge(parts):
    lses = torch.stack([l for _, l in parts])  # (n, B, H, S), float32
    m = lses.max(dim=0).values
    w = torch.exp(lses - m)
    total = w.sum(dim=0)
    out = sum(o.float() * (wi / total).unsqueeze(-1) for (o, _), wi in zip(parts, w))
    return out.to(parts[0][0].dtype)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTN_NAME, cascade_attention)
    AttentionMaskInterface.register(ATTN_NAME, lambda *args, **kwargs: None)


@contextlib.contextmanager
def cascade(model):
    """Run `model` with cascade attention inside the block (restores its own afterwards)."""
    _register()
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    old = {k: c._attn_implementation for k, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        for k, c in configs.items():
            c._attn_implementation = old[k]


@contextlib.contextmanager
def prefix_scope(kv):
    _state.prefix = kv
    try:
        yield
    finally:
        _state.prefix = None


def _base_and_head(model):
    return getattr(model, model.base_model_prefix), model.get_output_embeddings()


def _prefix_kv(base, ids: list[int], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from transformers import DynamicCache

    cache = DynamicCache()
    x = torch.tensor([ids], device=device)
    base(input_ids=x, **{cache_kw(base): cache}, use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def group_by_prefix(seqs: list[tuple[list[int], int]]) -> list[tuple[int, list[int]]]:
    """Group request indices that share a prefix; returns (prefix length, members) pairs.

    seqs[i] = (context + continuation ids, context length). The prefix never reaches the last
    context token, so every suffix predicts its first continuation token itself.
    """
    order = sorted(range(len(seqs)), key=lambda i: seqs[i][0])
    groups: list[tuple[int, list[int]]] = []
    for i in order:
        ids, n_ctx = seqs[i]
        if groups:
            p, members = groups[-1]
            shared = min(p, _lcp(seqs[members[0]][0], ids), n_ctx - 1)
            if shared >= MIN_SHARED:
                groups[-1] = (shared, members + [i])
                continue
        groups.append((n_ctx - 1 if n_ctx > 1 else 0, [i]))
    # a singleton shares nothing: it runs whole (P = 0)
    return [(p if len(m) > 1 else 0, m) for p, m in groups]


def score_token_requests(model, encoded, device="cpu") -> list[list[float]]:
    """Log-probs of each continuation: encoded[i] = (context pieces, continuation ids, dropped)."""
    seqs = [([t for p in pieces for t in p] + cont, sum(len(p) for p in pieces)) for pieces, cont, _ in encoded]
    out: list[list[float] | None] = [None] * len(seqs)
    base, head = _base_and_head(model)
    with cascade(model):
        for p, members in group_by_prefix(seqs):
            kv = _prefix_kv(base, seqs[members[0]][0][:p], device) if p > 0 else None
            with prefix_scope(kv):
                _score_suffixes(base, head, seqs, members, p, device, out)
    return out  # type: ignore[return-value]


def _one_by_one(base) -> bool:
    """fp32 on a CPU: suffixes run one at a time over the shared prefix. A padded fp32 batch is
    slower than batch 1 there (padding waste, no bf16 matmul units to fill; docs/speed.md), which
    is why the batched fp32 path read 0.70-0.91x of the plain loop in `bench reer`."""
    p = next(base.parameters())
    return p.dtype == torch.float32 and p.device.type == "cpu"


def _score_suffixes(base, head, seqs, members, p, device, out) -> None:
    members = sorted(members, key=lambda i: -len(seqs[i][0]))
    start = 0
    while start < len(members):
        longest = len(seqs[members[start]][0]) - p
        rows = 1 if _one_by_one(base) else BATCH_TOKENS // max(longest, 1)
        n = max(1, min(len(members) - start, rows))
        chunk = members[start:start + n]
        start += n
        pad = 0
        rows = [seqs[i][0][p:] + [pad] * (longest - (len(seqs[i][0]) - p)) for i in chunk]
        x = torch.tensor(rows, device=device)
        pos = torch.arange(p, p + longest, device=device).expand(len(rows), -1)
        hidden = base(input_ids=x, position_ids=pos, use_cache=False).last_hidden_state
        for r, i in enumerate(chunk):
            ids, n_ctx = seqs[i]
            first = n_ctx - 1 - p  # suffix position whose output predicts the first continuation token
            h = hidden[r, first:len(ids) - 1 - p]
            targets = torch.tensor(ids[n_ctx:], device=device)
            logp = F.log_softmax(head(h).float(), dim=-1)
            out[i] = logp.gather(-1, targets[:, None]).squeeze(-1).tolist()


def naive_logprobs(model, ids: list[int], n_ctx: int, device="cpu") -> list[float]:
    """Reference path: one plain forward of the whole sequence, full logits, log-softmax."""
    x = torch.tensor([ids], device=device)
    logits = model(input_ids=x).logits[0].float()
    logp = F.log_softmax(logits[n_ctx - 1:-1], dim=-1)
    return logp.gather(-1, x[0, n_ctx:, None]).squeeze(-1).tolist()
