"""Judging as a team in headless Chromium: three annotators (three browser contexts, logged in as
ann, ben and cat through Gradio's login) judge a queue of 6 drafts with overlap 2 by keyboard alone
(1–5 score the marked criterion and mark the next, ↑ marks the previous, Enter submits), none
of them shown another's scores of an item before submitting their own; the Agreement tab shows
Krippendorff's alpha per criterion equal to core.judging.agreement's for the stored judgments;
the Calibration tab calibrates a scripted model judge and shows its correlation (the core's).
Screenshots of the three views at 1280 px go to tests/artifacts/judging-*.png."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_ui_judging_api import JUDGE_SCORES, PEOPLE, judge_script, served, six_drafts
from ui_helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, VIEWPORT, WAIT_MS, needs_chromium, studio_app

from core.judging import agreement as agr
from core.judging import calibration as cal
from core.judging import queue as jq
from core.annotators import model_name
from core.store import open_store

pytestmark = pytest.mark.ui
NEEDS_CHROMIUM = needs_chromium


def keys_for(person: str, item: int) -> tuple[list[str], tuple[int, int]]:
    """The keys a person presses on an item, and the (clear, vivid) scores they give: ann and cat type
    the two scores in order; ben types vivid's first by going back with ↑."""
    a, b = 1 + (item + {"ann": 0, "ben": 1, "cat": 2}[person]) % 5, 1 + (2 * item) % 5
    if person == "ben":
        return ["Tab", str(b), "ArrowUp", str(a), "Enter"], (a, b)
    return [str(a), str(b), "Enter"], (a, b)


def _open(browser, url: str, who: str):
    ctx = browser.new_context(viewport=VIEWPORT)
    r = ctx.request.post(url + "login", form={"username": who, "password": dict(PEOPLE)[who]})
    assert r.status == 200, r.status
    page = ctx.new_page()
    page.goto(url + "?tab=judge", wait_until="domcontentloaded")
    page.wait_for_selector("#judge-queue input", timeout=WAIT_MS)
    return ctx, page


def _pick(page, elem_id: str, value: str):
    page.click(f"#{elem_id} input")
    page.fill(f"#{elem_id} input", value)
    page.keyboard.press("Enter")


def _stamp(page) -> str:
    return page.get_attribute("#judge-task [data-pk-stamp]", "data-pk-stamp")


def _item(page) -> str:
    return page.get_attribute("#judge-task [data-pk-stamp]", "data-item")


@NEEDS_CHROMIUM
def test_three_people_judge_by_keyboard_then_agreement_and_calibration(tmp_path):
    from playwright.sync_api import sync_playwright

    store = open_store(tmp_path / "s.db")
    six_drafts(store)
    jq.create_queue(store, "week-1", ["Does it answer the task?", "Is it vivid?"], overlap=2, low=1, high=5,
                    created_by="lead")
    jq.add_items(store, "week-1", [f"traj:{i}" for i in range(1, 7)], added_by="lead")
    spec = judge_script(tmp_path)
    os.makedirs(ARTIFACTS, exist_ok=True)
    with served(studio_app(spec, store=store)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = {}
            for who, _ in PEOPLE:
                _, page = _open(browser, url, who)
                _pick(page, "judge-queue", "week-1")
                page.click("#judge-next")
                page.wait_for_function("() => document.querySelector('#judge-me')", timeout=WAIT_MS)
                assert page.inner_text("#judge-me") == who
                pages[who] = page
            expect = {}
            shot = False
            for _ in range(6):
                progressed = False
                for who, page in pages.items():
                    page.wait_for_function("() => { const t = document.querySelector('#judge-task [data-pk-stamp]');"
                                           " return t && t.dataset.pkStamp; }", timeout=WAIT_MS)
                    item = _item(page)
                    if not item:
                        continue
                    progressed = True
                    # nothing on the page shows another person's scores of the open item
                    after = page.inner_text("#judge-after")
                    assert f"item #{item} " not in after
                    others = [o for o, _ in PEOPLE if o != who]
                    assert not any(o in page.inner_text("#judge-task") for o in others)
                    assert page.evaluate("() => window.pwned") is None  # the drafts' markup stayed text
                    if not shot:
                        page.screenshot(path=os.path.join(ARTIFACTS, "judging-judge.png"), full_page=True)
                        shot = True
                    keys, scores = keys_for(who, int(item))
                    before = _stamp(page)
                    for k in keys:
                        page.keyboard.press(k)
                    page.wait_for_function(f"() => document.querySelector('#judge-task [data-pk-stamp]')"
                                           f".dataset.pkStamp !== '{before}'", timeout=WAIT_MS)
                    expect[(who, int(item))] = scores
                    assert f"item #{item} " in page.inner_text("#judge-after")  # shown once submitted
                if not progressed:
                    break
            js = jq.queue_judgments(store, "week-1")
            assert len(js) == 12 and {j["annotator"] for j in js} == {"ann", "ben", "cat"}
            for j in js:
                crit = j["scores"]
                assert (crit["Does it answer the task?"], crit["Is it vivid?"]) == expect[(j["annotator"], j["item_id"])]
            counts = {}
            for j in js:
                counts[j["item_id"]] = counts.get(j["item_id"], 0) + 1
            assert sorted(counts.values()) == [2] * 6

            # agreement: the alpha shown per criterion is the core's figure for the stored judgments
            page = pages["ann"]
            page.get_by_role("tab", name="Agreement").click()
            _pick(page, "agree-queue", "week-1")
            page.click("#agree-show")
            page.wait_for_selector("#agreement-report", timeout=WAIT_MS)
            rep = agr.report(store, "week-1")
            rows = page.evaluate("() => [...document.querySelectorAll('#agreement-report table:first-of-type tbody tr')]"
                                 ".map(r => [...r.cells].map(c => c.innerText))")
            for r, row in zip(rep["criteria"] + [rep["overall"]], rows):
                assert row[0] == r["criterion"]
                assert row[1] == (f"{r['alpha']:.3f}" if r["alpha"] is not None else f"– ({r['why']})")
            assert len(rows) == 3
            page.screenshot(path=os.path.join(ARTIFACTS, "judging-agreement.png"), full_page=True)

            # calibration of the scripted judge: progress, then the table and the scatter plots
            page.get_by_role("tab", name="Calibration").click()
            _pick(page, "cal-queue", "week-1")
            page.click("#cal-go")
            page.wait_for_selector("#calibration-report", timeout=WAIT_MS)
            page.wait_for_selector("#cal-plot .main-svg", timeout=WAIT_MS)
            core = cal.report(store, "week-1", model_name(spec))
            shown = page.inner_text("#calibration-report")
            assert core["judged_by_model"] == 6
            for r in core["criteria"] + [core["overall"]]:
                assert r["spearman"] is not None and f"{r['spearman']:.3f}" in shown
            assert len(set(JUDGE_SCORES)) > 1
            page.screenshot(path=os.path.join(ARTIFACTS, "judging-calibration.png"), full_page=True)
            page.get_by_role("tab", name="Queues").click()
            page.wait_for_selector("#judge-progress table", timeout=WAIT_MS)
            page.click("#judge-refresh")
            page.wait_for_timeout(800)
            assert "12 of 12" in page.inner_text("#judge-progress")
            page.screenshot(path=os.path.join(ARTIFACTS, "judging-queues.png"), full_page=True)
        finally:
            browser.close()
    store.close()
