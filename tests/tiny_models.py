"""The tests' tiny random model: a 2-layer Llama (GQA like SmolLM2) with the built-in model's
tokenizer, the same weights for the same seed. Shared by the session fixtures (tests/conftest.py)
and the tests that need one of their own (to train, or to save with other settings)."""
from __future__ import annotations


def tiny_llama(seed: int = 0, with_pad: bool = False, with_eos: bool = False, **config):
    """(model in eval mode, tokenizer); `with_pad`/`with_eos` give the model the tokenizer's pad or
    end-of-sequence id (the pad id also zeroes that embedding row), `config` adds to or overrides
    the LlamaConfig fields."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from core.models.hf import builtin_model_dir

    tok = AutoTokenizer.from_pretrained(builtin_model_dir())
    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                tie_word_embeddings=True), **config})
    if with_pad:
        cfg.pad_token_id = tok.pad_token_id
    if with_eos:
        cfg.eos_token_id = tok.eos_token_id
    return LlamaForCausalLM(cfg).eval(), tok
