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

Across calls (`ScoreKV`, one per model twin, held by core.models.hf.HFLM): the keys/values of
every scored context are kept, keyed on its token ids, within a byte budget. A later request
looks up the longest cached token prefix of its own context and computes only the tokens after
it. REER's decided prefix x + z_1..z_i only grows, and the chosen candidate's context was
computed while scoring it, so each step computes only the new candidates' tokens and y. When a
person edits a segment the ids differ from that point on and only the common head is reused;
entries nobody uses are evicted, oldest first. Keys/values of a token depend only on the tokens
before it (causal), so a cached prefix is exact up to float rounding (tests/core/models/test_kvreuse.py).

`naive_logprobs` is the reference: one plain full forward per request, full logits.
Works for decoder models whose attention goes through transformers' AttentionInterface
(Llama, Mistral, Qwen2/3, Gemma-like without soft-capping); a layer with a sliding window (Gemma 3's
local layers, window 512) that binds is computed in one explicitly masked pass (`_windowed`), so its
scores equal a plain forward's. Others should use precision fp32 through `naive_logprobs`.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Sequence

import torch
import torch.nn.functional as F

from core.models.gencache import cache_kw

ATTN_NAME = "palimpsest_cascade"
MIN_SHARED = 32  # tokens two requests must share before a prefix cache is worth it
BATCH_TOKENS = 6144  # padded suffix tokens per forward (memory bound, not speed bound)

SCORE_KV_ENV = "PALIMPSEST_SCORE_KV_MB"  # byte budget of the keys/values kept between scoring calls
SCORE_KV_MB = 512  # its default, per model twin (SmolLM2-135M: ~46 KB a token in fp32, ~11k tokens)

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
    window = kwargs.get("sliding_window")  # a local layer's window (Gemma 2/3, Mistral-like); None: full
    installed = getattr(_state, "prefix", None)
    p_len = installed[module.layer_idx][0].shape[2] if installed is not None else 0
    if window and p_len + s > window:  # the window binds somewhere: one explicitly masked pass
        return _windowed(query, key, value, installed and installed[module.layer_idx], n_rep, window, scaling)
    parts = [_attend(query, _repeat_kv(key, n_rep), _repeat_kv(value, n_rep), scaling, causal=True)]
    if installed is not None:
        pk, pv = installed[module.layer_idx]
        b, h, d = query.shape[0], query.shape[1], query.shape[3]
        if pk.shape[0] == 1:
            # one shared prefix, attended with no mask: every query row of the n_rep query heads of a
            # key/value head (and of every batch row) sees the same keys, so they fold into the query
            # length and the prefix's keys/values are never copied n_rep times
            hkv = pk.shape[1]
            q = query.transpose(0, 1).reshape(hkv, n_rep * b * s, d)[None]
            o, l = _attend(q, pk, pv, scaling, causal=False)
            o = o.reshape(h, b, s, d).transpose(0, 1)
            l = l.reshape(h, b, s).transpose(0, 1)
        else:
            o, l = _attend(query, _repeat_kv(pk, n_rep), _repeat_kv(pv, n_rep), scaling, causal=False)
        parts.append((o, l))
    out = _merge(parts) if len(parts) > 1 else parts[0][0]
    return out.transpose(1, 2).contiguous(), None


def _windowed(query, key, value, prefix, n_rep: int, window: int, scaling):
    """Attention of a sliding-window layer over the installed prefix (P tokens, may be None) and
    the suffix, as transformers masks it: query at position q sees keys k with q - window < k <= q.
    One explicit pass (the flash kernel takes no window): exact, and cheap for the windowed layers."""
    b, h, s, d = query.shape
    keys, values = key, value
    p = 0
    if prefix is not None:
        pk, pv = prefix
        p = pk.shape[2]
        keys = torch.cat([pk.expand(b, -1, -1, -1), key], 2)
        values = torch.cat([pv.expand(b, -1, -1, -1), value], 2)
    q_pos = torch.arange(p, p + s, device=query.device)[:, None]
    k_pos = torch.arange(p + s, device=query.device)[None, :]
    allowed = (k_pos <= q_pos) & (k_pos > q_pos - window)
    out = F.scaled_dot_product_attention(query, _repeat_kv(keys, n_rep), _repeat_kv(values, n_rep),
                                         attn_mask=allowed, scale=scaling)
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


KV = list  # per layer (keys, values), each (1, kv heads, tokens, head dim)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def kv_bytes(kv: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


def kv_slice(kv: KV, n: int) -> KV:
    """The first n tokens' keys/values (views)."""
    return [(k[:, :, :n], v[:, :, :n]) for k, v in kv]


class ScoreKV:
    """Keys/values of scored contexts, keyed on their token ids (module docstring), kept within
    `max_bytes`; the least recently used entry goes first. Not thread-safe: its owner scores
    under a lock (core.models.hf.HFLM)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: list[tuple[list[int], KV]] = []  # least recently used first
        self.bytes = 0
        self.hits = self.reused_tokens = self.computed_tokens = 0  # counters, for the benches
        self.weights: int | None = None  # core.models.marks.weights_signature of the model the entries were computed with

    @classmethod
    def from_env(cls) -> "ScoreKV":
        """$PALIMPSEST_SCORE_KV_MB (0 turns reuse off), else SCORE_KV_MB."""
        from core.models.lm import LMError

        raw = os.environ.get(SCORE_KV_ENV, "").strip() or str(SCORE_KV_MB)
        if not raw.isdigit():
            raise LMError(f"{SCORE_KV_ENV}={raw!r}: give a whole number of megabytes, e.g. {SCORE_KV_MB} (0 turns "
                          "the reuse of keys/values between scorings off)")
        return cls(int(raw) << 20)

    def longest(self, ids: Sequence[int], limit: int) -> tuple[int, KV | None]:
        """(n, keys/values of ids[:n]) of the cached entry sharing the longest prefix with `ids`,
        n capped at `limit`; (0, None) when nothing is shared."""
        best, at = 0, -1
        for j, (have, _) in enumerate(self.entries):
            n = min(_lcp(have, ids), limit)
            if n > best:
                best, at = n, j
        if at < 0:
            return 0, None
        entry = self.entries.pop(at)
        self.entries.append(entry)  # most recently used
        self.hits += 1
        self.reused_tokens += best
        return best, kv_slice(entry[1], best)

    def add(self, ids: Sequence[int], kv: KV) -> None:
        """Keep `kv` for `ids`; entries whose ids are a prefix of these are dropped (this one
        holds them), and a request already held by a longer entry adds nothing."""
        ids = list(ids)
        if not ids or self.max_bytes <= 0:
            return
        size = kv_bytes(kv)
        if size > self.max_bytes:
            return
        keep = []
        for have, old in self.entries:
            if len(have) >= len(ids) and have[:len(ids)] == ids:
                return  # already covered
            if len(have) < len(ids) and ids[:len(have)] == have:
                self.bytes -= kv_bytes(old)
                continue
            keep.append((have, old))
        self.entries = keep + [(ids, kv)]
        self.bytes += size
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            _, old = self.entries.pop(0)
            self.bytes -= kv_bytes(old)

    def follow(self, signature: int) -> None:
        """Empty the store when the model's weights are not the ones its entries were computed with."""
        if signature != self.weights:
            self.clear()
            self.weights = signature

    def clear(self) -> None:
        self.entries, self.bytes = [], 0


def _forward(base, ids: Sequence[int], start: int, prefix: KV | None, device, keep: bool):
    """Hidden states of `ids` at positions start.. over the installed `prefix` keys/values
    (cascade attention), and, when `keep`, the new tokens' own keys/values (else None)."""
    from transformers import DynamicCache

    x = torch.tensor([list(ids)], device=device)
    pos = torch.arange(start, start + len(ids), device=device)[None]
    cache = DynamicCache() if keep else None
    with prefix_scope(prefix):
        if keep:
            out = base(input_ids=x, position_ids=pos, **{cache_kw(base): cache}, use_cache=True)
        else:
            out = base(input_ids=x, position_ids=pos, use_cache=False)
    kv = [(layer.keys, layer.values) for layer in cache.layers] if keep else None
    return out.last_hidden_state, kv


def _join(a: KV | None, b: KV, n: int) -> KV:
    """a's keys/values followed by b's first n tokens' (copied: b's tensors may be big)."""
    b = [(k[:, :, :n], v[:, :, :n]) for k, v in b]
    if a is None:
        return [(k.contiguous(), v.contiguous()) for k, v in b]
    return [(torch.cat([ka, kb], 2), torch.cat([va, vb], 2)) for (ka, va), (kb, vb) in zip(a, b)]


def _context_kv(base, ids: list[int], device, store: ScoreKV) -> KV:
    """Keys/values of `ids`, computing only what `store` does not already hold; kept in `store`."""
    n, kv = store.longest(ids, len(ids))
    if n < len(ids):
        _, new = _forward(base, ids[n:], n, kv, device, keep=True)
        store.computed_tokens += len(ids) - n
        kv = _join(kv, new, len(ids) - n)
        store.add(ids, kv)
    return kv


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


def score_token_requests(model, encoded, device="cpu", store: ScoreKV | None = None) -> list[list[float]]:
    """Log-probs of each continuation: encoded[i] = (context pieces, continuation ids, dropped).

    `store`: keys/values kept between calls (ScoreKV); without one, only the prefix a group of
    requests shares is computed once, within this call."""
    seqs = [([t for p in pieces for t in p] + cont, sum(len(p) for p in pieces)) for pieces, cont, _ in encoded]
    out: list[list[float] | None] = [None] * len(seqs)
    base, head = _base_and_head(model)
    keep = store is not None and store.max_bytes > 0
    local = store if keep else ScoreKV(1 << 62)  # this call's shared prefixes only
    with cascade(model):
        for p, members in group_by_prefix(seqs):
            if p > 0:
                _context_kv(base, seqs[members[0]][0][:p], device, local)
            if _one_by_one(base):
                for i in members:
                    _score_one(base, head, seqs[i], device, local, keep, out, i)
            else:
                kv = local.longest(seqs[members[0]][0], p)[1] if p > 0 else None
                _score_batched(base, head, seqs, members, p, kv, device, out)
    return out  # type: ignore[return-value]


def _one_by_one(base) -> bool:
    """fp32 on a CPU: suffixes run one at a time over the shared prefix. A padded fp32 batch is
    slower than batch 1 there (padding waste, no bf16 matmul units to fill; docs/speed.md), which
    is why the batched fp32 path read 0.70-0.91x of the plain loop in `bench reer`."""
    p = next(base.parameters())
    return p.dtype == torch.float32 and p.device.type == "cpu"


def _logprobs(head, hidden, targets: Sequence[int], device) -> list[float]:
    """log p of each target from the hidden states that predict them (vocabulary head only there)."""
    t = torch.tensor(list(targets), device=device)
    logp = F.log_softmax(head(hidden).float(), dim=-1)
    return logp.gather(-1, t[:, None]).squeeze(-1).tolist()


def _score_one(base, head, seq, device, store: ScoreKV, keep: bool, out, i: int) -> None:
    """One request over the longest prefix `store` holds; its context is kept when `keep`."""
    ids, n_ctx = seq
    n, kv = store.longest(ids, n_ctx - 1)  # the suffix predicts its first continuation token itself
    hidden, new = _forward(base, ids[n:-1], n, kv, device, keep)
    store.computed_tokens += len(ids) - 1 - n
    out[i] = _logprobs(head, hidden[0, n_ctx - 1 - n:], ids[n_ctx:], device)
    if keep:
        store.add(ids[:n_ctx], _join(kv, new, n_ctx - n))


def _score_batched(base, head, seqs, members, p, kv, device, out) -> None:
    """Suffixes of a group as right-padded batches over the shared prefix `kv` (p tokens)."""
    members = sorted(members, key=lambda i: -len(seqs[i][0]))
    start = 0
    with prefix_scope(kv):
        while start < len(members):
            longest = len(seqs[members[start]][0]) - p
            n = max(1, min(len(members) - start, BATCH_TOKENS // max(longest, 1)))
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
                out[i] = _logprobs(head, hidden[r, first:len(ids) - 1 - p], ids[n_ctx:], device)


def naive_logprobs(model, ids: list[int], n_ctx: int, device="cpu") -> list[float]:
    """Reference path: one plain forward of the whole sequence, full logits, log-softmax."""
    x = torch.tensor([ids], device=device)
    logits = model(input_ids=x).logits[0].float()
    logp = F.log_softmax(logits[n_ctx - 1:-1], dim=-1)
    return logp.gather(-1, x[0, n_ctx:, None]).squeeze(-1).tolist()
