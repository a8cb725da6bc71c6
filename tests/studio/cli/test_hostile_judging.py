"""Hostile input to `palimpsest judge`: another's scores asked for before one's own, broken JSON on
--input, unknown fields, scores off the scale, names kept for model judges, unknown queues and
drafts: each refused in one line with exit status 2, nothing stored."""
from __future__ import annotations

import json

import pytest
from library_fixtures import REER_ITEMS, add_reer
from test_judging_cli import cli

from core.store import open_store


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "h.db"
    with open_store(path) as s:
        add_reer(s, *REER_ITEMS[0])
    return str(path)


def test_hidden_scores_and_bad_input_are_one_line(db, capsys, tmp_path):
    cli(capsys, "judge", "queue", "create", "w", "--criterion", "clear", "--open-items", "--db", db)
    cli(capsys, "judge", "queue", "add", "w", "1", "--db", db)
    cli(capsys, "judge", "submit", "1", "--overall", "4", "--annotator", "ann", "--db", db)
    code, out, err = cli(capsys, "judge", "show", "1", "--annotator", "bob", "--db", db)
    assert code == 2 and "submit your own judgment first" in err and out == ""
    code, out, _ = cli(capsys, "judge", "show", "1", "--annotator", "ann", "--db", db)
    assert code == 0 and json.loads(out)["judgments"][0]["overall"] == 4
    bad = tmp_path / "bad.json"
    for content, msg in (("{oops", "not JSON"), ('{"item_id": 1, "grade": 3}', "unknown field(s) ['grade']"),
                         ("[1]", "give one JSON object")):
        bad.write_text(content)
        code, _, err = cli(capsys, "judge", "submit", "--input", str(bad), "--annotator", "bob", "--db", db)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1
    for args, msg in ((["submit", "1", "--score", "1=11", "--annotator", "bob"], "not a number from 1 to 10"),
                      (["submit", "1", "--score", "x", "--annotator", "bob"], "write CRITERION=SCORE"),
                      (["next", "w", "--annotator", "model:me"], "kept for model judges"),
                      (["next", "w", "--annotator", " "], "give a name"),
                      (["next", "nope", "--annotator", "bob"], "judging queue 'nope' does not exist"),
                      (["queue", "add", "w", "traj:99"], "no trajectory 99")):
        code, _, err = cli(capsys, "judge", *args, "--db", db)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    with open_store(db) as s:
        assert s.db["judging_judgments"].count == 1  # only ann's


# ---- the Judge tab's views (studio.views.judging): every stored text is drawn as text ----------------

EVIL = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def test_judging_views_escape_drafts_queues_criteria_and_names():
    from studio.views import judging as view

    task = {"item_id": 3, "queue": "q" + EVIL, "ref": "traj:3", "query": "Task " + EVIL, "thinking": "T " + EVIL,
            "text": "Draft " + EVIL, "low": 1, "high": 5}
    crit = {"criterion": "Clear? " + EVIL, "alpha": 0.5, "why": "", "units": 2, "values": 4, "exact": 0.5,
            "within1": 1.0, "pairs": [{"a": "ann" + EVIL, "b": "ben", "n": 2, "exact": 0.5, "within1": 1.0}]}
    rep = {"queue": "q" + EVIL, "annotators": ["ann" + EVIL, "ben"], "items": 2, "criteria": [crit],
           "overall": {**crit, "criterion": "overall"}}
    dis = [{"item_id": 3, "ref": "traj:3", "spread": 3, "worst": ["Clear? " + EVIL, 3], "scores": {"ann" + EVIL: 1},
            "resolved": True, "resolutions": [{"resolver": "lead" + EVIL, "overall": 2, "note": EVIL}]}]
    prog = [{"queue": "q" + EVIL, "items": 1, "overlap": 2, "judgments": 1, "needed": 2, "complete": 0,
             "open_tasks": 0, "percent": 50.0, "annotators": {"ann" + EVIL: {"judged": 1, "open": 0}}}]
    for out in (view.task_html(task, 1), view.agreement_html(rep, {"ann" + EVIL: 1}), view.disagreements_html(dis),
                view.progress_html(prog, ["r2:x" + EVIL + ":0"])):
        assert "<img" not in out and "<script>window" not in out and "&lt;img" in out


def test_calibration_view_escapes_model_names_and_criteria_in_the_plot():
    from studio.views import judging as view

    row = {"criterion": "Vivid? " + EVIL, "n": 2, "spearman": 1.0, "kendall": 1.0, "bias": 0.0,
           "points": [(2.0, 3.0, 1), (4.0, 5.0, 2)]}
    rep = {"queue": "q", "model": "model:" + EVIL, "consensus": "median", "judged_by_model": 2, "unparsed": 0,
           "criteria": [row], "overall": {**row, "criterion": "overall"}}
    html_out = view.calibration_html(rep)
    assert "<img" not in html_out and "&lt;img" in html_out
    fig = view.scatter(rep, 1, 5)
    texts = [fig.layout.title.text] + [a.text for a in fig.layout.annotations]
    assert all("<img" not in t for t in texts) and "&lt;img" in fig.layout.title.text
    assert any("&lt;img" in a.text for a in fig.layout.annotations)  # the criterion's panel title


# ---- no peeking ---------------------------------------------------------------------------

def test_judge_show_lead_needs_the_lead_role(db, capsys, tmp_path, monkeypatch):
    """Before: `judge show --lead` worked for anyone."""
    from studio import users as U

    monkeypatch.setattr(U, "COST_N", 2 ** 4)
    users = tmp_path / "users"
    U.add_user(users, "bob", "correct horse")
    U.add_user(users, "lee", "correct horse", lead=True)
    cli(capsys, "judge", "queue", "create", "w", "--criterion", "clear", "--open-items", "--db", db)
    cli(capsys, "judge", "queue", "add", "w", "1", "--db", db)
    cli(capsys, "judge", "submit", "1", "--overall", "4", "--annotator", "ann", "--db", db)
    code, out, err = cli(capsys, "judge", "show", "1", "--lead", "--annotator", "bob", "--users", str(users), "--db", db)
    assert code == 2 and out == "" and "bob is not a lead" in err and "--lead" in err
    code, out, _ = cli(capsys, "judge", "show", "1", "--lead", "--annotator", "lee", "--users", str(users), "--db", db)
    assert code == 0 and json.loads(out)["judgments"][0]["overall"] == 4
    assert U.read_users(users)["lee"].role == "lead" and U.Logins.load(users).leads == {"lee"}


def test_a_submit_for_an_item_never_handed_out_is_refused_unless_the_queue_is_open(tmp_path):
    """Before: any item could be submitted by id, handed out or not."""
    from core.judging import queue as jq

    with open_store(tmp_path / "s.db") as store:
        refs = [f"traj:{add_reer(store, f'{REER_ITEMS[0][0]} ({i})', *REER_ITEMS[0][1:])}" for i in range(2)]
        jq.create_queue(store, "closed", ["clear"], overlap=2)
        a, b = jq.add_items(store, "closed", refs)[0]
        with pytest.raises(jq.JudgingError, match=f"item {a}: it was never handed to bob.*--open-items"):
            jq.submit(store, a, "bob", {"clear": 5})
        assert jq.next_task(store, "closed", "bob").item_id == a
        jq.submit(store, a, "bob", {"clear": 5})  # handed out: taken
        jq.create_queue(store, "open", ["clear"], overlap=2, open_items=True)
        c, _ = jq.add_items(store, "open", refs)[0]
        jq.submit(store, c, "bob", {"clear": 5})  # the queue allows it


@pytest.mark.ui
def test_the_agreement_view_shows_scores_only_to_people_who_judged_and_to_a_lead(tmp_path):
    """Before: the Agreement view showed every annotator's scores of an item to one who had not judged
    it, who could then submit it by id through the API."""
    from gradio_client import Client
    from ui_helpers import free_port, studio_app

    from core.judging import queue as jq
    from studio.app import serve

    people = [("ann", "pw-ann-1"), ("ben", "pw-ben-1"), ("lee", "pw-lee-1")]
    with open_store(tmp_path / "s.db") as store:
        refs = [f"traj:{add_reer(store, f'{REER_ITEMS[0][0]} ({i})', *REER_ITEMS[0][1:])}" for i in range(2)]
        jq.create_queue(store, "w", ["clear"], overlap=3)
        item = jq.add_items(store, "w", refs[:1])[0][0]
        for who_, s in (("ann", 1), ("cat", 9)):
            assert jq.next_task(store, "w", who_).item_id == item
            jq.submit(store, item, who_, {"clear": s})
        app = studio_app("scripted:", store, leads=frozenset({"lee"}))
        _, url, _ = serve(app, port=free_port(), prevent_thread_lock=True, quiet=True, auth=people)
        try:
            def as_(name):
                return Client(url, auth=(name, dict(people)[name]), verbose=False, analytics_enabled=False,
                              download_files=False)
            ben, lee, ann = as_("ben"), as_("lee"), as_("ann")
            report, dis, _, msg = ben.predict("w", api_name="/judge_agreement")
            assert refs[0] not in dis and "ann 1" not in dis and "cat 9" not in dis
            assert "only to the people who judged it" in msg
            _, dis_lead, _, _ = lee.predict("w", api_name="/judge_agreement")
            assert refs[0] in dis_lead and "ann 1, cat 9" in dis_lead
            _, dis_ann, _, _ = ann.predict("w", api_name="/judge_agreement")
            assert "ann 1, cat 9" in dis_ann  # ann judged it: she sees it
            out = ben.predict("w", item, "5", *[None] * 7, "", [], api_name="/judge_submit")
            assert "never handed to ben" in json.dumps(out)
            assert [j["annotator"] for j in jq.queue_judgments(store, "w")] == ["ann", "cat"]
            assert "not a lead" in json.dumps(ben.predict("w", item, "5", "", api_name="/judge_resolve"))
        finally:
            app.close()
