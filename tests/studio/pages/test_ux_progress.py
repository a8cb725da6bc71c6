"""The studio shows live progress and acknowledges Pause and Stop at once, through gradio_client
on the scripted model (REER: each generation shows half its text, then waits until the test
releases it, tests/gated.py; R2 likewise): the progress line and the streamed text appear before the
search's first decision; Pause answers "pausing…" before the run reports "paused"; Stop answers
"stopping…" and the run ends stopped. The times from Run to the first progress line and to the
first streamed text are printed (no timing is asserted)."""
from __future__ import annotations

import re
import time

import pytest
from gated import GatedLM
from ui_helpers import client, launched, studio_app, wait_r2

pytestmark = pytest.mark.ui

SETTINGS = ["", 2, 2, 0.0, 120, 60, 0, True]  # model (the app's), K, max steps, threshold 0, draft, cand, seed, cues
QUERY = "Write a short note about a lighthouse keeper and the storm at sea."
ANSWER = "The keeper climbed the stairs when the storm broke over the sea and lit the lamp for the boats. " * 3


def _run_id(status: str) -> str:
    return re.search(r'data-run="([0-9a-f]+)"', status).group(1)


def _state(status: str) -> str:
    return re.search(r'data-state="(\w+)"', status).group(1)


def _show(api, run_id):
    """(status, progress line, writing box) of the REER page's own view of the run."""
    status = api.predict(run_id, "score", api_name="/reer_show")[0]
    line, box = api.predict(run_id, api_name="/reer_progress")
    return status, line, box


def _until(api, run_id, cond, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        shown = _show(api, run_id)
        if cond(*shown):
            return shown
        time.sleep(0.1)
    raise AssertionError(f"timed out; last view: {shown}")


@pytest.fixture
def served(store):
    store.add_prompt(QUERY, ANSWER, id="p-light", category="story_writing")
    lm = GatedLM()
    with launched(studio_app(lm, store, samples_path=None)) as url:
        yield client(url), store, lm
    lm.open()  # nothing left waiting


def test_reer_shows_a_progress_line_and_streamed_text_before_the_first_decision(served):
    api, store, lm = served
    t0 = time.time()
    out = api.predict("p-light", *SETTINGS, api_name="/reer_run")
    run_id = _run_id(out[1])
    first_line = time.time() - t0
    assert 'class="run-progress"' in out[-3], "Run itself answers with a progress line"  # [..., live, writing, check]
    decided = lambda: any(e.kind == "segment_decided" for e in store.events(run_id))  # noqa: E731
    lm.wait_held(1)  # the draft is being written, half shown, until released
    _, line, box = _until(api, run_id, lambda s, line, box: 'data-stage="draft"' in line and 'class="w"' in box
                          and "waiting for the first" not in box)
    first_text = time.time() - t0
    assert "tokens" in line and "elapsed" in line and "writing now" in box and not decided()
    lm.release(1)  # the draft is written and scored; step 1's two candidates are held
    _, line, box = _until(api, run_id, lambda s, line, box: 'data-stage="candidates"' in line and "#2" in box)
    assert "of segment 1 (step 1/2)" in line and not decided() and lm.held == 1
    assert "left" in line or "estimating" in line
    lm.open()
    status, line, _ = _until(api, run_id, lambda s, line, box: _state(s) == "finished", timeout=90)
    assert line == "" and decided()  # the run is done: no live line, the store has the decisions
    assert "progress" not in {e.kind for e in store.events(run_id)}
    print(f"\nscripted (generations held until released): Run -> first progress line {first_line:.2f} s, "
          f"-> first streamed text {first_text:.2f} s")


def test_pause_and_stop_are_acknowledged_at_once(served):
    api, store, lm = served
    run_id = _run_id(api.predict("p-light", *SETTINGS, api_name="/reer_run")[1])
    lm.release(1)  # the draft; step 1's candidates are then held while Pause is pressed
    _until(api, run_id, lambda s, line, box: 'data-stage="candidates"' in line and "(step 1/" in line)
    ack = str(api.predict(api_name="/reer_pause"))
    # "pausing" is said only while the engine has not reached its pause point (after that: "paused")
    assert 'data-asked="pausing"' in ack and "pausing after these candidates are written and scored" in ack
    assert "(step 1/" in ack  # the step writing when Pause was pressed
    lm.release(1)
    status, line, _ = _until(api, run_id, lambda s, line, box: _state(s) == "paused")
    assert "pausing" not in line and "await your decision" in status
    assert not [e for e in store.events(run_id) if e.kind == "segment_decided"]  # step 1 is held before its decision
    # Stop while the next step writes: "stopping…" at once, then the run ends stopped
    api.predict("p-light", *SETTINGS, api_name="/reer_run")
    _until(api, run_id, lambda s, line, box: 'data-stage="candidates"' in line and "(step 2/" in line)
    assert lm.held == 1
    ack = str(api.predict(api_name="/reer_stop"))
    assert 'data-asked="stopping"' in ack and "stopping…" in ack
    _until(api, run_id, lambda s, line, box: _state(s) == "stopped", timeout=30)
    assert store.get_run(run_id)["finish_reason"] == "stopped"
    assert [e.step for e in store.events(run_id) if e.kind == "segment_decided"] == [1]  # step 2 was cut short


def test_r2_streams_its_draft_and_says_drafting_without_a_plan(store):
    store.add_prompt(QUERY, ANSWER, id="p-light", category="story_writing")
    lm = GatedLM(judge=6)  # the draft is held, half shown, until the test is done looking
    with launched(studio_app(lm, store, samples_path=None)) as url:
        api = client(url)
        form = ["model", 1, 9, 0, False, 60, 40, 60, False, 60]  # mode, rounds, threshold, seed, plan off, budgets
        out = api.predict("p-light", "", *form, api_name="/r2_run")
        run_id = _run_id(out[1])
        t0 = time.time()
        while True:
            view = api.predict(run_id, api_name="/r2_show")
            line, box = view[-2], view[-1]
            if 'data-stage="draft"' in line and 'class="w"' in box and "waiting for the first" not in box:
                break
            assert time.time() - t0 < 30, f"no streamed draft; last: {len(view)} {view[-4:]}"
            time.sleep(0.1)
        assert line.split('class="line">')[1].startswith("drafting") and "planning" not in line
        assert not any(e.kind == "r2_drafted" for e in store.events(run_id))  # streamed before it was stored
        assert lm.held == 1
        lm.open()
        wait_r2(api, run_id, lambda s: _state(s) == "finished")
