"""The model shelf (core.models.shelf): lazy, one load per spec even under threads, bounded
with least-recently-used eviction, a failed load not kept, a folder saved again loaded again;
ModelChoice's default spec."""
from __future__ import annotations

import threading
import time

import pytest

from core.models.lm import DEFAULT_MODEL, ModelNotFound
from core.models.scripted import ScriptedLM
from core.models.shelf import (
    BadShelfSetting,
    ModelChoice,
    ModelPolicy,
    ModelShelf,
    default_shelf,
    max_models_from_env,
)


class CountingLoader:
    """Builds scripted models and counts loads per spec (slowly, so threads overlap)."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls, self._lock = delay, [], threading.Lock()

    def __call__(self, spec, dtype="float32", device=None):
        with self._lock:
            self.calls.append((spec, dtype, device))
        time.sleep(self.delay)
        if spec == "missing":
            raise ModelNotFound("model 'missing': no such thing")
        return ScriptedLM(name=spec)


def test_lazy_and_loaded_once_per_spec_and_dtype():
    load = CountingLoader()
    shelf = ModelShelf(capacity=3, load=load)
    assert load.calls == [] and shelf.loaded() == []
    a = shelf.get("scripted:a")
    assert shelf.get(" scripted:a ") is a and load.calls == [("scripted:a", "float32", None)]
    b = shelf.get("scripted:a", dtype="bfloat16")
    assert b is not a and len(load.calls) == 2 and shelf.loads == 2
    assert shelf.get("").name == DEFAULT_MODEL  # empty means the built-in default spec


def test_threads_asking_at_once_share_one_load():
    load = CountingLoader(delay=0.2)
    shelf = ModelShelf(load=load)
    got = []
    threads = [threading.Thread(target=lambda: got.append(shelf.get("scripted:x"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(load.calls) == 1 and len({id(lm) for lm in got}) == 1 and len(got) == 6


def test_least_recently_used_is_evicted():
    load = CountingLoader()
    shelf = ModelShelf(capacity=2, load=load)
    a = shelf.get("a")
    shelf.get("b")
    assert shelf.get("a") is a  # a is now the most recent
    shelf.get("c")  # evicts b, the least recently used
    assert shelf.loaded() == ["a", "c"]
    shelf.get("b")  # loaded again; now a is the least recently used
    assert [c[0] for c in load.calls] == ["a", "b", "c", "b"] and shelf.loaded() == ["c", "b"]
    assert shelf.drop("c") == 1 and shelf.loaded() == ["b"]


def test_a_failed_load_is_not_kept_and_put_registers_a_model():
    load = CountingLoader()
    shelf = ModelShelf(load=load)
    for _ in range(2):
        with pytest.raises(ModelNotFound):
            shelf.get("missing")
    assert len(load.calls) == 2 and shelf.loaded() == []
    mine = ScriptedLM(name="mine")
    assert shelf.put("mine", mine) is mine and shelf.get("mine") is mine and len(load.calls) == 2


def test_the_bound_is_a_setting(monkeypatch):
    assert default_shelf() is default_shelf()  # one per process
    monkeypatch.setenv("PALIMPSEST_MAX_MODELS", "5")
    assert max_models_from_env() == 5 and ModelShelf().capacity == 5
    for bad in ("0", "two"):
        monkeypatch.setenv("PALIMPSEST_MAX_MODELS", bad)
        with pytest.raises(BadShelfSetting, match="PALIMPSEST_MAX_MODELS"):
            max_models_from_env()
    with pytest.raises(BadShelfSetting):
        ModelShelf(capacity=0)


def test_model_choice_defaults_the_empty_spec():
    load = CountingLoader()
    choice = ModelChoice(ModelShelf(load=load), "scripted:app", ModelPolicy(("scripted:app",), ("other", "scripted:*")))
    assert choice.spec("") == choice.spec(None) == "scripted:app" and choice.spec(" other ") == "other"
    assert choice.lm("") is choice.get_lm() is choice.lm("scripted:app")
    assert choice.lm("scripted:judge").name == "scripted:judge" and len(load.calls) == 2


def test_the_r2_runner_keeps_no_judges_of_its_own_beyond_the_shelf(tmp_path):
    """R2Runner used to keep every judge it loaded for the life of the app, past the shelf's bound."""
    from core.store import open_store
    from studio.runners.r2 import R2Runner

    loader = CountingLoader()
    shelf = ModelShelf(capacity=1, load=loader)
    runner = R2Runner(open_store(tmp_path / "s.db"), lambda: ScriptedLM(name="app"), "app", load=shelf.get)
    a = runner.judge_lm("judge-a")
    assert runner.judge_lm("judge-a") is a  # cached, by the shelf
    runner.judge_lm("judge-b")  # the shelf holds one model: judge-a goes
    runner.judge_lm("judge-a")
    assert [c[0] for c in loader.calls] == ["judge-a", "judge-b", "judge-a"]
    assert runner.judge_lm("").name == "app" and len(loader.calls) == 3


def test_a_folder_saved_again_is_loaded_again(tmp_path):
    """A model trained again into the same folder (the Train page's output picked as a model, then
    trained over) is loaded anew; until its files change the shelf keeps the one copy."""
    load = CountingLoader()
    shelf = ModelShelf(capacity=3, load=load)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"first")
    first = shelf.get(str(folder))
    assert shelf.get(str(folder)) is first and len(load.calls) == 1
    (folder / "metrics.json").write_text("{}")  # a training run's figures beside the model: not the model
    assert shelf.get(str(folder)) is first and len(load.calls) == 1
    (folder / "model.safetensors").write_bytes(b"second, longer")  # saved again
    second = shelf.get(str(folder))
    assert second is not first and len(load.calls) == 2
    assert shelf.get(str(folder)) is second and shelf.loaded() == [str(folder)]
    (folder / "model.safetensors").unlink()  # gone: loaded again, so a real load would say what is missing
    shelf.get(str(folder))
    assert len(load.calls) == 3


def test_a_real_model_folder_trained_again_scores_with_its_new_weights(tmp_path, tiny_dir):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    from core.models.lm import ScoreRequest
    from core.models.load import load_lm

    folder = tmp_path / "trained"
    shutil.copytree(tiny_dir, folder)
    shelf = ModelShelf(capacity=2, load=load_lm)
    req = [ScoreRequest(("The lamp burns all night. ",), "The ships see it.")]
    before = sum(shelf.get(str(folder)).loglikelihood(req)[0].logprobs)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for p in model.model.layers[0].parameters():
            p.mul_(1.5)
    time.sleep(0.01)  # the size stays the same: the file's mtime (in ns here) tells it was saved again
    model.save_pretrained(folder)  # trained again, saved over the same folder
    after = sum(shelf.get(str(folder)).loglikelihood(req)[0].logprobs)
    fresh = sum(load_lm(str(folder)).loglikelihood(req)[0].logprobs)
    assert after == pytest.approx(fresh, abs=1e-5) and abs(after - before) > 1e-3
