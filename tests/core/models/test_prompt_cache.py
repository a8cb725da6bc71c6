"""The rewrite prompt's static head (instructions, task, answer) and the keys/values kept for it across
REER steps and candidates: on the HF path (core.models.gencache) the tokens with the cache equal the
tokens without it, a new item's head is computed, not served from the last one; every prompt set puts
its static part first (core.prompts.static_head), so steps of one item share it. CTranslate2's
static_prompt is tested with the engines (tests/core/models/test_engines.py)."""
from __future__ import annotations

import dataclasses

import pytest

from core.models.gencache import BLOCK
from core.models.lm import GenerationConfig
from core.prompts import PROMPT_SETS, static_head
from core.reer.config import ReerConfig
from core.reer.search import expand_prompt

ANSWER = " ".join(f"The tide turns at the {i}th hour, and the harbour empties." for i in range(30))


def _msg(task: str, step: int) -> list[dict]:
    return [{"role": "user", "content": f"Task: {task}\nThe answer:\n{ANSWER}\n\nStep {step}: rewrite the next part."}]


def test_hf_cache_changes_no_token_and_a_new_head_is_computed(tiny_lm):
    """(Seeded samples, warm against cold: tests/core/models/test_fastscore.py.)"""
    greedy = GenerationConfig(max_new_tokens=6, temperature=0)
    prompts = [_msg("The sea", 1), _msg("The sea", 2), _msg("A desert", 1)]  # the third: a new item
    tiny_lm.use_prefix_cache = False
    try:
        off = [tiny_lm.generate(m, greedy) for m in prompts]
    finally:
        tiny_lm.use_prefix_cache = True
    tiny_lm.prefix_cache.clear()
    on, reused = [], []
    for m in prompts:
        before = tiny_lm.prefix_cache.reused_tokens
        on.append(tiny_lm.generate(m, greedy))
        reused.append(tiny_lm.prefix_cache.reused_tokens - before)
    assert on == off  # the same tokens with the cache and without
    assert reused[1] >= 2 * BLOCK  # step 2 reused step 1's head
    assert reused[2] < BLOCK  # the new item's head was computed (only its chat header is shared)


@pytest.mark.parametrize("name, lang", [(n, lang) for n, sets in PROMPT_SETS.items() for lang in sets])
def test_every_rewrite_prompt_opens_with_its_static_part(name, lang):
    """Instructions, task and answer come before the thinking the prompt quotes: two steps of an item
    (other segments, another paragraph, a draft one) share a head that holds the whole answer."""
    ps = PROMPT_SETS[name][lang]
    cfg = dataclasses.replace(ReerConfig(), prompts=name)
    query, answer = ("写一篇关于大海的短文。" if lang == "zh" else "Write about the sea."), ANSWER
    head = static_head(ps.expand, task=query, answer=answer)
    segs = ["I open with the harbour at dawn, quiet and grey.", ps.marks[0] + "\nThe harbour wakes.",
            "Then the storm, and the boats that stay out too long."]
    prompts = [expand_prompt(ps, cfg, query, answer, segs, i) for i in range(3)]
    later = [expand_prompt(ps, cfg, query, answer, ["A new first paragraph."] + segs[1:], i) for i in range(3)]
    assert all(p.startswith(head) for p in prompts + later)
    assert query in head and answer in head and segs[0] not in head


def test_a_head_kept_under_other_weights_is_computed_again():
    """Trained in place (torch's fused AdamW moves no version counter), the model's next prompt
    reuses nothing kept from before the step, and gives the tokens a cold cache gives."""
    from test_kvreuse import fused_adamw_step, own_tiny_lm

    lm = own_tiny_lm(seed=2)
    greedy = GenerationConfig(max_new_tokens=6, temperature=0)
    lm.generate(_msg("The sea", 1), greedy)  # keeps the head
    fused_adamw_step(lm.model, lm.tokenizer)
    before = lm.prefix_cache.reused_tokens
    warm = lm.generate(_msg("The sea", 2), greedy)
    assert lm.prefix_cache.reused_tokens == before  # nothing kept from the old weights was used
    lm.prefix_cache.clear()
    assert warm == lm.generate(_msg("The sea", 2), greedy)
    again = lm.prefix_cache.reused_tokens
    lm.generate(_msg("The sea", 3), greedy)
    assert lm.prefix_cache.reused_tokens - again >= 2 * BLOCK  # same weights: the head is reused again


def test_a_kept_head_goes_with_its_model():
    """A model dropped (a bf16 copy made again after training, a model evicted from the shelf)
    takes its kept keys/values with it: nothing is held for a model no one can use."""
    import copy
    import gc
    import types

    import torch
    from transformers import DynamicCache

    from core.models.gencache import PrefixCache
    from test_kvreuse import own_tiny_lm

    def held() -> int:  # key/value caches the prompt cache holds (strongly), whatever its layout
        gc.collect()
        seen, todo, n = set(), [cache], 0
        while todo:
            o = todo.pop()
            if id(o) in seen or isinstance(o, (type, types.ModuleType)):  # not into classes and modules
                continue
            seen.add(id(o))
            n += type(o) is DynamicCache
            todo.extend(gc.get_referents(o))
        return n

    lm = own_tiny_lm(seed=3)
    cache = PrefixCache()
    ids = lm.encode(_msg("The sea", 1)[0]["content"])
    other = copy.deepcopy(lm.model)
    with torch.inference_mode():  # as HFLM.generate calls it
        cache.prefill(lm.model, ids, "cpu")
        cache.prefill(other, ids, "cpu")
        assert held() == 2  # one kept per model
        del other
        assert held() == 1  # the dropped model's went with it
        before = cache.reused_tokens
        cache.prefill(lm.model, ids, "cpu")
    assert cache.reused_tokens - before >= BLOCK  # lm's is still kept and reused
