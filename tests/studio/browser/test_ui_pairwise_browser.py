"""Issue 26 in headless Chromium: two people (two browser contexts, logged in as ann and ben) judge
a pairwise queue of 3 drafts (3 pairs, overlap 2) with the keyboard alone (← first is better, →
second, t tie; the legend on screen is the pairwise keymap), then the Ranking sub-tab shows the
Bradley-Terry table (the core's order and figures) and its chart. Screenshot:
tests/artifacts/judging-pairwise*.png."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_ui_judging_api import PEOPLE, judge_script, served, six_drafts
from ui_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, WAIT_MS, studio_app
from test_ui_judging import _item, _open, _pick, _stamp

from core.judging import pairwise as pw
from core.judging import queue as jq
from core.judging.ranking import ranking
from core.store import open_store

pytestmark = pytest.mark.ui
NEEDS_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="needs Debian's chromium (apt-get install -y chromium)")
MARK = re.compile(r"draft-(\d)")
QUALITY = {"traj:1": 3, "traj:2": 2, "traj:3": 1}  # the people prefer the lower id


@NEEDS_CHROMIUM
def test_two_people_judge_pairs_by_keyboard_then_see_the_ranking(tmp_path):
    from playwright.sync_api import sync_playwright

    store = open_store(tmp_path / "s.db")
    six_drafts(store)
    pw.create_pairwise_queue(store, "duel", "Which is better?", overlap=2, seed=3, created_by="lead")
    pw.add_pairs(store, "duel", pw.all_pairs(list(QUALITY)))
    os.makedirs(ARTIFACTS, exist_ok=True)
    with served(studio_app(judge_script(tmp_path), store=store)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = {}
            for who in ("ann", "ben"):
                _, page = _open(browser, url, who)
                _pick(page, "judge-queue", "duel")
                page.click("#judge-next")
                page.wait_for_selector("#judge-task [data-pair]", timeout=WAIT_MS)
                assert page.is_visible("#judge-pair-legend") and not page.is_visible("#judge-legend")
                pages[who] = page
            pages["ann"].screenshot(path=os.path.join(ARTIFACTS, "judging-pairwise.png"), full_page=True)
            done = 0
            for _ in range(3):
                for who, page in pages.items():
                    item = _item(page)
                    assert item
                    assert page.evaluate("() => window.pwned") is None  # the drafts' markup stayed text
                    left = page.inner_text("#judge-task .jd-pair > div:first-child")
                    first = "traj:%d" % (int(MARK.search(left).group(1)) + 1)  # six_drafts' draft-N is traj:N+1
                    it = jq.get_item(store, int(item))
                    other = it["ref_b"] if first == it["ref_a"] else it["ref_a"]
                    assert first in (it["ref_a"], it["ref_b"]) and first not in page.inner_text("#judge-task")
                    key = ("t" if who == "ben" and {first, other} == {"traj:2", "traj:3"}
                           else "ArrowLeft" if QUALITY[first] > QUALITY[other] else "ArrowRight")
                    before = _stamp(page)
                    page.keyboard.press(key)
                    page.wait_for_function(f"() => document.querySelector('#judge-task [data-pk-stamp]')"
                                           f".dataset.pkStamp !== '{before}'", timeout=WAIT_MS)
                    done += 1
            assert done == 6 and all(not _item(p) for p in pages.values())
            js = jq.queue_judgments(store, "duel")
            assert len(js) == 6 and {j["annotator"] for j in js} == {"ann", "ben"}
            its = {i["id"]: i for i in jq.items(store, "duel")}
            for j in js:  # every choice is the one the key meant, in the item's own terms
                a, b = its[j["item_id"]]["ref_a"], its[j["item_id"]]["ref_b"]
                want = "tie" if j["annotator"] == "ben" and {a, b} == {"traj:2", "traj:3"} else \
                    ("a" if QUALITY[a] > QUALITY[b] else "b")
                assert j["prefer"] == want, (j, a, b)
            page = pages["ben"]
            page.get_by_role("tab", name="Ranking").click()
            _pick(page, "ranking-queue", "duel")
            page.click("#ranking-show")
            page.wait_for_selector("#ranking-report table", timeout=WAIT_MS)
            page.wait_for_selector("#ranking-plot .main-svg", timeout=WAIT_MS)
            core = ranking(store, "duel")
            rows = page.evaluate("() => [...document.querySelectorAll('#ranking-report tbody tr')]"
                                 ".map(r => [...r.cells].map(c => c.innerText))")
            assert [r[1] for r in rows] == [r["key"] for r in core["rows"]] == ["traj:1", "traj:2", "traj:3"]
            assert [r[2] for r in rows] == [f"{r['strength']:+.2f}" for r in core["rows"]]
            page.screenshot(path=os.path.join(ARTIFACTS, "judging-pairwise-ranking.png"), full_page=True)
        finally:
            browser.close()
    store.close()
