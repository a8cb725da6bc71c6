"""The studio shell with its Library and REER pages, launched for real and driven through
gradio_client (the API a script would use). The model is the package's scripted one
(core.models.scripted) with a script: a known draft and numbered rewrites; its scoring is its
own, so the search runs in seconds and every assertion is about what the store and the page
really hold."""
from __future__ import annotations

import html
import json
import re
import threading
import time

import plotly.io as pio
import pytest
from needs import ROOT
from test_reer import DRAFT
from ui_helpers import client, launched, studio_app

from core.models.scripted import Rule, ScriptedLM
from core.models.shelf import ModelPolicy

pytestmark = [pytest.mark.ui]
STORE_FILE = "studio.db"  # the `store` fixture (tests/conftest.py) opens a file of this name: the studio shares it

SETTINGS = dict(k=2, steps=2, thr=0.0, draft=120, cand=60, seed=0, cues=True)  # thr 0: never stops early
DRAFT_ASK = "Write your private thinking"  # the REER draft prompt (assets/prompts/reer_draft.txt)
REWRITE_ASK = "inside <rewrite></rewrite>"  # the REER rewrite prompt


def option(i: int) -> str:
    return f" and I weigh option {i} with <care> & detail, then settle it.</rewrite>"


def loop_script(tmp_path, n: int = 64) -> str:
    """A `scripted:` spec that writes DRAFT for every draft and numbered rewrites (option 0, 1, ...)
    for every candidate, slowed to 0.3 s a call so a test can act while a run is going."""
    path = tmp_path / "loop.json"
    path.write_text(json.dumps({"rules": [{"when": DRAFT_ASK, "reply": DRAFT, "name": "draft"},
                                          {"when": REWRITE_ASK, "reply": [option(i) for i in range(n)],
                                           "name": "rewrite"}]}))
    return f"scripted:script={path},delay=0.3"


@pytest.fixture
def api_url(store, tmp_path):
    # specs under /nonexistent/ are allowed (the field takes typed text) but load nothing
    spec = loop_script(tmp_path)
    app = studio_app(spec, store, policy=ModelPolicy((spec,), ("/nonexistent/*",)))
    with launched(app) as url:
        yield url


def _rows(table) -> list[list]:
    return table["data"] if isinstance(table, dict) else table


def _settings(model=""):
    s = SETTINGS  # the model field first: empty means the app's model
    return [model, s["k"], s["steps"], s["thr"], s["draft"], s["cand"], s["seed"], s["cues"], "default"]


def _run_id(status: str) -> str:
    m = re.search(r'data-run="([0-9a-f]+)"', status)
    assert m, f"no run id in the status line: {status[:300]}"
    return m.group(1)


def _wait(api, run_id, cond, timeout=90):
    """Poll the page's own view of the run until `cond(status_html)` holds; returns the view."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        view = api.predict(run_id, "score", api_name="/reer_show")
        if cond(view[0]):
            return view
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status: {view[0][:400]}")


def _state(status: str) -> str:
    return re.search(r'data-state="(\w+)"', status).group(1)


def _points(plot) -> int:
    fig = pio.from_json(plot["plot"])
    return sum(len(t.x or ()) for t in fig.data)


# ---- Library ---------------------------------------------------------------------------------------

def test_library_imports_searches_filters_and_saves(api_url, store, tmp_path):
    api = client(api_url)
    table, _, msg = api.predict("", "all categories", api_name="/library_import_samples")
    rows = _rows(table)
    assert len(rows) == store.db["prompts"].count > 0
    assert f"{len(rows)} new prompt(s)" in msg
    _, _, again = api.predict("", "all categories", api_name="/library_import_samples")
    assert f"0 new prompt(s), {len(rows)} already in the library" in again  # stored once per content
    table, _ = api.predict("lighthouse", "all categories", api_name="/library_search")
    found = [r[0] for r in _rows(table)]
    expect = [p["id"] for p in store.list_prompts() if "lighthouse" in (p["query"] + p["reference"]).lower()]
    assert found == expect and 1 <= len(found) < len(rows)

    # hand edits: validation messages name the field and the fix
    *_, bad = api.predict("", "", "   ", "Some answer.", "", "all categories", api_name="/library_save")
    assert "Query is empty" in bad and store.db["prompts"].count == len(rows)
    *_, bad_id = api.predict("no spaces allowed", "", "Q?", "A.", "", "all categories", api_name="/library_save")
    assert "is not allowed" in bad_id
    table, _, pid, ok = api.predict("mine-1", "haiku", "Write a haiku about <rain>.", "Soft rain & tin roofs.",
                                         "", "all categories", api_name="/library_save")
    assert pid == "mine-1" and "added" in ok and store.get_prompt("mine-1")["query"] == "Write a haiku about <rain>."
    table, cat, *_ = api.predict("mine-1", "haiku", "Write a haiku about <rain>.", "Soft rain, tin roofs.",
                                 "", "haiku", api_name="/library_save")
    assert store.get_prompt("mine-1")["reference"] == "Soft rain, tin roofs." and len(_rows(table)) == 1
    assert _rows(table)[0][0] == "mine-1"  # the category filter shows only haiku

    # an uploaded CSV: good rows imported, a bad row reported with its file, line and field
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text('query,reference,category\n"Describe fog.","Fog eats the pier.",poem\n'
                        '"No answer here",,poem\n')
    from gradio_client import handle_file

    table, _, msg = api.predict([handle_file(str(csv_path))], "", "all categories", api_name="/library_upload")
    msg = html.unescape(msg)
    assert "1 new prompt(s)" in msg and "1 line(s) skipped:" in msg
    assert "<li>mine.csv:3 field 'reference': has no answer text" in msg  # every problem: file, line, field
    assert any(r[2] == "Describe fog." for r in _rows(table))


# ---- REER ---------------------------------------------------------------------------------------------

def _prompt(store) -> str:
    pid, _ = store.add_prompt("Write a short note about a lighthouse.", "The keeper read the letter twice. " * 12,
                              id="p-light", category="story_writing")
    return pid


def test_reer_run_plots_every_candidate_then_accept(api_url, store):
    api = client(api_url)
    pid = _prompt(store)
    _, status, *_ = api.predict(pid, *_settings(), api_name="/reer_run")
    run_id = _run_id(status)
    view = _wait(api, run_id, lambda s: _state(s) == "finished")
    status, plot, traj, cands, review = view
    assert "the step budget (Max steps) was used" in status  # finished by max_steps (threshold 0 never reached)
    # the plot: initial point + one per decided step on the path, plus every scored candidate
    n_decided = sum(e.kind == "segment_decided" for e in store.events(run_id))
    n_scored = sum(e.kind == "candidate_scored" for e in store.events(run_id))
    assert n_decided == 2 and n_scored == 4
    assert _points(plot) == 1 + n_decided + n_scored
    names = {t.name for t in pio.from_json(plot["plot"]).data}
    assert {"trajectory", "rejected candidate"} <= names
    # model output is escaped wherever it is shown
    assert "&lt;care&gt; &amp; detail" in cands and "<care>" not in cands
    assert traj.count('class="seg') == len(store.events(run_id)[1].segments)
    assert review.count("pending") >= 1
    # accept the finished trajectory: the store says so, and the page shows it
    st, review = api.predict(api_name="/reer_accept")
    assert store.trajectory_for_run(run_id)["status"] == "accepted" and 'data-status="accepted"' in review


def test_reer_step_pause_edit_and_stop(api_url, store):
    api = client(api_url)
    pid = _prompt(store)
    _, status, *_ = api.predict(pid, *_settings(), api_name="/reer_step")
    run_id = _run_id(status)
    view = _wait(api, run_id, lambda s: _state(s) == "paused")
    assert 'data-steps="1"' in view[0]  # one expansion, then it waits
    # a hand edit on the paused run is rescored and recorded as a human decision
    api.predict(2, "My own plan: <b>end</b> on the letter, not the storm.", api_name="/reer_edit")
    view = _wait(api, run_id, lambda s: any(e.kind == "segment_decided" and e.action == "edit"
                                            for e in store.events(run_id)) and _state(s) == "paused")
    edit = [e for e in store.events(run_id) if e.kind == "segment_decided" and e.action == "edit"][0]
    assert edit.by == "human" and edit.segment == 1 and edit.score["ppl"] > 0
    assert "&lt;b&gt;end&lt;/b&gt;" in view[2] and "<b>end</b>" not in view[2]
    # an edit of a segment that does not exist is refused with the reason
    *_, note = api.predict(99, "text", api_name="/reer_edit")  # the answer stays under the edit box
    assert "Segment 99 does not exist" in note
    # Stop on a paused run finishes it as stopped
    api.predict(api_name="/reer_stop")
    view = _wait(api, run_id, lambda s: _state(s) == "stopped")
    assert "stopped by you" in view[0] and store.get_run(run_id)["finish_reason"] == "stopped"
    assert store.run_lease(run_id) is None  # the driver let go


def gated_lm() -> ScriptedLM:
    """The scripted model whose rewrites wait until the test opens `lm.gate`."""
    gate = threading.Event()

    def rewrite(ask):
        assert gate.wait(60), "the test never opened the gate"
        return option(ask.nth * ask.config.n + ask.sample)

    lm = ScriptedLM(rules=[Rule(when=(DRAFT_ASK,), reply=DRAFT, name="draft"),
                           Rule(when=(REWRITE_ASK,), reply=rewrite, name="rewrite")], name="scripted:gated")
    lm.gate = gate  # type: ignore[attr-defined]
    return lm


def test_reer_pause_holds_candidates_then_force_and_skip(store):
    lm = gated_lm()
    with launched(studio_app(lm, store)) as url:
        api = client(url)
        pid = _prompt(store)
        st = api.predict(1, api_name="/reer_force")
        assert "No run on screen" in st
        _, status, *_ = api.predict(pid, *_settings(), api_name="/reer_run")
        run_id = _run_id(status)
        t0 = time.time()  # step 1's candidates are being written (held at the gate): Pause now
        while not any(e.kind == "segment_started" for e in store.events(run_id)):
            assert time.time() - t0 < 60, "no step started"
            time.sleep(0.1)
        api.predict(api_name="/reer_pause")
        lm.gate.set()
        view = _wait(api, run_id, lambda s: _state(s) == "paused")
        assert "await your decision" in view[0] and view[3].count("awaiting decision") == 2
        assert not any(e.kind == "segment_decided" for e in store.events(run_id))  # the step is held
        st = api.predict(3, api_name="/reer_force")
        assert "Candidate 3 cannot be accepted" in st and "are 1, 2" in html.unescape(st)
        # accept candidate 2 although the search would pick by score: recorded as a human force
        api.predict(2, api_name="/reer_force")
        view = _wait(api, run_id, lambda s: _state(s) == "paused" and 'data-steps="1"' in s)
        forced = [e for e in store.events(run_id) if e.kind == "segment_decided"]
        assert [(e.action, e.by, e.chosen) for e in forced] == [("force", "human", 1)]
        assert forced[0].segments[0] == forced[0].text and "option 1" in forced[0].text
        assert 'data-index="1"' in view[3] and "accepted" in view[3]
        st = api.predict(1, api_name="/reer_force")
        assert "No candidates await a decision" in st  # paused after a decided step: nothing held
        # skip the next segment: kept as it is, and the run (2 steps) finishes
        api.predict(api_name="/reer_skip")
        view = _wait(api, run_id, lambda s: _state(s) == "finished")
        decided = [e for e in store.events(run_id) if e.kind == "segment_decided"]
        assert [(e.action, e.by) for e in decided] == [("force", "human"), ("skip", "human")]
        assert decided[1].text == decided[0].segments[1]
        st = api.predict(api_name="/reer_skip")
        assert "applies to a running or paused run" in st


def test_reer_errors_reach_the_page(api_url, store):
    api = client(api_url)
    _, status, *_ = api.predict(None, *_settings(), api_name="/reer_run")
    assert "Pick a prompt first" in status
    pid = _prompt(store)
    bad = _settings()
    bad[6] = None  # no seed
    _, status, *_ = api.predict(pid, *bad, api_name="/reer_run")
    assert "Seed: empty — must be a whole number" in status and not store.list_runs()  # the config's message
    bad = _settings()
    bad[1] = 0  # zero candidates: the slider's own bounds refuse it, with a readable message
    with pytest.raises(Exception, match="less than minimum value 1"):
        api.predict(pid, *bad, api_name="/reer_run")
    st, _ = api.predict(api_name="/reer_accept")
    assert "No run on screen" in st
    # a model that cannot be loaded: the run records the spec, and the reason reaches the status line
    _, status, *_ = api.predict(pid, *_settings("/nonexistent/model-folder"), api_name="/reer_run")
    run_id = _run_id(status)
    assert store.get_run(run_id)["model"] == "/nonexistent/model-folder"
    view = _wait(api, run_id, lambda s: "could not be loaded" in s)
    assert "no such folder" in view[0] and "leave the model field empty" in view[0]


# ---- the app command and login ---------------------------------------------------------------------

def test_app_command_rejects_a_bad_auth_before_loading_anything():
    import subprocess
    import sys

    for bad in ("nocolon", "user:", ":pass"):
        res = subprocess.run([sys.executable, "-m", "studio.cli", "app", "--auth", bad], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "--auth must look like USER:PASSWORD" in res.stderr, res.stderr


def test_auth_turns_on_login(store):
    from gradio_client import Client
    from ui_helpers import free_port

    from studio.app import serve

    app = studio_app("scripted:", store)
    _, url, _ = serve(app, port=free_port(), auth=("ada", "s3cret"), prevent_thread_lock=True, quiet=True)
    try:
        with pytest.raises(Exception):
            Client(url, verbose=False, analytics_enabled=False, download_files=False)  # no login: refused
        api = Client(url, verbose=False, analytics_enabled=False, download_files=False, auth=("ada", "s3cret"))
        table, _ = api.predict("", "all categories", api_name="/library_search")
        assert _rows(table) == []  # logged in, and the empty store says so
    finally:
        app.close()


# ---- the runner: one driver per run, even across runners (two app processes) -----------------------

def test_a_second_runner_is_refused_while_the_first_drives_and_the_run_still_finishes(store, tmp_path):
    from core.models.load import load_lm
    from core.reer.config import ReerConfig
    from studio.runners.reer import ReerRunner

    lm = load_lm(loop_script(tmp_path).replace("delay=0.3", "delay=0.4"))
    first, second = ReerRunner(store, lambda: lm), ReerRunner(store, lambda: lm)
    cfg = ReerConfig(candidates=2, max_steps=2, threshold=0.0, draft_max_new_tokens=120, candidate_max_new_tokens=60)
    run_id = first.start(_prompt(store), cfg, "scripted+tiny-random")
    t0 = time.time()
    while store.run_lease(run_id) is None and time.time() - t0 < 30:
        time.sleep(0.05)
    holder = store.run_lease(run_id)["owner"]
    second.resume(run_id)
    assert second.wait(run_id, 30) and not second.is_driving(run_id)
    assert f"run {run_id} is being driven by {holder}" in second.error(run_id)
    assert first.wait(run_id, 120)
    assert store.get_run(run_id)["status"] == "finished" and store.run_lease(run_id) is None
    assert first.error(run_id) is None
    kinds = [e.kind for e in store.events(run_id)]
    assert kinds.count("run_started") == 1 and kinds[-1] == "run_finished"  # the refused driver wrote nothing


# ---- the no-model demo ---------------------------------------------------------------------------

def test_demo_mode_serves_the_scripted_model_and_says_so(tmp_path):
    """`palimpsest app --model scripted:` starts without a model, and the header says it is a demo."""
    import subprocess
    import sys
    import urllib.request

    from ui_helpers import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "app", "--model", "scripted:", "--port", str(port),
                             "--db", str(tmp_path / "demo.db")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        t0, config = time.time(), None
        while config is None:
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() - t0 < 300, "the demo app never answered"
            try:
                config = opener.open(f"http://127.0.0.1:{port}/config", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert "demo mode: scripted model, no real language model" in config
        assert "<code>scripted:</code>" in config
    finally:
        proc.terminate()
        proc.wait(30)
