"""In a 1000 px window no page of the studio is wider than the window, and the
app keeps one width while the Judge sub-tabs switch (it jumped 1216 → 688 px). Headless Chromium on
the scripted model, with what made pages grow: long queries that share their opening (as HelloBench's
do), a finished REER run, an R2 run waiting for a person's judgment, trajectories in Review."""
from __future__ import annotations

import time

import pytest
from ui_helpers import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, has_chromium, launched, studio_app

pytestmark = [pytest.mark.ui,
              pytest.mark.skipif(not has_chromium(), reason="/usr/bin/chromium is absent: apt-get install -y chromium")]

WIDTH = 1000
TABS = ["Library", "REER", "R2", "Review", "Judge", "Export", "Train", "Score"]
JUDGE_SUBTABS = ["Queues", "Agreement", "Calibration", "Judge"]
OPENING = ("You should write a well-structured, argumentative essay on the following topic and additional "
           "information, with an introduction, three body paragraphs and a conclusion.\n[Topic]: ")
WIDE_JS = """() => ({page: document.documentElement.scrollWidth,
  app: Math.round(document.querySelector('.gradio-container').getBoundingClientRect().width)})"""


@pytest.fixture
def served(tmp_path):
    from core.models.load import load_lm
    from core.r2.config import R2Config
    from core.r2.jobs import r2_job
    from core.reer.config import ReerConfig
    from core.reer.jobs import reer_job
    from core.store import open_store

    store = open_store(tmp_path / "studio.db")
    lm = load_lm("scripted:judge=6")
    topics = ["Should dogs be allowed inside restaurants and stores?", "Is homework worth the time it takes?",
              "Should cities ban cars from their centres on weekends?"]
    ids = [store.add_prompt(OPENING + t + " Consider the people it helps and the people it costs.",
                            "The essay answers the question plainly. " * 30, id=f"long_generation_task_{i:03d}",
                            category="argumentative_writing")[0] for i, t in enumerate(topics)]
    list(reer_job(store, lm, ids[0], ReerConfig(candidates=2, max_steps=2, draft_max_new_tokens=120,
                                                candidate_max_new_tokens=60)))
    list(r2_job(store, lm, None, ids[1], R2Config(max_rounds=1, judge_mode="human", threshold=9)))
    with launched(studio_app("scripted:judge=6", store, samples_path=None)) as url:
        yield url
    store.close()


def test_no_page_is_wider_than_a_1000px_window(served):
    from playwright.sync_api import sync_playwright

    too_wide, widths = [], {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(served, wait_until="domcontentloaded")
            page.wait_for_selector("#tab-library", timeout=WAIT_MS)
            visits = [(t, None) for t in TABS] + [("Judge", s) for s in JUDGE_SUBTABS]
            for tab, sub in visits:
                page.locator("button[role=tab]").filter(has_text=tab).first.click()
                if sub:
                    page.locator("#tab-judge button[role=tab]").filter(has_text=sub).first.click()
                time.sleep(0.8)  # the tab's first redraw (tables, plots) lands
                w = page.evaluate(WIDE_JS)
                name = f"{tab}/{sub}" if sub else tab
                widths[name] = w["app"]
                if w["page"] > WIDTH:
                    too_wide.append(f"{name}: {w['page']} px")
        finally:
            browser.close()
    assert not too_wide, f"pages wider than the {WIDTH} px window: {too_wide}"
    judge = {widths[f"Judge/{s}"] for s in JUDGE_SUBTABS}
    assert len(judge) == 1, f"the app's width changes with the Judge sub-tab: {widths}"
