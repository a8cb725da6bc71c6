"""Headless Chromium (1280x800) on a scripted model whose rewrites wait at a gate the test
opens: the steering race (deliver 6) and the edit box (deliver 3).

The race: a run paused with two candidates awaiting a decision; the person picks segment 2, types
a replacement and presses "Rescore my edit" (the cards say at once that the candidates are stale),
then presses "← Accept candidate #" with 1. The result must be the candidate shown or a refusal in
words on the page, never a text the person never saw (the old page accepted a candidate written
after the edit). The edit box: picking a segment loads its text at once in the browser, typing
right after is never overwritten, typing not yet rescored is kept (with a note) when another
segment is picked, and text typed for one run is emptied when another prompt's run comes on screen."""
from __future__ import annotations

import time

import pytest
from test_studio_ui import gated_lm
from ui_helpers import WAIT_MS, browser_page, has_chromium, launched, studio_app


pytestmark = [pytest.mark.ui,
              pytest.mark.skipif(not has_chromium(), reason="/usr/bin/chromium is absent: apt-get install -y chromium")]

EDIT = "My own plan for this part: end on the letter, not the storm, and let the keeper read it twice."
CARDS_JS = "() => [...document.querySelectorAll('#reer-candidates .card')].map(c => c.className + '|' + c.innerText)"


def _until(check, what: str, limit_s: float = 60.0):
    end = time.monotonic() + limit_s
    while not (got := check()):
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.1)
    return got


@pytest.fixture
def served(tmp_path):
    from core.store import open_store

    store = open_store(tmp_path / "studio.db")
    store.add_prompt("Write a short note about a lighthouse keeper.", "The keeper read the letter twice. " * 12,
                     id="p-light", category="story_writing")
    lm = gated_lm()
    with launched(studio_app(lm, store, samples_path=None)) as url:
        yield url, store, lm
    store.close()


def _open_reer(page):
    page.wait_for_selector("#tab-library", timeout=WAIT_MS)
    page.get_by_role("tab", name="REER").click(timeout=WAIT_MS)
    page.wait_for_function("() => (document.querySelector('#reer-prompt input') || {}).value?.startsWith('p-light')",
                           timeout=WAIT_MS)


def _paused_with_candidates(page, store, lm) -> str:
    page.click("#reer-run")
    page.wait_for_selector("#reer-status .reer-status[data-run]", timeout=WAIT_MS)
    run_id = page.get_attribute("#reer-status .reer-status", "data-run")
    _until(lambda: any(e.kind == "segment_started" for e in store.events(run_id)), "step 1 started")
    page.click("#reer-pause")
    # the gate opens only once the server has the Pause: on a loaded machine the click can land after
    # step 1's candidates were written and decided, and the run would not stop where the test needs it
    page.wait_for_function("() => { const b = document.querySelector('#reer-pause');"
                           " return b && b.textContent.includes('Pausing') && b.disabled; }", timeout=WAIT_MS)
    lm.gate.set()
    page.wait_for_function("() => document.querySelectorAll('#reer-candidates .card.pending').length === 2",
                           timeout=WAIT_MS)
    page.wait_for_selector('#reer-status [data-state="paused"]', timeout=WAIT_MS)
    return run_id


def _pick_segment(page, n: int):
    page.fill("#reer-edit-seg input", str(n))  # an input event: the page loads the segment's text


def test_force_after_an_edit_is_the_shown_candidate_or_a_refusal_never_a_new_text(served):
    url, store, lm = served
    with browser_page(url) as page:
        _open_reer(page)
        run_id = _paused_with_candidates(page, store, lm)
        shown = [e.text for e in store.events(run_id) if e.kind == "candidate_generated"]
        assert "await your decision" in page.inner_text("#reer-status")
        _pick_segment(page, 2)
        page.fill("#reer-edit-text textarea", EDIT)
        page.click("#reer-edit-apply")
        # in the edit's own reply (studio/pages/reer.py do_edit, before the edit is scored): the cards are
        # stale, and the page says why
        page.wait_for_function("() => document.querySelectorAll('#reer-candidates .card.stale').length === 2",
                               timeout=WAIT_MS)
        assert "made these candidates stale" in page.inner_text("#reer-candidates")
        _until(lambda: any(e.kind == "segment_decided" and e.action == "edit" for e in store.events(run_id)),
               "the edit was scored")
        page.wait_for_function("() => (document.querySelector('#reer-status') || {}).innerText?.includes('stale')",
                               timeout=WAIT_MS)
        assert "await your decision" not in page.inner_text("#reer-status")
        # the old candidate's number: the shown candidate, or a refusal in words; never a new text
        page.fill("#reer-force-n input", "1")
        page.click("#reer-force")
        page.wait_for_function("() => document.body.innerText.includes('refused')"
                               " || document.body.innerText.includes('No candidates await')", timeout=WAIT_MS)
        time.sleep(2)  # anything the click set going has time to land
        events = store.events(run_id)
        forced = [e for e in events if e.kind == "segment_decided" and e.action == "force"]
        assert all(e.text in shown for e in forced), "a candidate the person never saw was accepted"
        assert not forced
        assert [e.text for e in events if e.kind == "candidate_generated"] == shown  # none written behind their back
        assert store.get_run(run_id)["status"] == "paused"


def test_the_edit_box_holds_only_what_the_person_typed_for_the_run_on_screen(served):
    url, store, lm = served
    with browser_page(url) as page:
        _open_reer(page)
        run_id = _paused_with_candidates(page, store, lm)
        segs = list(store.events(run_id)[1].segments)
        box = "#reer-edit-text textarea"
        _pick_segment(page, 3)
        assert page.input_value(box) == segs[2]  # loaded at once, in the browser
        page.fill(box, "")
        _pick_segment(page, 2)
        page.fill(box, EDIT)  # typed right after picking the segment
        time.sleep(2)  # a late reply would land meanwhile
        assert page.input_value(box) == EDIT
        _pick_segment(page, 1)  # typing not yet rescored is kept, and the page says so
        assert page.input_value(box) == EDIT
        assert "Kept your text in the box" in page.inner_text("#reer-edit-note")
        # Rescore of a segment's unchanged text answers at once, under the box
        page.fill(box, segs[0])
        _pick_segment(page, 1)
        page.click("#reer-edit-apply")
        page.wait_for_function("() => document.querySelector('#reer-edit-note').innerText.includes('the same as')",
                               timeout=WAIT_MS)
        # another prompt's run on screen: the box is emptied, with a note; nothing edits the new run
        page.fill(box, EDIT)
        store.add_prompt("Write a haiku about rain.", "Soft rain on tin roofs.", id="p-rain", category="poem")
        page.click("#reer-prompt input")
        page.keyboard.type("p-rain")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#reer-edit-text textarea').value === ''",
                               timeout=WAIT_MS)
        assert "for the run shown before" in page.inner_text("#reer-edit-note")
