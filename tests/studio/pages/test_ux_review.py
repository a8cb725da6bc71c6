"""Review that invites no mistakes, and the header wrap: the bulk menu starts
on a no-op choice, bulk accept skips trajectories whose quality filters failed (a dropped run) and
says how many and why, the CLI's accept follows the same rule, the default queue hides failed-filter
trajectories with a visible count, and the built-in samples' source reads "sample".

Core- and handler-level: the store is seeded with tests/library_fixtures.py shapes; the page's
handlers are called through the built Blocks (no server, no model)."""
from __future__ import annotations

import json

import pytest
from library_fixtures import add_reer, filled_store
from ui_helpers import WAIT_MS, needs_chromium, studio_app

from core.data import curation
from core.store import open_store
from studio.cli.main import main
from studio.pages import review as page

OPEN = ["any", "all", "", "", "", "", "any", "", "", "", ""]  # the Review filters, all open


def _dropped(store) -> int:
    """A dropped REER run: 72 characters of thinking that failed the quality filters."""
    t = add_reer(store, "Write about rain on a tin roof.", "x" * 72, "Rain drums on the tin roof all night.")
    store.update_trajectory(t, {"filters": json.dumps({"passed": False, "reasons": ["thinking has 18 tokens (< 100)"]})})
    return t


@pytest.fixture
def seeded(tmp_path):
    store = open_store(tmp_path / "s.db")
    ids = filled_store(store)
    ids["dropped"] = _dropped(store)
    yield store, ids, tmp_path / "s.db"
    store.close()


def test_bulk_accept_skips_failed_filters_and_says_why(seeded):
    store, ids, _ = seeded
    pending = [ids["reer"][2], ids["dropped"]]
    res = curation.bulk(store, pending, "accept")
    assert res.changed == 1 and [t for t, _ in res.skipped] == [ids["dropped"]]
    assert store.get_trajectory(ids["dropped"])["status"] == "pending"
    assert store.get_trajectory(ids["reer"][2])["status"] == "accepted"
    assert "1 skipped: failed the quality filters (thinking has 18 tokens" in res.skipped_text()
    assert curation.bulk(store, [ids["dropped"]], "accept", include_failed=True).changed == 1
    assert store.get_trajectory(ids["dropped"])["status"] == "accepted"


def test_cli_accept_follows_the_bulk_rule(seeded, capsys):
    store, ids, db = seeded
    assert main(["review", "accept", str(ids["reer"][2]), str(ids["dropped"]), "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert f"accepted: {ids['reer'][2]}" in out and "1 skipped: failed the quality filters" in err
    assert store.get_trajectory(ids["dropped"])["status"] == "pending"
    assert main(["review", "accept", str(ids["dropped"]), "--include-failed", "--db", str(db)]) == 0
    assert store.get_trajectory(ids["dropped"])["status"] == "accepted"


def _fn(app, name):
    return next(f.fn for f in app.fns.values() if f.api_name == name)


def test_page_bulk_menu_starts_on_a_no_op_and_the_queue_hides_failed_filters(seeded):
    store, ids, _ = seeded
    app = studio_app("scripted:", store=store)
    menu = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "review-bulk-action")
    assert menu.value == page.CHOOSE and page.BULK[menu.value] is None
    bulk = _fn(app, "review_bulk")
    out = {getattr(k, "elem_id", None): v for k, v in bulk(menu.value, None, "", "", *OPEN).items()}
    assert "choose an action" in out["review-msg"]
    assert all(r["status"] != "accepted" for r in (store.get_trajectory(t) for t in (ids["reer"][2], ids["dropped"])))
    # the default view ("any") hides the dropped run, and says so
    listing = {getattr(k, "elem_id", None): v for k, v in _fn(app, "review_list")(*OPEN).items()}
    assert ids["dropped"] not in [row[0] for row in listing["review-table"]]
    assert 'data-hidden="1"' in listing["review-count"] and "1 hidden: failed filters" in listing["review-count"]
    failed = {getattr(k, "elem_id", None): v for k, v in _fn(app, "review_list")(curation.FAILED, *OPEN[1:]).items()}
    assert [(row[0], row[1]) for row in failed["review-table"]] == [(ids["dropped"], curation.FAILED)]
    # "accept every match" with every trajectory listed, failed ones too: the dropped run stays pending
    everything = [page.ALL_STATUSES, *OPEN[1:]]
    out = {getattr(k, "elem_id", None): v for k, v in
           bulk("accept every match (skips failed filters)", None, "", "", *everything).items()}
    assert store.get_trajectory(ids["reer"][2])["status"] == "accepted"
    assert store.get_trajectory(ids["dropped"])["status"] == "pending"
    assert "1 skipped: failed the quality filters" in out["review-msg"]


def test_the_samples_source_reads_sample(tmp_path):
    from studio.app import import_samples_if_empty

    store = open_store(tmp_path / "s.db")
    try:
        assert import_samples_if_empty(store) > 0
        rows = curation.list_trajectories(store)
        assert rows and {r["source"] for r in rows} == {"sample"}
        assert page.source_choices(store)[-1] == "import: sample"
    finally:
        store.close()


SPLIT_WORDS = """() => { const out = []; for (const th of document.querySelectorAll('th')) {
  const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT); let n;
  while ((n = walker.nextNode())) { const t = n.textContent; let i = 0;
    for (const w of t.split(/(\\s+)/)) { if (w.trim().length > 1) { const r = document.createRange();
      r.setStart(n, i); r.setEnd(n, i + w.length);
      if (new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1) out.push(w); }
      i += w.length; } } } return out; }"""  # header words whose letters sit on more than one line


@pytest.mark.ui
@needs_chromium
def test_headers_wrap_between_words_and_the_queue_is_tall(tmp_path):
    """In Chromium at 1280 px: no table header splits a word ("answe r words" in the Library), and
    the Review queue holding 12 trajectories is taller than the old 4-row box (260 px)."""
    from playwright.sync_api import sync_playwright
    from ui_helpers import CHROMIUM, CHROMIUM_ARGS, launched

    from studio.app import import_samples_if_empty

    store = open_store(tmp_path / "s.db")
    try:
        import_samples_if_empty(store)
        filled_store(store)
        with launched(studio_app("scripted:", store=store)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector("#library-table th", timeout=WAIT_MS)
                page.wait_for_function("() => document.querySelector('#library-table tbody td') !== null")
                assert page.evaluate(SPLIT_WORDS) == []
                page.get_by_role("tab", name="Review").click()
                page.wait_for_selector("#review-count .rv-count", timeout=WAIT_MS)
                assert page.evaluate(SPLIT_WORDS) == []
                assert page.locator("#review-table").bounding_box()["height"] > 450
            finally:
                browser.close()
    finally:
        store.close()
