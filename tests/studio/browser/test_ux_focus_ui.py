"""In a served studio: Review's focus mode through gradio_client (decisions made
by the focus handlers land in the store and show in the table's listing) and in headless Chromium
(the keys a, r, 3, j, n and Esc act on the page; the store and the page agree; typing "a" in the
note box accepts nothing; the progress line follows; a hostile trajectory's markup stays text; the
Review queue's headers read whole at 1000 px)."""
from __future__ import annotations

from pathlib import Path

import pytest
from library_fixtures import add_reer, filled_store
from ui_helpers import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, client, launched, needs_chromium, studio_app

from core.store import open_store

pytestmark = pytest.mark.ui
OPEN = ["any", "all", "", "", "", "", "any", "", "", "", ""]  # the Review filters, all open
NEEDS_CHROMIUM = needs_chromium


@pytest.fixture
def seeded(tmp_path):
    store = open_store(tmp_path / "s.db")
    hostile = add_reer(store, "Hostile <b>query</b> <script>window.pwned=1</script>",
                       "<script>window.pwned=2</script>\n\n<img src=x onerror=\"window.pwned=3\">",
                       "answer <img src=x onerror=\"window.pwned=4\">")
    ids = filled_store(store)  # reer[0], reer[1], r2 accepted; reer[2] pending
    ids["hostile"] = hostile
    ids["more"] = [add_reer(store, f"Prompt {i}: write about fog.", f"Thinking {i}.\n\nMore.", f"Answer {i}.")
                   for i in range(3)]
    yield store, ids
    store.close()


def test_focus_decisions_through_the_api_show_in_the_table(seeded):
    store, ids = seeded
    first, second = ids["hostile"], ids["reer"][2]
    with launched(studio_app("scripted:", store=store)) as url:
        c = client(url)
        opened = c.predict(None, *OPEN, api_name="/focus_open")
        assert first in opened  # the focus id: the first pending trajectory
        c.predict(first, "", *OPEN, api_name="/focus_accept")
        c.predict(second, "off topic", *OPEN, api_name="/focus_reject")
        listing = c.predict(*OPEN, api_name="/review_list")
    assert store.get_trajectory(first)["status"] == "accepted"
    assert store.get_trajectory(second)["status"] == "rejected"
    table = listing[0]
    status = {row[0]: row[1] for row in table["data"]}
    assert status[first] == "accepted" and status[second] == "rejected"


SPLIT_OR_CLIPPED = """() => { const out = []; for (const th of document.querySelectorAll('#review-table th')) {
  const span = th.querySelector('.header-content span'); if (!span || !span.textContent.trim()) continue;
  if (span.scrollWidth > th.clientWidth + 1) out.push('clipped: ' + span.textContent.trim());
  const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT); let n;
  while ((n = walker.nextNode())) { const t = n.textContent; let i = 0;
    for (const w of t.split(/(\\s+)/)) { if (w.trim().length > 1) { const r = document.createRange();
      r.setStart(n, i); r.setEnd(n, i + w.length);
      if (new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1) out.push('split: ' + w); }
      i += w.length; } } }
  for (const td of document.querySelectorAll('#review-table tbody tr:first-child td')) {
    const s = td.querySelector('span'); if (s && s.textContent.trim() && /^[a-z]+$/.test(s.textContent.trim())) {
      const r = document.createRange(); r.selectNodeContents(s);
      if (new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1) out.push('cell: ' + s.textContent); } }
  return out; }"""  # header words split over lines or cut off, and one-word cells ("pending") split


def _progress(page) -> dict:
    return page.evaluate("() => ({...document.querySelector('#focus-progress .fx-progress').dataset, "
                         "text: document.querySelector('#focus-progress .fx-count').textContent})")


def _wait_stamp(page, old: str):
    page.wait_for_function(f"() => document.querySelector('#focus-progress .fx-progress').dataset.pkStamp !== '{old}'",
                           timeout=WAIT_MS)


@NEEDS_CHROMIUM
def test_keys_decide_in_the_page_and_the_store_agrees(seeded):
    from playwright.sync_api import sync_playwright

    store, ids = seeded
    pend = [ids["hostile"], ids["reer"][2], *ids["more"]]  # the pending ones, in queue order
    with launched(studio_app("scripted:", store=store)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url + "?tab=review", wait_until="domcontentloaded")
            page.wait_for_selector("#review-count .rv-count", timeout=WAIT_MS)
            page.wait_for_function("() => document.querySelectorAll('#review-table tbody td').length > 10")
            assert page.evaluate(SPLIT_OR_CLIPPED) == []  # the queue reads at 1000 px

            page.click("#review-focus")
            page.wait_for_selector("#focus-record .fx-record", timeout=WAIT_MS)
            assert page.is_visible(".pk-legend") and not page.is_visible("#review-table")
            prog = _progress(page)
            assert prog["id"] == str(pend[0]) and prog["text"] == "1 of 8 · 3 accepted · 0 rejected · 5 to go"
            # the hostile trajectory is on screen as text: no element, no script ran
            assert page.evaluate("() => document.querySelector('#focus-record img, #focus-record script')") is None
            assert "<script>window.pwned=2</script>" in page.inner_text("#focus-record")
            assert page.evaluate("() => window.pwned") is None

            # a then r at once: keys.js waits for the redraw, so r rejects the second, not the first
            page.keyboard.press("a")
            page.keyboard.press("r")
            page.wait_for_function("() => document.querySelector('#focus-progress .fx-progress').dataset.rejected === '1'",
                                   timeout=WAIT_MS)
            assert store.get_trajectory(pend[0])["status"] == "accepted"
            assert store.get_trajectory(pend[1])["status"] == "rejected"
            prog = _progress(page)
            assert prog["id"] == str(pend[2]) and prog["text"] == "6 of 8 · 4 accepted · 1 rejected · 3 to go"

            before_rate = _progress(page)["pkStamp"]
            page.keyboard.press("3")
            page.wait_for_function("() => document.querySelector('#focus-rating input[value=\"3\"]').checked",
                                   timeout=WAIT_MS)
            _wait_stamp(page, before_rate)  # the rating's redraw has landed (the radio ticks before the server answers)
            assert store.get_trajectory(pend[2])["rating"] == 3 and _progress(page)["id"] == str(pend[2])

            stamp = _progress(page)["pkStamp"]
            page.keyboard.press("j")
            _wait_stamp(page, stamp)
            assert _progress(page)["id"] == str(pend[3])

            # typing in the note box is typing: "a", "r", "j", "3" do nothing
            page.keyboard.press("n")
            assert page.evaluate("() => document.activeElement.closest('#focus-note') !== null")
            page.keyboard.type("a rj3 k")
            page.wait_for_timeout(600)
            assert store.get_trajectory(pend[3])["status"] == "pending" and _progress(page)["id"] == str(pend[3])
            assert page.input_value("#focus-note input, #focus-note textarea") == "a rj3 k"
            stamp = _progress(page)["pkStamp"]
            page.keyboard.press("Enter")  # saves the note, stays
            _wait_stamp(page, stamp)
            assert store.get_trajectory(pend[3])["notes"] == "a rj3 k"

            # Esc leaves the box, a second Esc leaves the mode; the table shows the same decisions
            page.keyboard.press("Escape")
            page.keyboard.press("Escape")
            page.wait_for_selector("#review-table", state="visible", timeout=WAIT_MS)
            page.wait_for_function("() => document.querySelector('#review-count').textContent.includes("
                                   "'4 accepted, 1 rejected')", timeout=WAIT_MS)
            assert "rejected" in page.inner_text("#review-table")
            assert page.input_value("#review-id input") == str(pend[3])  # focus mode's record is open

            # a reload reads the store: the same decisions
            page.reload(wait_until="domcontentloaded")
            page.wait_for_selector("#review-count .rv-count", timeout=WAIT_MS)
            page.wait_for_function("() => document.querySelectorAll('#review-table tbody td').length > 10")
            count = page.inner_text("#review-count")
            assert "3 pending, 4 accepted, 1 rejected" in count, count
            assert [store.get_trajectory(t)["status"] for t in pend] == [
                "accepted", "rejected", "pending", "pending", "pending"]
            assert page.evaluate("() => window.pwned") is None
        finally:
            browser.close()
