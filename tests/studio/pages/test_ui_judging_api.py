"""The Judge tab's handlers through gradio_client, with three people logged in by Gradio's own list
auth (ann, ben, cat): a queue made from the page (and refused with the field named when the input
is bad), six drafts judged with overlap 2 (each item exactly twice, each person's judgments under
their own name, nobody shown another's scores before submitting), the agreement page's alpha equal
to core.judging.agreement's for the stored judgments, a resolve saved through the core, and a
scripted model judge's calibration started from the page whose report is the core's.

The helpers here (`six_drafts`, `judge_script`, `served`, `person_scores`) serve the browser test
too (tests/studio/browser/test_ui_judging.py)."""
from __future__ import annotations

import contextlib
import json
import re
import time

import pytest
from library_fixtures import add_reer
from ui_helpers import free_port, studio_app

from core.judging import agreement as agr
from core.judging import calibration as cal
from core.judging import queue as jq
from core.annotators import model_name
from core.store import open_store

pytestmark = pytest.mark.ui
PEOPLE = [("ann", "pw1"), ("ben", "pw2"), ("cat", "pw3")]
JUDGE_SCORES = [1, 2, 2, 4, 5, 3]  # the scripted model judge's score of draft i (read from its marker)


def six_drafts(store) -> list[int]:
    """Six REER trajectories whose answers carry a marker (draft-0 ... draft-5) and one hostile one's markup."""
    return [add_reer(store, f"Prompt {i}: write about the harbour at dawn.", f"Thinking {i}.\n\nMore thought.",
                     f"Answer draft-{i}: the harbour wakes <b>slowly</b> <script>window.pwned={i}</script>.")
            for i in range(6)]


def judge_script(tmp_path) -> str:
    """A scripted model judge giving draft i the score JUDGE_SCORES[i] on every criterion."""
    rules = [{"when": [f"draft-{i}\\b"], "judge": s, "name": f"judge-{i}", "critique": f"Draft {i} needs detail."}
             for i, s in enumerate(JUDGE_SCORES)]
    path = tmp_path / "judge.json"
    path.write_text(json.dumps({"rules": rules}), encoding="utf-8")
    return f"scripted:script={path}"


def person_scores(person: str, item_id: int, n: int) -> list[int]:
    """A fixed, person-dependent score per criterion on 1-5 (people agree roughly, not exactly)."""
    base = {"ann": 0, "ben": 1, "cat": 0}[person]
    return [1 + (item_id * 2 + c + base * (c % 2)) % 5 for c in range(n)]


@contextlib.contextmanager
def served(app):
    from studio.app import serve

    _, url, _ = serve(app, port=free_port(), prevent_thread_lock=True, quiet=True, auth=PEOPLE)
    try:
        yield url.rstrip("/") + "/"
    finally:
        app.close()


def login(url: str, who: str):
    from gradio_client import Client

    return Client(url, auth=(who, dict(PEOPLE)[who]), verbose=False, analytics_enabled=False, download_files=False)


@pytest.fixture
def judging_store(tmp_path):
    store = open_store(tmp_path / "s.db")
    ids = six_drafts(store)
    yield store, ids
    store.close()


def create(c, name, rubric="clear\nvivid", overlap=2, source="reer"):
    return c.predict(name, rubric, overlap, [], [], source, False, False, api_name="/judge_create_queue")


def _item(out) -> int | None:
    return int(out[0]) if out[0] not in (None, "") else None


def test_queue_made_judged_by_three_and_measured(judging_store, tmp_path):
    store, ids = judging_store
    with served(studio_app(judge_script(tmp_path), store=store)) as url:
        ann, ben, cat = (login(url, p) for p, _ in PEOPLE)
        # bad input: each refusal names the field
        assert "Drafts: none picked" in create(ann, "empty", source="")[0]
        assert "Rubric: empty" in create(ann, "norubric", rubric="  \n ")[0]
        assert "overlap" in create(ann, "big", overlap=99)[0]
        assert jq.list_queues(store) == []
        made = create(ann, "week-1")
        assert "6 draft(s)" in made[0]
        q = jq.get_queue(store, "week-1")
        assert (q["overlap"], q["low"], q["high"], q["rubric"]) == (2, 1, 5, ["clear", "vivid"])

        clients = {"ann": ann, "ben": ben, "cat": cat}
        seen_before_submit: dict[str, list[str]] = {}
        done = {p: [] for p in clients}
        # round-robin until nobody gets a task: 6 items x 2 = 12 judgments
        for _ in range(10):
            got_any = False
            for person, c in clients.items():
                out = c.predict("week-1", api_name="/judge_next")
                item = _item(out)
                if item is None:
                    continue
                got_any = True
                page = " ".join(str(x) for x in out)
                others = [o for o in clients if o != person and re.search(rf"\b{o}\b", page)]
                seen_before_submit.setdefault(person, []).extend(others)
                scores = person_scores(person, item, 2)
                after = c.predict("week-1", item, str(scores[0]), str(scores[1]), *[None] * 6, f"{person}-note",
                                  api_name="/judge_submit")
                done[person].append(item)
                table = str(after[-1])
                assert f"{person} (you)" in table  # the scores shown after the submit, this person's among them
            if not got_any:
                break
        assert all(v == [] for v in seen_before_submit.values())  # no other name on a task before one's submit
        js = jq.queue_judgments(store, "week-1")
        assert len(js) == 12
        per_item = {}
        for j in js:
            per_item.setdefault(j["item_id"], set()).add(j["annotator"])
        assert sorted(len(v) for v in per_item.values()) == [2] * 6
        assert {j["annotator"] for j in js} == {"ann", "ben", "cat"}
        for j in js:  # each stored under the name of the client who submitted it
            assert j["item_id"] in done[j["annotator"]]
            assert [j["scores"]["clear"], j["scores"]["vivid"]] == person_scores(j["annotator"], j["item_id"], 2)

        # a second submit of the same item by the same person is refused, named
        again = ann.predict("week-1", done["ann"][0], "3", "3", *[None] * 6, "", api_name="/judge_submit")
        assert "judged it already" in " ".join(str(x) for x in again)

        # agreement: the page's alpha per criterion is the core's
        page = ann.predict("week-1", api_name="/judge_agreement")
        rep = agr.report(store, "week-1")
        html = page[0]
        for r in rep["criteria"] + [rep["overall"]]:
            shown = "–" if r["alpha"] is None else f"{r['alpha']:.3f}"
            assert re.search(rf"<td>{re.escape(r['criterion'])}</td><td class=\"num\">{re.escape(shown)}", html), \
                (r["criterion"], shown)
        assert any(r["alpha"] is not None for r in rep["criteria"])

        # resolve an item through the page: stored under the resolver's name
        item0 = done["ben"][0]
        res = ben.predict("week-1", item0, "4", "we settled on 4", api_name="/judge_resolve")
        assert "resolved by ben" in " ".join(str(x) for x in res)
        got = agr.resolutions(store, item0)
        assert got[-1]["resolver"] == "ben" and got[-1]["overall"] == 4 and got[-1]["note"] == "we settled on 4"
        bad = ben.predict("week-1", item0, "9", "", api_name="/judge_resolve")
        assert "not a number from 1 to 5" in " ".join(str(x) for x in bad)
        typo = ben.predict("week-1", item0, "four", "", api_name="/judge_resolve")
        assert "is not a number; type one on the queue" in " ".join(str(x) for x in typo)
        assert len(agr.resolutions(store, item0)) == 1

        # calibration of the scripted judge (the app's model): started from the page, read back from the store
        cat.predict("", "week-1", 6, "generate", api_name="/judge_calibrate")
        name = model_name(judge_script(tmp_path))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(jq.queue_judgments(store, "week-1", role="model")) < 6:
            time.sleep(0.2)
        time.sleep(0.5)
        shown = cat.predict("", "week-1", api_name="/judge_calibration")
        core = cal.report(store, "week-1", name)
        assert core["judged_by_model"] == 6 and core["unparsed"] == 0
        for r in core["criteria"] + [core["overall"]]:
            assert r["n"] == 6 and r["spearman"] is not None
            assert f"{r['spearman']:.3f}" in shown[0] and f"{r['kendall']:.3f}" in shown[0]
        assert len(jq.queue_judgments(store, "week-1")) == 12  # the model's judgments never count as people's


def test_skip_gives_the_task_back_and_hands_another(judging_store):
    store, ids = judging_store
    with served(studio_app("scripted:", store=store)) as url:
        ann = login(url, "ann")
        create(ann, "skips", overlap=1)
        first = _item(ann.predict("skips", api_name="/judge_next"))
        again = _item(ann.predict("skips", api_name="/judge_next"))
        assert again == first  # a held task comes back (a reload gets it again)
        other = _item(ann.predict("skips", first, api_name="/judge_skip"))
        assert other is not None and other != first
        with store.reading():
            held = list(store.db.query("SELECT item_id FROM judging_tasks WHERE annotator = 'ann'"))
        assert [h["item_id"] for h in held] == [other]  # the skipped one went back to the queue


def test_submit_without_every_score_names_the_criterion(judging_store):
    store, ids = judging_store
    with served(studio_app("scripted:", store=store)) as url:
        ann = login(url, "ann")
        create(ann, "partial")
        item = _item(ann.predict("partial", api_name="/judge_next"))
        out = ann.predict("partial", item, "4", None, *[None] * 6, "", api_name="/judge_submit")
        assert "criterion 2 has no score" in " ".join(str(x) for x in out)
        assert jq.queue_judgments(store, "partial") == []
