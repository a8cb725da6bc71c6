"""Which arithmetic scoring uses: "auto" takes bf16 only on hardware with native bf16
(core.models.hf.native_bf16, the capability monkeypatched here), and a run records the choice and why."""
from __future__ import annotations

import pytest
import torch

from core.models import hf
from core.models.hf import HFLM, native_bf16
from core.models.lm import LMError
from core.models.scoring import ScoringConfig, score_candidates, scoring_precision


@pytest.fixture
def flags(monkeypatch):
    """Set the CPU's reported flags; the per-process decision is recomputed around the test."""
    monkeypatch.delenv(hf.BF16_ENV, raising=False)
    native_bf16.cache_clear()

    def set_flags(*names):
        monkeypatch.setattr(hf, "cpu_flags", lambda: set(names))
        native_bf16.cache_clear()
    yield set_flags
    native_bf16.cache_clear()


@pytest.mark.parametrize("cpu,native", [(("avx2", "fma"), False), (("avx512f", "avx512bw"), False),
                                        (("avx512f", "avx512_bf16"), True), (("amx_bf16", "amx_tile"), True),
                                        (("asimd", "bf16"), True), ((), False)])
def test_cpu_bf16_is_native_only_with_bf16_instructions(flags, cpu, native):
    flags(*cpu)
    got, why = native_bf16("cpu")
    assert got is native and why


def test_gpu_decision_follows_the_compute_capability(flags, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Test GPU")
    for ampere in (True, False):
        monkeypatch.setattr(hf, "_cuda_native_bf16", lambda device, a=ampere: a)
        native_bf16.cache_clear()
        got, why = native_bf16("cuda")
        assert got is ampere and ("tensor cores" in why)


def test_the_environment_overrides_and_a_bad_value_names_the_variable(flags, monkeypatch):
    flags("avx2")
    monkeypatch.setenv(hf.BF16_ENV, "native")
    native_bf16.cache_clear()
    assert native_bf16("cpu")[0] is True
    monkeypatch.setenv(hf.BF16_ENV, "fast")
    native_bf16.cache_clear()
    with pytest.raises(LMError, match=hf.BF16_ENV):
        native_bf16("cpu")


class Spy(HFLM):
    """The tiny model, recording the precision of every scoring call."""

    calls: list

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        self.calls.append(precision)
        return super().loglikelihood(requests, precision, truncate)


def _spy(tiny_lm) -> Spy:
    lm = Spy(tiny_lm.model, tiny_lm.tokenizer, name="tiny", device="cpu")
    lm.calls = []
    return lm


def test_auto_scores_in_fp32_without_native_bf16(flags, tiny_lm, monkeypatch):
    monkeypatch.delenv("PALIMPSEST_GEN_PRECISION", raising=False)
    flags("avx2", "fma")
    lm = _spy(tiny_lm)
    assert not lm.has_fast_path and lm.gen_precision == "fp32"
    precision, why = scoring_precision(lm, "auto")
    assert precision == "fp32" and "no native bf16" in why
    score_candidates(lm, "Q?", ["One plan.", "Two."], 1, ["Another plan.", "A third plan."], "An answer.",
                     ScoringConfig(precision="auto"))
    assert lm.calls == ["fp32"]


def test_auto_scores_in_bf16_with_native_bf16(flags, tiny_lm, monkeypatch):
    monkeypatch.delenv("PALIMPSEST_GEN_PRECISION", raising=False)
    flags("amx_bf16", "avx512_bf16")
    lm = _spy(tiny_lm)
    assert lm.has_fast_path and lm.gen_precision == "bf16"
    assert scoring_precision(lm, "auto")[0] == "auto"
    score_candidates(lm, "Q?", ["One plan.", "Two."], 1, ["Another plan.", "A third plan."], "An answer.",
                     ScoringConfig(precision="auto"))
    assert lm.calls[0] == "bf16"  # then fp32 for near-ties only
    assert scoring_precision(lm, "fp32") == ("fp32", "precision fp32 was asked for")


def test_a_run_records_its_scoring_precision_and_why(flags, tiny_lm):
    from test_reer import DRAFT, SMALL, S, ScriptedLM

    flags("avx2")
    import dataclasses

    from core.reer.search import reer_search

    lm = ScriptedLM(_spy(tiny_lm), [[DRAFT]])
    cfg = dataclasses.replace(SMALL, precision="auto", max_steps=1)
    first = next(iter(reer_search(lm, "run", S["id"], S["query"], S["reference"], cfg)))
    assert first.settings["scoring"]["precision"] == "fp32"
    assert "auto chose fp32" in first.settings["scoring"]["why"]
