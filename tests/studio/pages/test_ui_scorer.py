"""The REER page's Scorer menu, launched for real and driven through gradio_client: the menu
sits under the model, offers the same allowed specs, a run with another scorer records it and the
status line names both ("writer X · scorer Y"); a spec the app does not allow is refused. The last
test picks the scorer by hand in headless Chromium."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest
from test_studio_ui import _prompt, _run_id, _settings, _state, _wait, loop_script
from ui_helpers import ARTIFACTS, browser_page, client, has_chromium, launched, studio_app

from core.models.shelf import ModelPolicy
from core.store import open_store

pytestmark = [pytest.mark.ui]
STORE_FILE = "studio.db"  # the `store` fixture (tests/conftest.py) opens a file of this name: the studio shares it
SCORER = "scripted:seed=9"  # another allowed model: the scorer


@pytest.fixture
def served(store, tmp_path):
    spec = loop_script(tmp_path)
    app = studio_app(spec, store, policy=ModelPolicy((spec, SCORER)))
    with launched(app) as url:
        yield url, spec


def _component(url: str, elem_id: str) -> dict:
    with urllib.request.urlopen(url + "config", timeout=30) as r:
        config = json.load(r)
    found = [c for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert found, f"no component #{elem_id} on the page"
    return found[0]["props"]


def test_the_scorer_menu_runs_with_another_scorer_and_the_status_names_both(served, store):
    url, spec = served
    menu = _component(url, "reer-scorer")
    values = [c[1] for c in menu["choices"]]
    assert values == ["", spec, SCORER]  # "the model above", then the allowed specs, as the model menu has
    assert menu["label"].startswith("Scorer")
    api = client(url)
    pid = _prompt(store)
    _, status, *_ = api.predict(pid, *_settings(), SCORER, api_name="/reer_run")
    run_id = _run_id(status)
    view = _wait(api, run_id, lambda s: _state(s) == "finished")
    assert f"writer {spec} · scorer {SCORER}" in view[0]
    run = store.get_run(run_id)
    assert run["model"] == spec and run["settings"]["scorer"] == SCORER
    started = store.events(run_id)[0]
    assert started.scorer == SCORER
    # the same spec as the model is a one-model run: nothing extra recorded, the status as before
    _, status, *_ = api.predict(pid, *_settings(), spec, api_name="/reer_run")
    other = _run_id(status)
    assert "scorer" not in store.get_run(other)["settings"]
    view = _wait(api, other, lambda s: _state(s) == "finished")
    assert " · scorer " not in view[0] and spec in view[0]
    # a spec the app was not started with is refused, like the model menu's
    runs = len(store.list_runs())
    try:
        text = json.dumps(api.predict(pid, *_settings(), "/elsewhere/model", api_name="/reer_run"))
    except Exception as exc:  # noqa: BLE001  (gradio_client raises AppError with the server's message)
        text = str(exc)
    assert "/elsewhere/model" in text and ("not in the list of choices" in text or "not allowed" in text), text
    assert len(store.list_runs()) == runs


@pytest.mark.skipif(not has_chromium(), reason="/usr/bin/chromium is absent: apt-get install -y chromium")
def test_browser_picks_a_scorer_and_the_status_line_names_writer_and_scorer(tmp_path):
    """In headless Chromium: the Scorer menu under the model, picked by hand; Run; the status line
    reads "writer X · scorer Y". Screenshot: tests/artifacts/studio-reer-scorer.png."""
    store = open_store(tmp_path / "browser.db")
    store.add_prompt("Write a short note about a lighthouse keeper and the storm at sea.",
                     "The keeper climbed the stairs when the storm broke over the sea and lit the lamp. " * 3,
                     id="p-light", category="story_writing")
    app = studio_app("scripted:", store, policy=ModelPolicy(("scripted:", SCORER)), samples_path=None)
    try:
        with launched(app) as url, browser_page(url) as page:
            page.wait_for_selector("#tab-library", timeout=60_000)
            page.get_by_role("tab", name="REER").click(timeout=30_000)
            page.wait_for_function("() => (document.querySelector('#reer-prompt input') || {}).value"
                                   "?.startsWith('p-light')", timeout=60_000)
            page.click("#reer-settings button")
            page.click("#reer-scorer input")
            page.locator('[role="option"]', has_text=SCORER).first.click(timeout=15_000)
            page.wait_for_function("v => document.querySelector('#reer-scorer input').value === v", arg=SCORER,
                                   timeout=15_000)
            page.click("#reer-run")
            page.wait_for_selector('#reer-status [data-state="finished"]', timeout=120_000)
            status = page.inner_text("#reer-status")
            assert f"writer scripted: · scorer {SCORER}" in status, status
            run_id = page.get_attribute("#reer-status .reer-status", "data-run")
            assert store.get_run(run_id)["settings"]["scorer"] == SCORER
            os.makedirs(ARTIFACTS, exist_ok=True)
            page.screenshot(path=os.path.join(ARTIFACTS, "studio-reer-scorer.png"))
    finally:
        store.close()
