"""Generation engines (core.models.ct2) on a tiny random Llama saved to a folder: CTranslate2's
generate keeps the protocol's promises (seeds, the no-repeat ban, stop strings, lengths, finish
reasons, Stop, the token sink), scoring stays the wrapped HFLM's, the engine setting is checked.
Plus the bench's regret replay (core.bench.step_regrets) on the scripted model."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from core.models.lm import (
    GenerationConfig,
    GenerationStopped,
    ScoreRequest,
    on_tokens,
    stop_when,
)

ct2 = pytest.importorskip("ctranslate2")

MSG = [{"role": "user", "content": "Write a few words about the sea."}]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """(HFLM fp32, CT2LM fp32, CT2LM int8) of one tiny random Llama; conversions cached in a temp dir."""
    from tiny_models import tiny_llama

    from core.models.ct2 import CT2LM
    from core.models.hf import HFLM

    root = tmp_path_factory.mktemp("engines")
    # before the cache moves (else the tokenizer's load converts the GGUF again)
    model, tok = tiny_llama(with_eos=True, max_position_embeddings=512)
    kept = os.environ.get("PALIMPSEST_CACHE")
    os.environ["PALIMPSEST_CACHE"] = str(root / "cache")
    folder = root / "tiny"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    hf = HFLM(model, tok, name=str(folder), device="cpu")
    hf.gen_precision = "fp32"
    try:
        yield hf, CT2LM(hf, "float32"), CT2LM(hf, "int8")
    finally:
        if kept is None:
            os.environ.pop("PALIMPSEST_CACHE", None)
        else:
            os.environ["PALIMPSEST_CACHE"] = kept


SAMPLE = GenerationConfig(max_new_tokens=12, temperature=0.9, top_p=0.9, n=2, seed=7)


def test_same_seed_same_texts_other_seed_other_texts(engines):
    _, fp32, int8 = engines
    for lm in (fp32, int8):
        a = lm.generate(MSG, SAMPLE)
        b = lm.generate(MSG, SAMPLE)
        c = lm.generate(MSG, dataclasses.replace(SAMPLE, seed=8))
        assert len(a) == 2 and a == b  # n rows, reproducible (a fresh sampler per seeded call)
        assert a != c


def test_greedy_with_the_ban_equals_hf(engines):
    """fp32 greedy decoding with the no-repeat ban picks the same tokens as HF's processor
    (which bans only n-grams of the generated text, never the prompt's)."""
    hf, fp32, _ = engines
    for n in (0, 2, 3):
        cfg = GenerationConfig(max_new_tokens=24, temperature=0, no_repeat_ngram=n)
        assert fp32.generate(MSG, cfg) == hf.generate(MSG, cfg), n


def test_ban_leaves_no_repeated_ngram(engines):
    _, _, int8 = engines
    cfg = dataclasses.replace(SAMPLE, max_new_tokens=60, no_repeat_ngram=2, extra={"min_new_tokens": 60})
    int8.generate(MSG, cfg)
    assert len(int8.last_ids) == 2
    for ids in int8.last_ids:
        pairs = list(zip(ids, ids[1:]))
        assert len(ids) == 60 and len(pairs) == len(set(pairs))


def test_stop_string_length_and_finish_reasons(engines):
    _, fp32, _ = engines
    forced = dataclasses.replace(SAMPLE, n=1, max_new_tokens=20)  # (min_new_tokens would change the samples)
    full = fp32.generate(MSG, forced)[0]
    assert full.finish_reason == "length" and len(fp32.last_ids[0]) == 20
    stop = full.strip()[len(full.strip()) // 2:][:3]
    assert len(stop.strip()) == 3, "the random model wrote too little text"
    cut = fp32.generate(MSG, dataclasses.replace(forced, stop=(stop,)))[0]  # same seed: same tokens
    assert str(cut) == full[:full.find(stop)] and cut.finish_reason == "stop"
    assert len(fp32.last_ids[0]) < 20  # the row ended at the stop string, not at the budget


def test_window_caps_the_budget(engines):
    _, fp32, _ = engines
    long_msg = [{"role": "user", "content": "sea " * 480}]
    room = fp32.max_length - len(fp32.encode(fp32.chat_text(long_msg)))
    assert 0 < room < 40
    out = fp32.generate(long_msg, GenerationConfig(max_new_tokens=200, temperature=0,
                                                   extra={"min_new_tokens": 200}))[0]
    assert out.finish_reason == "length" and len(fp32.last_ids[0]) == room


def test_stop_request_and_token_sink(engines):
    _, _, int8 = engines
    with stop_when(lambda: True), pytest.raises(GenerationStopped):
        int8.generate(MSG, SAMPLE)
    seen = []
    with on_tokens(seen.append):
        out = int8.generate(MSG, dataclasses.replace(SAMPLE, extra={"min_new_tokens": 12}))
    assert seen and seen[-1].done and list(seen[-1].texts) == [str(t) for t in out]
    assert all(not p.done for p in seen[:-1]) and len(seen) > 1


def test_scoring_delegates_to_hf(engines):
    hf, fp32, int8 = engines
    req = [ScoreRequest(("A question. ",), "An answer that is scored.")]
    a, b = int8.loglikelihood(req)[0].logprobs, hf.loglikelihood(req)[0].logprobs
    assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < 1e-5  # the 2nd reuses keys/values
    assert int8.count_tokens("some text") == hf.count_tokens("some text")


def test_conversion_is_cached(engines):
    from core.models.ct2 import converted_dir
    from core.models.hf import resolve_spec

    hf, _, _ = engines
    first = converted_dir(resolve_spec(hf.name), "int8")
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert converted_dir(resolve_spec(hf.name), "int8") == first
    assert (first / "model.bin").stat().st_mtime_ns == stamp
    assert not [p for p in first.parent.iterdir() if ".tmp" in p.name]


def test_engine_setting(monkeypatch, engines):
    from core.models.ct2 import (
        UnknownEngine,
        engine_from_env,
        engines_of,
        resolve_engine,
        with_engine,
    )

    monkeypatch.setenv("PALIMPSEST_ENGINE", "turbo")
    with pytest.raises(UnknownEngine, match="PALIMPSEST_ENGINE='turbo'.*ct2-int8"):
        engine_from_env()
    monkeypatch.setenv("PALIMPSEST_ENGINE", "hf")
    assert engine_from_env() == "hf"
    assert resolve_engine("auto") == "ct2-int8"  # ctranslate2 is installed (importorskip above)
    hf, _, int8 = engines
    assert engines_of(int8) == {"generate": "ct2-int8", "score": "hf"}
    try:
        assert with_engine(hf, "hf-bf16") is hf and engines_of(hf)["generate"] == "hf-bf16"
        assert engines_of(with_engine(hf, "hf")) == {"generate": "hf", "score": "hf"}
    finally:
        hf.gen_precision = "fp32"


def _rewrite_prompt(task: str, step: int):
    """A REER-shaped rewrite prompt (instructions, task and answer first, then what changes) and its hint."""
    from core.prompts import render, static_head

    answer = " ".join(f"{task} wave {i}." for i in range(25))
    fields = dict(task=task, answer=answer, before=f"My plan so far, step {step}.", segment="I start with the tide.",
                  after="(nothing)", role="", cues="", format="Write it inside <rewrite></rewrite>.")
    return [{"role": "user", "content": render("reer_expand", **fields)}], static_head("reer_expand", task=task,
                                                                                        answer=answer)


def test_the_prompt_head_is_kept_and_changes_no_token(engines):
    """With the static head cached (CTranslate2's static_prompt), greedy and seeded generations give the
    same tokens as with the cache off; the second call with the same head reuses it."""
    _, fp32, int8 = engines
    for lm, cfg in ((fp32, GenerationConfig(max_new_tokens=12, temperature=0, n=2, no_repeat_ngram=3)),
                    (int8, dataclasses.replace(SAMPLE, max_new_tokens=12))):  # the kept generator; the spare
        got = {}
        for cached in (False, True, True):  # off, then a cold and a warm cache
            lm.use_prompt_cache = cached
            for step in (1, 2):
                msg, head = _rewrite_prompt("The sea at night", step)
                before = dict(lm.static_tokens)
                out = lm.generate(msg, dataclasses.replace(cfg, static=head))
                got.setdefault((cached, step), []).append((list(out), [list(r) for r in lm.last_ids]))
                if cached and step == 2:  # the head of step 1's prompt served step 2
                    assert lm.static_tokens["reused"] - before["reused"] > 100, (lm.engine, cfg)
            lm.ready()
        lm.use_prompt_cache = True
        for step in (1, 2):
            off, cold, warm = got[(False, step)][0], got[(True, step)][0], got[(True, step)][1]
            assert off == cold == warm, (lm.engine, cfg.temperature, step)


def test_a_new_head_is_not_served_from_the_old_one(engines):
    """The cache is keyed on the head's tokens: a new item's head is computed, and its text is the
    uncached text of that item, not a continuation of the previous item's keys/values."""
    _, fp32, _ = engines
    cfg = GenerationConfig(max_new_tokens=16, temperature=0, n=2)
    a, head_a = _rewrite_prompt("The sea at night", 1)
    b, head_b = _rewrite_prompt("A desert at noon", 1)
    fp32.use_prompt_cache = False
    expected = fp32.generate(b, dataclasses.replace(cfg, static=head_b))
    fp32.use_prompt_cache = True
    fp32.generate(a, dataclasses.replace(cfg, static=head_a))
    before = dict(fp32.static_tokens)
    assert fp32.generate(b, dataclasses.replace(cfg, static=head_b)) == expected
    assert fp32.static_tokens["reused"] == before["reused"] and fp32.static_tokens["computed"] > before["computed"]
