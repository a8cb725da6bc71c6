"""Reusing the prompt's key/value cache across generations (REER's edit prompts share a long head).

Knows: that consecutive REER edit prompts of one item begin with the same instructions, task
and target answer (often 1,000+ tokens) and differ only in the trajectory part after them, so
the head's keys and values can be kept and only the new tail computed. Prefill runs in fixed
blocks of `BLOCK` tokens, and only whole blocks are reused, so every block is always computed
the same way (block j given blocks 0..j-1): a cached prompt gives bit-identical caches, hence
the same samples for the same seed, as a cold one. A prompt kept under other weights (the model
trained in place since) is never reused. Does not know sampling or stop strings.
"""
from __future__ import annotations

import copy
import inspect
import weakref
from functools import lru_cache

import torch

from core.models.marks import weights_signature

BLOCK = 256  # prefill chunk and reuse granularity, in tokens


@lru_cache(maxsize=None)
def _cache_kw(cls: type) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def cache_kw(model: torch.nn.Module) -> str:
    """The keyword a transformers model's forward (and so its generate) takes a KV cache under:
    `cache` where transformers renamed it (there `past_key_values` warns a FutureWarning on every
    call), `past_key_values` in the transformers 5 releases before the rename."""
    return _cache_kw(type(model))


class PrefixCache:
    """One remembered prompt per model (the last one), reused block by block by the next, and
    forgotten with its model."""

    def __init__(self) -> None:
        # model -> (token ids, a DynamicCache of them, the model's weights_signature then); an entry
        # goes with its model (a bf16 copy made again after training frees the old copy's keys/values)
        self._kept: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.reused_tokens = 0  # counters, for benchmarks and tests
        self.computed_tokens = 0

    def prefill(self, model: torch.nn.Module, ids: list[int], device: str) -> object:
        """A fresh DynamicCache holding `ids` (the caller may extend it; the stored copy stays)."""
        from transformers import DynamicCache

        weights = weights_signature(model)
        old, kept, then = self._kept.get(model, ([], None, None))
        if then != weights:  # kept under other weights (trained in place since): stale
            old = []
        reuse = 0
        while (reuse + BLOCK <= min(len(old), len(ids))
               and old[reuse:reuse + BLOCK] == ids[reuse:reuse + BLOCK]):
            reuse += BLOCK
        if reuse:
            cache = copy.deepcopy(kept)
            if len(old) > reuse:
                cache.crop(reuse - len(old))  # transformers 5: a negative count of tokens to drop
        else:
            cache = DynamicCache()
        t = torch.tensor([ids], device=device)
        pos = reuse
        while pos < len(ids):
            end = min((pos // BLOCK + 1) * BLOCK, len(ids))
            model(input_ids=t[:, pos:end], **{cache_kw(model): cache}, use_cache=True, logits_to_keep=1)
            pos = end
        self.reused_tokens += reuse
        self.computed_tokens += len(ids) - reuse
        self._kept[model] = (list(ids), cache, weights)
        return copy.deepcopy(cache)

    def clear(self) -> None:
        self._kept.clear()
