"""The studio's R2 and Train pages, launched for real and driven through gradio_client.

R2: the writer and judge are the scripted double of tests/r2_fakes.py injected through the app's
`get_lm`, so a run takes seconds and every assertion is about what the store and the page hold:
a person's judgment given through the page is stored as human, an override keeps the model's
judgment, errors are readable, text is escaped. Train: a real `palimpsest train` process on the
built-in model (2 steps on a 3-record chat file), its loss and before/after perplexity read
back through the page."""
from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time

import plotly.io as pio
import pytest
from needs import ROOT
from r2_fakes import FakeLM
from ui_helpers import client, launched, needs_chromium, studio_app, wait_r2

from core.models.shelf import ModelPolicy
from core.r2.judge import DEFAULT_RUBRIC
from core.store import open_store
from studio.views.r2 import point_count

pytestmark = [pytest.mark.ui]
STORE_FILE = "studio.db"  # the `store` fixture (tests/conftest.py) opens a file of this name: the studio shares it

#            prompt judge  mode  rounds thr seed plan draft refl rev  edit reflections, judge tokens
def _settings(pid, mode="human", rounds=1, judge="", edit=False):
    return [pid, judge, mode, rounds, 9, 0, False, 64, 32, 64, edit, 48]


@pytest.fixture
def fake():
    return FakeLM(scores={0: 4, 1: 6, 2: 8, 3: 9})


@pytest.fixture
def api(store, fake):
    # the Train page's model, and judge specs under /no/such/ (allowed, but nothing loads there)
    app = studio_app(fake, store, samples_path=None, policy=ModelPolicy(("smollm2-135m",), ("/no/such/*",)))
    with launched(app) as url:
        yield client(url)


def _prompt(store) -> str:
    pid, _ = store.add_prompt("Write a short story about a lighthouse keeper.", "The keeper read the letter twice.",
                              id="p-light", category="story_writing")
    return pid


def _run_id(status: str) -> str:
    m = re.search(r'data-run="([0-9a-f]+)"', status)
    assert m, f"no run id in the status line: {status[:300]}"
    return m.group(1)




def _form(view):
    """(head html, overall, critique, the 8 criterion boxes' values) of a page view."""
    head, ov, crit, *boxes = view[4:16]
    val = lambda x: x.get("value") if isinstance(x, dict) else x  # noqa: E731
    return head, val(ov), val(crit), [val(b) for b in boxes]


def _state(status: str) -> str:
    return re.search(r'data-state="(\w+)"', status).group(1)


def _pending(status: str) -> str:
    return re.search(r'data-pending="(\d*)"', status).group(1)


def test_r2_human_judges_through_the_page(api, store, fake):
    pid = _prompt(store)
    out = api.predict(*_settings(pid, "human"), api_name="/r2_run")
    run_id = _run_id(out[1])
    view = wait_r2(api, run_id, lambda s: _state(s) == "waiting")
    status, plot, rounds, review, *form = view
    assert _pending(status) == "0" and "waiting for you" in status
    assert "Draft number 0" in rounds  # the first draft is on the page
    head, labels = form[0], [b.get("label", "") for b in form[3:11] if isinstance(b, dict)]
    assert "Your judgment of the first draft" in head  # each criterion's words label its own box
    assert all(any(c in lab for lab in labels) for c in DEFAULT_RUBRIC)
    assert fake.count("judge") == 0  # human mode: the model never judged

    # a bad form is refused with the field and the fix; nothing is stored
    res = api.predict(None, "more boat", *[None] * 8, api_name="/r2_judge")
    assert "Overall: give a score from 1 to 10" in res[0]
    res = api.predict(5, "   ", *[None] * 8, api_name="/r2_judge")
    assert "judgment.critique: empty" in res[0]
    assert not [e for e in store.events(run_id) if e.kind == "judgment_given"]

    # the person's judgment of the first draft, with markup that must come back escaped
    api.predict(5, "The <b>ending</b> is rushed & the boat never arrives.", 6, 4, None, 5, 5, None, None, None,
                api_name="/r2_judge")
    view = wait_r2(api, run_id, lambda s: _pending(s) == "1" and _state(s) == "waiting")
    given = [e for e in store.events(run_id) if e.kind == "judgment_given"]
    assert len(given) == 1 and given[0].version == 0
    j = given[0].judgment
    assert j["judge"] == "human" and j["overall"] == 5 and j["scores"][DEFAULT_RUBRIC[0]] == 6
    assert j["scores"][DEFAULT_RUBRIC[2]] is None  # left empty: no made-up score
    status, plot, rounds, *_ = view
    assert "&lt;b&gt;ending&lt;/b&gt; is rushed &amp; the boat" in rounds and "<b>ending</b>" not in rounds
    assert "Rereading my draft" in rounds and "Draft number 1" in rounds  # reflection and revision shown
    # judge the revision: higher, so the round keeps it; one round, so the run finishes
    api.predict(8, "Better: the boat arrives, the letter matters.", *[None] * 8, api_name="/r2_judge")
    view = wait_r2(api, run_id, lambda s: _state(s) == "finished")
    status, plot, rounds, review, *_ = view
    fig = pio.from_json(plot["plot"])
    ov = next(t for t in fig.data if t.name == "overall")
    assert list(ov.x) == [0, 1] and list(ov.y) == [5, 8] and list(ov.marker.symbol) == ["diamond", "diamond"]
    bars = {t.name for t in fig.data if t.type == "bar"}
    assert {"reward: improvement", "reward: redundancy", "reward: total"} <= bars
    rf = [e for e in store.events(run_id) if e.kind == "r2_round_finished"][0]
    assert rf.kept and rf.before == 5 and rf.after == 8
    imp = next(t for t in fig.data if t.name == "reward: improvement")
    assert list(imp.y) == [rf.reward["improvement"]]
    assert "overall 5 → 8" in status and point_count(fig) == 2
    # accept the finished trajectory
    st, review = api.predict(api_name="/r2_accept")
    assert store.trajectory_for_run(run_id)["status"] == "accepted" and 'data-status="accepted"' in review


def test_r2_override_keeps_the_models_judgment(api, store, fake):
    pid = _prompt(store)
    out = api.predict(*_settings(pid, "model_then_human"), api_name="/r2_run")
    run_id = _run_id(out[1])
    view = wait_r2(api, run_id, lambda s: _state(s) == "waiting")
    head, ov, crit, boxes = _form(view)
    # the form is prefilled with the model's proposal (the double judges version 0 at 4)
    assert ov == 4 and crit == "The ending is rushed; give the boat scene room." and boxes[:5] == [4] * 5
    assert "The model&#x27;s judgment is filled in" in head
    # override: the overall goes up, the critique changes, the criteria keep the model's values
    api.predict(6, "Keep the storm; cut the first paragraph.", *[4] * 5, None, None, None, api_name="/r2_judge")
    wait_r2(api, run_id, lambda s: _pending(s) == "1")
    j = [e for e in store.events(run_id) if e.kind == "judgment_given"][0].judgment
    assert j["judge"] == "human" and j["overall"] == 6 and j["model_judgment"]["overall"] == 4
    assert {c["field"] for c in j["changes"]} == {"overall", "critique"}
    # submitting the proposal unchanged lets the model's judgment stand (judge stays "model")
    _, ov, crit, boxes = _form(api.predict(run_id, api_name="/r2_show"))
    assert ov == 6  # the double judges revision 1 at 6
    api.predict(ov, crit, *boxes, api_name="/r2_judge")
    wait_r2(api, run_id, lambda s: _state(s) == "finished")
    j1 = [e for e in store.events(run_id) if e.kind == "judgment_given"][1].judgment
    assert j1["judge"] == "model" and j1["overall"] == 6 and not j1["model_judgment"]


def test_r2_person_edits_the_reflection_before_the_revision(api, store, fake):
    from core.r2.jobs import run_record

    pid = _prompt(store)
    out = api.predict(*_settings(pid, "human", edit=True), api_name="/r2_run")
    run_id = _run_id(out[1])
    wait_r2(api, run_id, lambda s: _state(s) == "waiting")
    api.predict(5, "The letter never matters to the ending.", *[None] * 8, api_name="/r2_judge")
    view = wait_r2(api, run_id, lambda s: 'data-reflection="1"' in s)
    assert "edit or approve the reflection of round 1" in view[0]
    refl_head, refl_text = view[15], view[16]
    refl_text = refl_text.get("value") if isinstance(refl_text, dict) else refl_text
    assert refl_text.startswith("Rereading my draft,") and "round 1" in refl_head
    assert fake.count("revise") == 0  # nothing was revised before the person answered
    res = api.predict("too short", api_name="/r2_reflect")
    assert "reflection: too short" in res[0]
    mine = "Rereading my draft, I see the <letter> never matters; I will make it the turn of the ending."
    api.predict(mine, api_name="/r2_reflect")
    view = wait_r2(api, run_id, lambda s: _pending(s) == "1")
    refl = [e for e in store.events(run_id) if e.kind == "r2_reflected"]
    assert [e.by for e in refl] == ["model", "human"] and refl[-1].text == mine
    assert fake.count("revise") == 1 and mine in fake.calls[-1][1][-1]["content"]  # the revision used it
    assert run_record(store, run_id)["rounds"][0]["reflection"] == mine
    assert "&lt;letter&gt; never matters" in view[2] and "edited or approved by you" in view[2]
    res = api.predict(mine, api_name="/r2_reflect")  # nothing waits for a reflection now
    assert "not waiting for a reflection" in res[0]


def test_r2_model_mode_runs_alone_and_stop_and_errors(api, store, fake):
    pid = _prompt(store)
    out = api.predict(*_settings(pid, "model", rounds=2), api_name="/r2_run")
    run_id = _run_id(out[1])
    view = wait_r2(api, run_id, lambda s: _state(s) == "finished")
    judged = [e.judgment for e in store.events(run_id) if e.kind == "judgment_given"]
    assert [j["judge"] for j in judged] == ["model"] * 3 and [j["overall"] for j in judged] == [4, 6, 8]
    assert "round 2/2" in view[0]
    settings = store.get_run(run_id)["settings"]
    assert settings["judge"]["max_new_tokens"] == 48 and settings["max_rounds"] == 2
    assert not settings["review_reflections"]  # the model judges alone: no pause for a person
    # a bad judge spec is reported before anything is stored
    n_runs = len(store.list_runs(kind="r2"))
    out = api.predict(*_settings(pid, "model", judge="/no/such/model-dir"), api_name="/r2_run")
    assert "judge model '/no/such/model-dir' could not be loaded" in html.unescape(out[1]) and len(store.list_runs(kind="r2")) == n_runs
    out = api.predict(*_settings(None), api_name="/r2_run")
    assert "Pick a prompt first" in out[1]
    # Stop on a run that waits for a judgment finishes it as stopped
    pid2, _ = store.add_prompt("Write a poem about fog.", "Fog.", id="p-fog")
    out = api.predict(*_settings(pid2, "human"), api_name="/r2_run")
    run2 = _run_id(out[1])
    wait_r2(api, run2, lambda s: _state(s) == "waiting")
    api.predict(api_name="/r2_stop")
    view = wait_r2(api, run2, lambda s: _state(s) == "stopped")
    assert "finished: stopped" in view[0] and store.get_run(run2)["finish_reason"] == "stopped"
    res = api.predict(5, "too late", *[None] * 8, api_name="/r2_judge")
    assert "not waiting for a judgment" in res[0]


def test_r2_waiting_run_survives_a_new_app(store, fake, tmp_path):
    """A run waiting for a person, judged from a second app on the same store file (what another
    process or a restarted studio sees): the judgment is taken and the run goes on there."""
    pid = _prompt(store)
    app1 = studio_app(fake, store, samples_path=None)
    with launched(app1) as url:
        out = client(url).predict(*_settings(pid, "human"), api_name="/r2_run")
        run_id = _run_id(out[1])
        wait_r2(client(url), run_id, lambda s: _state(s) == "waiting")
    store2 = open_store(store.path)
    app2 = studio_app(fake, store2, samples_path=None)
    try:
        with launched(app2) as url:
            api = client(url)
            view = api.predict(run_id, api_name="/r2_show")
            assert _state(view[0]) == "waiting" and "Your judgment of the first draft" in str(view)
            # judged from the second app: stored as human, and the run goes on there
            api.predict(7, "From another window: give the keeper a name.", *[None] * 8, api_name="/r2_judge")
            view = wait_r2(api, run_id, lambda s: _pending(s) == "1")
            assert "Draft number 1" in view[2]
            j = [e for e in store2.events(run_id) if e.kind == "judgment_given"][0].judgment
            assert j["judge"] == "human" and j["overall"] == 7
    finally:
        store2.close()


# ---- Train ------------------------------------------------------------------------------------------

def _chat_file(path) -> str:
    rows = [("Write a haiku about rain.", "Short lines, an image, a turn.", "Rain on tin roofs / the night counts its coins"),
            ("Describe fog in one sentence.", "One image, quiet tone.", "The fog ate the pier plank by plank."),
            ("Name a good title for a sea story.", "Something short.", "Salt and Lanterns")]
    with open(path, "w") as f:
        for i, (q, t, a) in enumerate(rows):
            f.write(json.dumps({"id": f"r{i}", "messages": [{"role": "user", "content": q}, {
                "role": "assistant", "content": f"<think>\n{t}\n</think>\n\n{a}"}]}) + "\n")
    return str(path)


def test_train_page_refuses_bad_input(api, store, tmp_path):
    msg = api.predict("", "smollm2-135m", 2, 0, False, 0.34, "", api_name="/train_run")[0]
    assert "Data: (empty) is not a file" in msg
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    msg = api.predict(str(bad), "smollm2-135m", 2, 0, False, 0.34, "", api_name="/train_run")[0]
    assert "bad.jsonl:1" in msg and "at least two messages" in msg
    good = _chat_file(tmp_path / "c.jsonl")
    with pytest.raises(Exception, match="less than minimum value 1"):  # the box's own bound, readable
        api.predict(good, "smollm2-135m", 0, 0, False, 0.34, "", api_name="/train_run")
    msg = api.predict(good, "smollm2-135m", 2, 5, False, 0.34, "", api_name="/train_run")[0]
    assert "Learning rate: 5.0" in msg
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    msg = api.predict(good, "smollm2-135m", 2, 0, False, 0.34, str(taken), api_name="/train_run")[0]
    assert "exists and is not empty" in msg
    # a typed path outside the store's folder is neither read nor written (studio.workspace)
    msg = api.predict("/etc/passwd", "smollm2-135m", 2, 0, False, 0.34, "", api_name="/train_run")[0]
    assert "Data: /etc/passwd is outside the studio&#x27;s folder" in msg and "root:" not in msg
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    msg = api.predict(good, "smollm2-135m", 2, 0, False, 0.34, str(elsewhere), api_name="/train_run")[0]
    assert "Output folder:" in msg and "outside the studio" in msg and not elsewhere.exists()
    msg = api.predict(api_name="/train_stop")
    assert "Nothing to stop" in msg
    assert store.list_train_runs() == []


@pytest.mark.model
@needs_chromium  # its second half checks the same run in a browser
def test_train_page_runs_a_process_and_plots_its_loss(api, store, tmp_path, request):
    data = _chat_file(tmp_path / "chat.jsonl")
    out_dir = str(tmp_path / "model-out")
    res = api.predict(data, "smollm2-135m", 2, 0, False, 0.34, out_dir, api_name="/train_run")
    assert "Training started in its own process" in res[0]
    t0, status, plot = time.time(), "", None
    while time.time() - t0 < 400:
        status, plot = api.predict(out_dir, api_name="/train_show")
        if re.search(r'data-state="(finished|failed|stopped)"', status):
            break
        time.sleep(1)
    print(f"\ntraining 2 steps through the page: {time.time() - t0:.1f} s")
    assert 'data-state="finished"' in status, status
    run = store.list_train_runs()[0]
    loss = store.train_loss(run["id"])
    assert [s for s, _ in loss] == [1, 2]
    fig = pio.from_json(plot["plot"])
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [x for _, x in loss]
    ev = {e.stage: e for e in store.train_events(run["id"]) if e.kind == "train_evaluated"}
    assert f"before {ev['before'].ppl_with_thinking:,.2f} → after {ev['after'].ppl_with_thinking:,.2f}" in status
    assert "step 2/2" in status
    # the same run in a browser: a fresh page reattaches to it and draws both steps (screenshot)
    from ui_helpers import ARTIFACTS, browser_page

    with browser_page(api.src) as page:
        page.get_by_role("tab", name="Train").click(timeout=60_000)
        page.wait_for_selector('#train-status [data-state="finished"]', timeout=30_000)
        page.wait_for_function("() => document.querySelector('#train-plot .js-plotly-plot')?.data?.[0]?.x?.length"
                               " === 2", timeout=30_000)
        os.makedirs(ARTIFACTS, exist_ok=True)
        time.sleep(0.4)
        page.screenshot(path=os.path.join(ARTIFACTS, "studio-train-finished.png"))


@pytest.mark.model
def test_train_page_stop_interrupts_the_process_with_a_checkpoint(api, store, tmp_path):
    data = _chat_file(tmp_path / "chat.jsonl")
    out_dir = str(tmp_path / "model-stop")
    # a studio started with `nohup ... &` hands its children SIGINT ignored: Stop must work anyway
    kept = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        api.predict(data, "smollm2-135m", 200, 0, False, 0.34, out_dir, api_name="/train_run")
    finally:
        signal.signal(signal.SIGINT, kept)
    t0 = time.time()
    while time.time() - t0 < 300:  # wait for the first step, then Stop
        status, _ = api.predict(out_dir, api_name="/train_show")
        if re.search(r'data-steps="[1-9]', status):
            break
        time.sleep(1)
    msg = api.predict(api_name="/train_stop")
    assert "Stop sent (SIGINT)" in msg
    while time.time() - t0 < 400:
        status, plot = api.predict(out_dir, api_name="/train_show")
        if re.search(r'data-state="(finished|failed|stopped)"', status):
            break
        time.sleep(1)
    run = store.list_train_runs()[0]
    fin = [e for e in store.train_events(run["id"]) if e.kind == "train_finished"]
    assert run["status"] == "stopped" and fin and fin[-1].reason == "stopped", status
    assert 1 <= fin[-1].steps < 200 and "stopped at step" in status
    ckpts = list((tmp_path / "model-stop" / "checkpoints").glob("checkpoint-*"))
    assert ckpts, "SIGINT must leave a checkpoint to resume from"


PARENT = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `nohup ... &` starts a studio
from core.store import open_store
from studio.runners.train import TrainRequest, TrainRunner
runner = TrainRunner(open_store(sys.argv[1]))
out = runner.start(TrainRequest(data=sys.argv[2], out_dir=sys.argv[3], model="smollm2-135m", max_steps=200,
                                eval_frac=0.34))
print(runner._procs[out].popen.pid, flush=True)
time.sleep(3600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.mark.model
def test_a_killed_studio_stops_its_training_with_a_checkpoint(tmp_path):
    db, data, out_dir = str(tmp_path / "s.db"), _chat_file(tmp_path / "chat.jsonl"), tmp_path / "model-orphan"
    open_store(db).close()
    root = str(ROOT)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, db, data, str(out_dir)], cwd=root, text=True,
                              stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=root))
    child = int(parent.stdout.readline())
    store = open_store(db)
    try:
        t0 = time.time()
        while not (store.list_train_runs() and store.train_loss(store.list_train_runs()[0]["id"])):
            assert time.time() - t0 < 400 and _alive(child), "the training never made a step"
            time.sleep(1)
        parent.send_signal(signal.SIGKILL)  # the studio dies without a word
        parent.wait(10)
        t1 = time.time()
        while _alive(child):
            assert time.time() - t1 < 200, "the training outlived its studio"
            time.sleep(1)
        run = store.list_train_runs()[0]
        fin = [e for e in store.train_events(run["id"]) if e.kind == "train_finished"]
        assert run["status"] == "stopped" and fin and fin[-1].reason == "stopped"
        assert list((out_dir / "checkpoints").glob("checkpoint-*")), "the stop must leave a checkpoint"
        assert "is gone: stopping with a checkpoint" in (tmp_path / "model-orphan.log").read_text()
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        store.close()
