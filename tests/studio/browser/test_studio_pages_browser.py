"""Review and Export in headless Chromium at 1280x800: open the Review tab, open a pending
trajectory from the queue, accept it, go to Export, export chat and download the file, which
loads with `datasets`. The store is seeded directly (fixtures + the built-in samples imported
through core.data.imports); no model runs. Screenshots land in tests/artifacts/ (pages-*.png)."""
from __future__ import annotations

import os
import time

import pytest
from ui_helpers import ARTIFACTS, WAIT_MS, browser_page, launched, needs_chromium, studio_app

pytestmark = [pytest.mark.ui,
              needs_chromium]


def _shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    time.sleep(0.4)  # let progress overlays fade before the picture
    page.screenshot(path=os.path.join(ARTIFACTS, f"pages-{name}.png"))


@pytest.fixture
def served(tmp_path):
    from library_fixtures import filled_store

    from core.store import open_store
    from studio.app import import_samples_if_empty

    store = open_store(tmp_path / "studio.db")
    assert import_samples_if_empty(store) > 0  # the samples carry hand-written thinking: imported trajectories
    ids = filled_store(store)
    app = studio_app("scripted:", store)
    with launched(app) as url:
        yield url, store, ids
    store.close()


def test_browser_review_accept_then_export_download(served, tmp_path):
    from datasets import load_dataset

    url, store, ids = served
    target = ids["reer"][2]  # a pending REER trajectory
    assert store.get_trajectory(target)["status"] == "pending"
    order = [t["id"] for t in store.list_trajectories()]
    with browser_page(url) as page:
        page.wait_for_selector("#library-table", timeout=WAIT_MS)
        page.get_by_role("tab", name="Review").click()
        page.wait_for_selector(f'#review-count [data-n="{len(order)}"]', timeout=WAIT_MS)
        page.wait_for_selector("#review-plots .main-svg", timeout=WAIT_MS)
        page.locator(f'#review-table [data-testid="cell-{order.index(target)}-3"]').click()
        page.wait_for_selector(f'#review-header .rv-head[data-id="{target}"]', timeout=WAIT_MS)
        assert page.input_value("#review-thinking textarea") == store.get_trajectory(target)["thinking"]
        _shot(page, "review-open")

        page.click("#review-accept")
        page.wait_for_selector('#review-header .rv-head[data-status="accepted"]', timeout=WAIT_MS)
        assert store.get_trajectory(target)["status"] == "accepted"
        page.locator("#review-plots").scroll_into_view_if_needed()
        _shot(page, "review-plots")

        accepted = len(store.list_trajectories(status="accepted"))
        page.evaluate("window.scrollTo(0, 0)")
        page.get_by_role("tab", name="Export").click()
        page.wait_for_selector(f'#export-describe [data-records="{accepted}"]', timeout=WAIT_MS)
        page.click("#export-preview")
        page.wait_for_function("() => (document.querySelector('#export-records')?.innerText || '').includes('messages')",
                               timeout=WAIT_MS)
        page.click("#export-run")
        page.wait_for_selector(f'#export-result .ex-done[data-count="{accepted}"]', timeout=WAIT_MS)
        link = page.locator('#export-file a[download="train.jsonl"]').first
        link.wait_for(timeout=WAIT_MS)
        with page.expect_download(timeout=WAIT_MS) as dl:
            link.click()
        saved = tmp_path / "downloaded.jsonl"
        dl.value.save_as(saved)
        _shot(page, "export-done")

        # the open tab is in the address: a reload comes back to Export, a link with ?tab=review opens Review
        assert page.url.endswith("?tab=export")
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector('[role="tab"][aria-selected="true"]:has-text("Export")', timeout=WAIT_MS)
        page.goto(url.rstrip("/") + "/?tab=review", wait_until="domcontentloaded")
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector('[role="tab"][aria-selected="true"]:has-text("Review")', timeout=WAIT_MS)
        page.wait_for_selector(f'#review-count [data-n="{len(order)}"]', timeout=WAIT_MS)
        _shot(page, "review-bulk")
    ds = load_dataset("json", data_files=str(saved), split="train")
    assert len(ds) == accepted
    assert any(m[1]["content"].startswith("<think>\n" + store.get_trajectory(target)["thinking"])
               for m in ds["messages"])
