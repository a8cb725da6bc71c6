"""`palimpsest judge ...` and `review --annotator`: three annotators judge a queue of 6 drafts with
overlap 2 from the shell (JSON out, JSON in), agreement and a scripted model judge's calibration
reported. Bad input: tests/studio/cli/test_hostile_judging.py."""
from __future__ import annotations

import io
import json

import pytest
from library_fixtures import reer_db

from studio.cli.main import main


@pytest.fixture
def db(tmp_path):
    return reer_db(tmp_path / "j.db", 6)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_three_annotators_overlap_two_from_the_shell(db, capsys, monkeypatch):
    assert cli(capsys, "judge", "queue", "create", "w", "--criterion", "clear", "--criterion", "vivid",
               "--overlap", "2", "--db", db, "--annotator", "lead")[0] == 0
    code, out, _ = cli(capsys, "judge", "queue", "add", "w", "1", "2", "3", "traj:4", "5", "6", "--db", db)
    assert code == 0 and "6 item(s) added" in out
    base = {"ann": 3, "bob": 5, "cy": 7}
    judged = []
    for _ in range(4):
        for name, s in base.items():
            code, out, _ = cli(capsys, "judge", "next", "w", "--annotator", name, "--db", db)
            task = json.loads(out)["task"]
            if task is None:
                continue
            assert task["rubric"] == ["clear", "vivid"] and "scores" not in task
            if name == "cy":  # JSON in on stdin
                monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(
                    {"item_id": task["item_id"], "scores": {"1": s, "2": s}, "note": "ok"})))
                code, out, _ = cli(capsys, "judge", "submit", "--input", "-", "--annotator", name, "--db", db)
            else:
                code, out, _ = cli(capsys, "judge", "submit", str(task["item_id"]), "--score", f"1={s}", "--score",
                                   f"2={s + 1}", "--overall", str(s), "--annotator", name, "--db", db)
            assert code == 0 and json.loads(out)["annotator"] == name
            judged.append(task["item_id"])
    assert sorted(judged) == sorted([1, 2, 3, 4, 5, 6] * 2)
    code, out, _ = cli(capsys, "judge", "queue", "status", "w", "--json", "--db", db)
    p = json.loads(out)
    assert (p["judgments"], p["complete"], set(p["annotators"])) == (12, 6, {"ann", "bob", "cy"})
    code, out, _ = cli(capsys, "judge", "agreement", "w", "--json", "--disagreements", "--min-spread", "4", "--db", db)
    rep = json.loads(out)
    assert [c["criterion"] for c in rep["criteria"]] == ["clear", "vivid"] and rep["overall"]["alpha"] is not None
    assert rep["disagreements"] and all(r["spread"] == 4 for r in rep["disagreements"])  # only ann (3) with cy (7)
    code, out, err = cli(capsys, "judge", "calibrate", "w", "1", "2", "3", "4", "5", "6", "--model", "scripted:judge=6",
                         "--json", "--db", db, "--annotator", "lead")
    cal = json.loads(out)
    assert code == 0 and cal["judged_by_model"] == 6 and cal["overall"]["n"] == 6
    assert cal["overall"]["spearman"] is None  # a judge that gives 6 to everything has no ranking to correlate
    assert "[6/6] traj:6: overall 6" in err


def test_review_records_the_annotator_default_os_user(db, capsys, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "osuser")
    assert cli(capsys, "review", "accept", "1", "--annotator", "ann", "--db", db)[0] == 0
    assert cli(capsys, "review", "rate", "1", "4", "--db", db)[0] == 0
    code, out, _ = cli(capsys, "review", "show", "1", "--json", "--db", db)
    row = json.loads(out)
    assert [(h["action"], h["annotator"]) for h in row["history"]] == [("accept", "ann"), ("rate", "osuser")]


def test_calibrate_with_logprob_scores_a_judge_that_breaks_the_format(db, capsys):
    # scripted: without judge=X answers grading prompts with prose (unparsable, as a weak model would)
    code, out, _ = cli(capsys, "judge", "calibrate", "c", "1", "2", "--model", "scripted:", "--json", "--db", db)
    assert code == 0 and json.loads(out)["unparsed"] == 2
    code, out, _ = cli(capsys, "judge", "calibrate", "c", "1", "2", "--model", "scripted:", "--method", "logprob",
                       "--json", "--db", db)
    rep = json.loads(out)
    assert code == 0 and (rep["judged_by_model"], rep["unparsed"]) == (2, 0)
