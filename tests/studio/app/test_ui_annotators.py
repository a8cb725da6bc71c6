"""Named annotators in a served studio with two logins from a users file (studio.users): each person's
review decisions, ratings, edits and R2 judgments land in the store under their own name, through
gradio_client (Client(url, auth=...)) and through two headless Chromium contexts that log in on the
login form; the header names each its own person (escaped) with a Log out link, and a studio without
a login says "you are NAME (no login)"."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from library_fixtures import add_reer
from r2_fakes import FakeLM
from ui_helpers import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, free_port, launched, needs_chromium, studio_app, wait_r2

from core import events as ev
from core.data import curation
from core.annotators import os_user
from core.store import open_store
from studio import users as U
from studio.app import serve

pytestmark = pytest.mark.ui
OPEN = ["any", "all", "", "", "", "", "any", "", "", "", ""]  # the Review filters, all open
NEEDS_CHROMIUM = needs_chromium
ADA, BO = ("ada", "correct horse"), ("bo <i>&amp;</i>", "battery staple")  # bo's name is markup: shown as text


@pytest.fixture
def two_users(tmp_path, monkeypatch):
    monkeypatch.setattr(U, "COST_N", 2 ** 4)  # cheap hashes: the same format and checks
    path = tmp_path / "users"
    for name, password in (ADA, BO):
        U.add_user(path, name, password)
    return U.Logins.load(path)


@pytest.fixture
def seeded(tmp_path):
    store = open_store(tmp_path / "s.db")
    ids = [add_reer(store, f"Prompt {i}: write about fog over the harbour.", f"Thinking {i}.\n\nMore of it.",
                    f"Answer {i}.") for i in range(4)]
    yield store, ids
    store.close()


def _serve(app, logins):
    _, url, _ = serve(app, port=free_port(), auth=logins, prevent_thread_lock=True, quiet=True)
    return url.rstrip("/") + "/"


def _client(url, auth=None):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False, auth=auth)




def test_two_logins_through_the_api_each_act_under_its_own_name(seeded, two_users):
    store, ids = seeded
    pid, _ = store.add_prompt("Write a short story about a lighthouse keeper.", "The keeper read the letter twice.",
                              id="p-light", category="story_writing")
    app = studio_app(FakeLM(scores={0: 4, 1: 6, 2: 8}), store, samples_path=None)
    url = _serve(app, two_users)
    try:
        with pytest.raises(Exception):
            _client(url, auth=("ada", "battery staple"))  # a wrong password is refused
        a, b = _client(url, auth=ADA), _client(url, auth=BO)
        a.predict(ids[0], "", *OPEN, api_name="/focus_accept")
        b.predict(ids[1], "off topic", *OPEN, api_name="/focus_reject")
        a.predict(ids[2], "4", *OPEN, api_name="/review_rate")
        b.predict(ids[2], "2", *OPEN, api_name="/review_rate")
        b.predict(ids[3], "Thinking 3, rewritten by bo.", "Answer 3.", *OPEN, api_name="/review_edit")

        # R2: ada starts a run a person judges and judges the first draft; bo judges the revision
        out = a.predict(pid, "", "human", 1, 9, 0, False, 64, 32, 64, False, 48, api_name="/r2_run")
        run_id = re.search(r'data-run="([0-9a-f]+)"', out[1]).group(1)
        wait_r2(a, run_id, lambda s: 'data-state="waiting"' in s)
        a.predict(5, "The ending is rushed; let the boat arrive.", *[None] * 8, api_name="/r2_judge")
        wait_r2(b, run_id, lambda s: 'data-pending="1"' in s and 'data-state="waiting"' in s)
        b.predict(7, "Better: the boat arrives and the letter matters.", *[None] * 8, api_name="/r2_judge")
        wait_r2(a, run_id, lambda s: 'data-state="finished"' in s)
    finally:
        app.close()
    acts = {t: [(h["action"], h["value"], h["annotator"]) for h in curation.history(store, t)] for t in ids}
    assert acts[ids[0]] == [("accept", None, "ada")]
    assert ("reject", "off topic", BO[0]) in acts[ids[1]]
    assert acts[ids[2]] == [("rate", 4, "ada"), ("rate", 2, BO[0])]
    assert store.get_trajectory(ids[2])["annotator"] == BO[0]  # the last to act
    assert [(v["version"], v["annotator"]) for v in curation.versions(store, ids[3])][-1] == (1, BO[0])
    given = [e.judgment for e in store.events(run_id) if isinstance(e, ev.JudgmentGiven)]
    assert [(j["judge"], j["annotator"]) for j in given] == [("human", "ada"), ("human", BO[0])]


def _login(browser, url, name, password):
    ctx = browser.new_context(viewport={"width": 1100, "height": 800})
    page = ctx.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("input[type=text], input:not([type])").first.fill(name)
    page.locator("input[type=password]").fill(password)
    page.keyboard.press("Enter")
    page.wait_for_selector("#pal-who", timeout=WAIT_MS)
    return ctx, page


@NEEDS_CHROMIUM
def test_two_browsers_log_in_and_each_decision_and_header_is_its_own(seeded, two_users):
    from playwright.sync_api import sync_playwright

    store, ids = seeded
    app = studio_app("scripted:", store=store)
    url = _serve(app, two_users)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                (ca, pa), (cb, pb) = _login(browser, url, *ADA), _login(browser, url, *BO)
                assert pa.inner_text("#pal-who").startswith("signed in as ada")
                who_b = pb.inner_text("#pal-who")
                assert who_b.startswith(f"signed in as {BO[0]}")  # the markup is text
                assert pb.evaluate("() => document.querySelector('#pal-who i')") is None
                assert pa.get_attribute("#pal-logout", "href") == "logout"

                for page, key in ((pa, "a"), (pb, "r")):  # one after the other: each takes the next pending
                    page.goto(url + "?tab=review", wait_until="domcontentloaded")
                    page.wait_for_selector("#review-count .rv-count", timeout=WAIT_MS)
                    page.click("#review-focus")
                    page.wait_for_selector("#focus-record .fx-record", timeout=WAIT_MS)
                    page.wait_for_selector("#pal-who", timeout=WAIT_MS)
                    stamp = page.evaluate("() => document.querySelector('#focus-progress .fx-progress').dataset.pkStamp")
                    page.keyboard.press(key)
                    page.wait_for_function(
                        f"() => document.querySelector('#focus-progress .fx-progress').dataset.pkStamp !== '{stamp}'",
                        timeout=WAIT_MS)
                assert [(h["action"], h["annotator"]) for h in curation.history(store, ids[0])] == [("accept", "ada")]
                assert [(h["action"], h["annotator"]) for h in curation.history(store, ids[1])] == [("reject", BO[0])]

                pa.click("#pal-logout")  # Gradio's /logout: back to the login form
                pa.wait_for_selector("input[type=password]", timeout=WAIT_MS)
                assert pa.locator("#pal-who").count() == 0
            finally:
                browser.close()
    finally:
        app.close()


@NEEDS_CHROMIUM
def test_without_a_login_the_header_names_the_os_user(seeded):
    from playwright.sync_api import sync_playwright

    store, _ = seeded
    with launched(studio_app("scripted:", store=store)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#pal-who", timeout=WAIT_MS)
            assert page.inner_text("#pal-who") == f"you are {os_user()} (no login)"
            assert page.locator("#pal-logout").count() == 0
        finally:
            browser.close()
