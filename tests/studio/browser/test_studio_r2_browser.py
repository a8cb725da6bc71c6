"""The R2 page in headless Chromium at 1280x800: judge one R2 round as a person in the browser.

The writer is the scripted double of tests/r2_fakes.py (through the app's get_lm), so the
browser test is about the page: the judgment form appears when the run waits, the person's
scores are stored as a human judgment, a reload reattaches to the run waiting for its next
judgment, the person edits the writer's reflection before the revision uses it, the plot gains
the judged points, the trajectory is accepted. Screenshots land in
tests/artifacts/ (studio-r2-*.png, studio-train.png)."""
from __future__ import annotations

import os
import time

import pytest
from r2_fakes import FakeLM
from ui_helpers import ARTIFACTS, WAIT_MS, browser_page, launched, needs_chromium, studio_app

pytestmark = [pytest.mark.ui,
              needs_chromium]

OVERALL_JS = """() => { const p = document.querySelector('#r2-plot .js-plotly-plot');
  if (!p || !p.data) return []; const t = p.data.find(t => t.name === 'overall'); return t ? Array.from(t.y) : []; }"""


def _shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    time.sleep(0.4)
    page.screenshot(path=os.path.join(ARTIFACTS, f"studio-{name}.png"))


def _num(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def _judge(page, overall, critique, scores=()):
    for i, s in enumerate(scores, 1):
        _num(page, f"r2-judge-score-{i}", s)
    _num(page, "r2-judge-overall", overall)
    page.fill("#r2-judge-critique textarea", critique)
    page.click("#r2-judge-submit")


@pytest.fixture
def served(tmp_path):
    from core.store import open_store

    store = open_store(tmp_path / "studio.db")
    store.add_prompt("Write a short story about a lighthouse keeper who finds a letter.",
                     "The keeper read the letter twice.", id="lighthouse", category="story_writing")
    lm = FakeLM(scores={0: 4, 1: 6, 2: 8})
    app = studio_app(lm, store, name="scripted-writer", samples_path=None)
    with launched(app) as url:
        yield url, store
    store.close()


def test_browser_r2_judge_one_round_as_a_person(served):
    url, store = served
    with browser_page(url) as page:
        page.wait_for_selector("#tab-library", timeout=WAIT_MS)
        page.get_by_role("tab", name="R2").click(timeout=WAIT_MS)
        page.wait_for_function("() => (document.querySelector('#r2-prompt input') || {}).value?.startsWith('lighthouse')",
                               timeout=WAIT_MS)
        page.wait_for_selector("#r2-plot .main-svg", timeout=WAIT_MS)
        _shot(page, "r2-idle")
        assert page.locator("#r2-judge-mode input[value=human]").is_checked()  # a person judges by default
        t0 = time.time()
        page.click("#r2-run")
        page.wait_for_selector('#r2-status [data-state="waiting"][data-pending="0"]', timeout=WAIT_MS)
        page.wait_for_selector("#r2-judge-form .r2-ask", timeout=WAIT_MS)
        print(f"\nRun to the first judgment request: {time.time() - t0:.1f} s")
        run_id = page.get_attribute("#r2-status .r2-status", "data-run")
        assert "Draft number 0" in page.inner_text("#r2-judge-text")
        assert page.locator("#r2-judge-score-5").is_visible() and not page.locator("#r2-judge-score-6").is_visible()
        _shot(page, "r2-judge-form")

        _judge(page, 5, "The ending is rushed <b>& flat</b>: let the boat arrive.", scores=(6, 4, 5))
        # the writer's reflection waits for the person: edit it, then the revision is written from it
        page.wait_for_selector('#r2-status [data-reflection="1"]', timeout=WAIT_MS)
        page.wait_for_selector("#r2-reflection-form textarea", timeout=WAIT_MS)
        assert page.input_value("#r2-reflection-text textarea").startswith("Rereading my draft,")
        mine = "Rereading my draft, the boat never arrives, so the letter means nothing; I will land the boat."
        page.fill("#r2-reflection-text textarea", mine)
        _shot(page, "r2-reflection")
        page.click("#r2-reflection-submit")
        page.wait_for_selector('#r2-status [data-pending="1"]', timeout=WAIT_MS)
        assert [e.text for e in store.events(run_id) if e.kind == "r2_reflected"][-1] == mine
        j = [e for e in store.events(run_id) if e.kind == "judgment_given"][0].judgment
        assert j["judge"] == "human" and j["overall"] == 5 and list(j["scores"].values())[:4] == [6, 4, 5, None]
        assert "<b>& flat</b>" in page.inner_text("#r2-rounds")  # shown as text, not markup
        assert page.locator("#r2-rounds b:text('& flat')").count() == 0

        # a reload reattaches to the run, still waiting for the revision's judgment
        page.reload(wait_until="domcontentloaded")
        page.get_by_role("tab", name="R2").click(timeout=WAIT_MS)
        page.wait_for_selector(f'#r2-status [data-run="{run_id}"][data-pending="1"]', timeout=WAIT_MS)
        page.wait_for_selector('#r2-judge-form .r2-ask[data-version="1"]', timeout=WAIT_MS)
        assert "Rereading my draft" in page.inner_text("#r2-rounds")
        page.wait_for_function(f"() => ({OVERALL_JS})().length === 1", timeout=WAIT_MS)
        _shot(page, "r2-reloaded")

        _judge(page, 8, "Much better: the letter now matters to the ending.")
        page.wait_for_selector('#r2-status [data-state="finished"]', timeout=WAIT_MS)
        page.wait_for_function(f"() => ({OVERALL_JS})().join() === '5,8'", timeout=WAIT_MS)
        assert not page.locator("#r2-judge-form").is_visible()
        page.click("#r2-accept")
        page.wait_for_selector('#r2-review [data-status="accepted"]', timeout=WAIT_MS)
        assert store.trajectory_for_run(run_id)["status"] == "accepted"
        page.evaluate("window.scrollTo(0, 0)")
        _shot(page, "r2-finished")

        page.get_by_role("tab", name="Train").click()
        page.wait_for_selector("#train-plot .main-svg", timeout=WAIT_MS)
        _shot(page, "train")
