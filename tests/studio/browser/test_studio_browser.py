"""The studio in headless Chromium at 1280x800 on the built-in model: open a sample from the
Library, run a small REER search, watch the plot gain points, reload and find the same run,
look at the heat maps, accept the trajectory. Screenshots land in tests/artifacts/ (studio-*.png);
the time from Run to the first plotted point is printed."""
from __future__ import annotations

import os
import re
import time

import pytest
from ui_helpers import ARTIFACTS, WAIT_MS, browser_page, launched, needs_chromium, studio_app

pytestmark = [pytest.mark.ui, pytest.mark.model,
              needs_chromium]

POINTS_JS = """() => { const p = document.querySelector('#reer-plot .js-plotly-plot');
  if (!p || !p.data) return 0; return p.data.reduce((n, t) => n + ((t.x || []).length), 0); }"""


def _shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    time.sleep(0.4)  # let progress overlays fade before the picture
    page.screenshot(path=os.path.join(ARTIFACTS, f"studio-{name}.png"))


def _fill(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


@pytest.fixture(scope="module")
def served(builtin_lm, tmp_path_factory):
    from core.store import open_store
    from studio.app import import_samples_if_empty

    store = open_store(tmp_path_factory.mktemp("studio") / "studio.db")
    assert import_samples_if_empty(store) > 0
    app = studio_app(builtin_lm, store, name="smollm2-135m")  # the real model, end to end
    with launched(app) as url:
        yield url, store
    store.close()


def test_browser_library_to_reer_run_reload_accept(served):
    url, store = served
    with browser_page(url) as page:
        page.wait_for_selector("#library-table", timeout=WAIT_MS)
        _shot(page, "library")
        # open the story sample (the lighthouse keeper) from the table, then send it to the REER page
        page.locator("#library-table [data-testid=\"cell-1-2\"]").click()
        page.wait_for_function("() => (document.querySelector('#library-query textarea') || {}).value?.length > 20",
                               timeout=WAIT_MS)
        pid = page.input_value("#library-id input")
        assert pid and store.get_prompt(pid)
        page.click("#library-to-reer")
        page.wait_for_function("id => (document.querySelector('#reer-prompt input') || {}).value?.startsWith(id)",
                               arg=pid, timeout=WAIT_MS)
        page.wait_for_selector("#reer-plot .main-svg", timeout=WAIT_MS)  # plotly.js loaded before Run
        # tiny budgets for a CPU test; the labels show the real defaults
        page.click("#reer-settings button")
        _fill(page, "reer-max-steps", 1)
        _fill(page, "reer-draft-tokens", 160)
        _fill(page, "reer-candidate-tokens", 48)
        assert "[1024]" in page.inner_text("#reer-settings")
        page.click("#reer-settings button")  # fold the settings away again
        t0 = time.time()
        page.click("#reer-run")
        page.wait_for_function(f"() => ({POINTS_JS})() >= 1", timeout=480_000)  # a loaded 2-core box is slow
        first_point = time.time() - t0
        print(f"\nRun to first plotted point: {first_point:.1f} s")
        run_id = page.get_attribute("#reer-status .reer-status", "data-run")
        assert run_id and store.get_run(run_id)["prompt_id"] == pid
        page.wait_for_selector("#reer-trajectory .seg", timeout=WAIT_MS)
        page.wait_for_selector("#reer-trajectory .seg.work", timeout=240_000)  # the segment under work
        _shot(page, "reer-running")
        page.wait_for_selector('#reer-status [data-state="finished"], #reer-status [data-state="stopped"]',
                               timeout=300_000)
        page.wait_for_function(f"() => ({POINTS_JS})() >= {1 + 1}", timeout=WAIT_MS)  # the path gained a point
        n_points = page.evaluate(POINTS_JS)
        events = store.events(run_id)
        scored = sum(e.kind == "candidate_scored" for e in events)
        decided = sum(e.kind == "segment_decided" for e in events)
        assert n_points == 1 + decided + scored  # initial + path + every scored candidate
        print(f"run {run_id[:8]}: {decided} step(s), {scored} scored candidate(s), {n_points} points; "
              f"total {time.time() - t0:.1f} s")
        _shot(page, "reer-finished")

        # a reload opens the same tab (it is in the address) and reattaches to the same run from the store
        assert page.url.endswith("?tab=reer")
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector('[role="tab"][aria-selected="true"]:has-text("REER")', timeout=WAIT_MS)
        page.wait_for_function("id => document.querySelector('#reer-status .reer-status')?.dataset.run === id",
                               arg=run_id, timeout=WAIT_MS)
        page.wait_for_function(f"() => ({POINTS_JS})() === {n_points}", timeout=WAIT_MS)
        status = page.inner_text("#reer-status")
        assert run_id[:8] in status
        from core.reer.jobs import run_record

        rec = run_record(store, run_id)  # the numbers core computed and stored for this run
        assert f"perplexity {rec['initial_ppl']:,.2f} → {rec['final_ppl']:,.2f}" in status, status

        # heat maps of the reference, initial vs current trajectory
        page.click("#reer-heat-btn")
        page.wait_for_selector("#reer-heat-current span.tok", timeout=WAIT_MS)
        assert page.locator("#reer-heat-initial span.tok").count() == page.locator("#reer-heat-current span.tok").count()
        page.locator("#reer-heat-row").scroll_into_view_if_needed()
        _shot(page, "reer-heatmap")

        page.click("#reer-accept")
        page.wait_for_selector('#reer-review [data-status="accepted"]', timeout=WAIT_MS)
        assert store.trajectory_for_run(run_id)["status"] == "accepted"
        page.evaluate("window.scrollTo(0, 0)")
        _shot(page, "reer-accepted")
