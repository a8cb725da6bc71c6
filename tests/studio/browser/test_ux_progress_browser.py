"""Live progress in headless Chromium at 1280x800 on the scripted model (each generation shows half
its text, then waits until the test releases it: tests/gated.py): after Run the REER page shows a progress line that changes while the
run goes, the draft appears token by token in the "writing now" box, the plot gains its first
point once the draft is scored, and Pause relabels its button "Pausing…" (disabled) until the
run has paused. The times from Run to the first progress line, the first streamed text and the
first plotted point are printed (no timing is asserted). Screenshot: tests/artifacts/studio-reer-progress.png."""
from __future__ import annotations

import os
import time

import pytest
from gated import GatedLM
from ui_helpers import ARTIFACTS, WAIT_MS, browser_page, launched, needs_chromium, studio_app

pytestmark = [pytest.mark.ui,
              needs_chromium]

POINTS_JS = """() => { const p = document.querySelector('#reer-plot .js-plotly-plot');
  if (!p || !p.data) return 0; return p.data.reduce((n, t) => n + ((t.x || []).length), 0); }"""
LINE_JS = "() => (document.querySelector('#reer-progress .run-progress .line') || {}).textContent || ''"
TEXT_JS = "() => (document.querySelector('#reer-writing .writing-now .w') || {}).textContent || ''"


@pytest.fixture
def served(tmp_path):
    from core.store import open_store

    store = open_store(tmp_path / "studio.db")
    store.add_prompt("Write a short note about a lighthouse keeper and the storm at sea.",
                     "The keeper climbed the stairs when the storm broke over the sea and lit the lamp. " * 3,
                     id="p-light", category="story_writing")
    lm = GatedLM()
    with launched(studio_app(lm, store, samples_path=None)) as url:
        yield url, store, lm
        lm.open()  # nothing left waiting
    store.close()


def test_browser_progress_line_and_streamed_text_while_a_run_goes(served):
    url, store, lm = served
    with browser_page(url) as page:
        page.wait_for_selector("#tab-library", timeout=WAIT_MS)
        page.get_by_role("tab", name="REER").click(timeout=WAIT_MS)
        page.wait_for_function("() => (document.querySelector('#reer-prompt input') || {}).value?.startsWith('p-light')",
                               timeout=WAIT_MS)
        page.wait_for_selector("#reer-plot .main-svg", timeout=WAIT_MS)
        t0 = time.time()
        page.click("#reer-run")
        page.wait_for_selector("#reer-progress .run-progress", timeout=WAIT_MS)
        t_line = time.time() - t0
        first = page.evaluate(LINE_JS)
        lm.wait_held(1)  # the draft, half written, stays on screen until released
        page.wait_for_function(f"() => ({TEXT_JS})().length > 10 && !({TEXT_JS})().includes('waiting for')",
                               timeout=WAIT_MS)
        t_text = time.time() - t0
        text = page.evaluate(TEXT_JS)
        # while the draft is held the line shows the tokens written so far; it stays put until released
        # (whether `first` was read before or after the half-written draft arrived depends on the load)
        page.wait_for_function("() => +(document.querySelector('#reer-progress .run-progress') || {dataset: {}})"
                               ".dataset.tokens > 0", timeout=WAIT_MS)
        held_line = page.evaluate(LINE_JS)
        assert "tokens" in held_line and held_line != "", held_line
        print(f"\nfirst progress line: {first!r}; while the draft is held: {held_line!r}")
        lm.release(1)  # the draft is written and scored; step 1's candidates are then held
        # the line moves on with the run (phase, tokens), and the text grows or moves on
        page.wait_for_function(f"line => ({LINE_JS})() !== line && ({LINE_JS})() !== ''", arg=held_line,
                               timeout=WAIT_MS)
        page.wait_for_function(f"t => ({TEXT_JS})() !== t", arg=text, timeout=WAIT_MS)
        page.wait_for_function(f"() => ({POINTS_JS})() >= 1", timeout=WAIT_MS)
        t_point = time.time() - t0
        run_id = page.get_attribute("#reer-status .reer-status", "data-run")
        drafted = next(e.t for e in store.events(run_id) if e.kind == "initial_draft")
        print(f"\nfirst point seen {time.time() - drafted:.2f} s after the draft was stored")
        # Pause while a step writes (held): the button says "Pausing…" and is disabled until the run has paused
        page.wait_for_function(f"() => ({LINE_JS})().includes('of segment')", timeout=WAIT_MS)
        assert lm.held == 1
        page.click("#reer-pause")
        page.wait_for_function("() => { const b = document.querySelector('#reer-pause');"
                               " return b && b.textContent.includes('Pausing') && b.disabled; }", timeout=WAIT_MS)
        page.wait_for_function("() => document.querySelector('#reer-progress').innerText"
                               ".includes('pausing after these candidates')", timeout=WAIT_MS)
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, "studio-reer-progress.png"))
        lm.release(1)  # the candidates are written and scored: the run pauses before deciding
        page.wait_for_selector('#reer-status [data-state="paused"]', timeout=WAIT_MS)
        page.wait_for_function("() => { const b = document.querySelector('#reer-pause');"
                               " return b && b.textContent.trim() === 'Pause' && !b.disabled; }", timeout=WAIT_MS)
        print(f"\nscripted (generations held until released), Chromium: Run -> first progress line {t_line:.2f} s, "
              f"-> first streamed text {t_text:.2f} s, -> first plotted point {t_point:.2f} s")


def test_browser_r2_progress_line_clears_when_the_run_waits_for_a_person(tmp_path):
    """The R2 page drew "starting: loading the model…" at Run and kept it under a run that was
    already waiting for the person's judgment (the page's memory of what it last drew was not
    updated by Run, so the timer thought nothing had changed)."""
    from core.store import open_store

    store = open_store(tmp_path / "studio.db")
    store.add_prompt("Write a haiku about rain on a tin roof.", "Rain on the tin roof.", id="p-rain")
    try:
        with launched(studio_app("scripted:delay=0.05", store, samples_path=None)) as url, browser_page(url) as page:
            page.wait_for_selector("#tab-library", timeout=WAIT_MS)
            page.get_by_role("tab", name="R2").click(timeout=WAIT_MS)
            page.wait_for_function("() => (document.querySelector('#r2-prompt input') || {}).value?.startsWith('p-rain')",
                                   timeout=WAIT_MS)
            time.sleep(2.5)  # the page's 1 s timer draws the idle page a few times first, as it does for a person
            page.click("#r2-run")
            page.wait_for_selector("#r2-judge-form .r2-ask", timeout=WAIT_MS)
            page.wait_for_function("() => !(document.querySelector('#r2-progress') || {}).textContent?.trim()",
                                   timeout=WAIT_MS)
            assert "waiting for you" in page.inner_text("#r2-status")
    finally:
        store.close()
