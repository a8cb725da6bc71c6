"""Keeping a sampled text from looping: ban any n-gram it has already written.

Knows: that small models (the built-in 135M one above all) fall into loops when they sample a
long text, repeating a sentence until the token budget runs out. HF's own
`no_repeat_ngram_size` looks at the prompt too, so it would also forbid quoting the task or
the target answer; this processor looks only at the tokens generated after `prompt_len`, one
table per sequence, updated incrementally (O(1) per step). Does not know models or sampling.
"""
from __future__ import annotations

import torch


class NoRepeatNGram:
    """A logits processor: in each row, a token that would repeat a generated n-gram gets -inf."""

    def __init__(self, n: int, prompt_len: int):
        if n < 2:
            raise ValueError(f"no-repeat n-gram size must be 2 or more, got {n}")
        self.n = n
        self.prompt_len = prompt_len
        self._seen: list[dict[tuple, set]] = []  # per row: (n-1)-gram -> tokens that followed it
        self._done: list[int] = []  # per row: generated tokens already entered in the table

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = input_ids.shape[0]
        if len(self._seen) != rows:
            self._seen, self._done = [{} for _ in range(rows)], [0] * rows
        gen = input_ids[:, self.prompt_len:].tolist()
        k = self.n - 1
        for r, toks in enumerate(gen):
            table = self._seen[r]
            for end in range(max(self._done[r] + 1, self.n), len(toks) + 1):  # n-grams ending before `end`
                table.setdefault(tuple(toks[end - self.n:end - 1]), set()).add(toks[end - 1])
            self._done[r] = len(toks)
            if len(toks) >= k:
                banned = table.get(tuple(toks[len(toks) - k:]))
                if banned:
                    scores[r, list(banned)] = float("-inf")
        return scores

