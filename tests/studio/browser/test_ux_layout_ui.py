"""The studio's layout in headless Chromium at 1440 px: the page sits in the middle of the window, a
dropdown's text stops before its arrow, and an empty HTML block (a status or progress line with
nothing to say yet) takes no room, so the REER page has no blank bands."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from ui_helpers import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, launched, needs_chromium, studio_app

pytestmark = [pytest.mark.ui, needs_chromium]

CENTRE = """() => { const r = document.querySelector('.gradio-container').getBoundingClientRect();
  return [r.left, document.documentElement.clientWidth - r.right]; }"""
ARROWS = """() => [...document.querySelectorAll('.wrap-inner')].filter(w => w.offsetParent).map(w => {
  const inp = w.querySelector('input'), icon = w.querySelector('.icon-wrap');
  if (!inp || !icon) return null;
  const r = inp.getBoundingClientRect(), pad = parseFloat(getComputedStyle(inp).paddingRight);
  return [w.closest('.block').id, r.right - pad - icon.getBoundingClientRect().left]; }).filter(Boolean)"""
EMPTY = """() => [...document.querySelectorAll('.block')].filter(b => b.offsetParent && b.querySelector(
  ':scope > .html-container > .prose:empty')).map(b => [b.id, b.getBoundingClientRect().height])"""


def test_page_centred_arrows_clear_and_no_blank_bands():
    from playwright.sync_api import sync_playwright
    with launched(studio_app("scripted:")) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url)
            page.get_by_role("tab", name="REER").click()
            page.wait_for_selector("#reer-runs", timeout=WAIT_MS)
            time.sleep(1.0)
            left, right = page.evaluate(CENTRE)
            assert abs(left - right) <= 2, f"page off-centre at 1440 px: {left:.0f} px left, {right:.0f} px right"
            overlaps = [(bid, d) for bid, d in page.evaluate(ARROWS) if d > 0.5]
            assert page.evaluate(ARROWS), "no dropdown measured"
            assert overlaps == [], f"dropdown text runs under its arrow by (px): {overlaps}"
            blank = [(bid, h) for bid, h in page.evaluate(EMPTY) if h > 0]
            assert blank == [], f"empty HTML blocks take room (id, px): {blank}"
        finally:
            browser.close()
