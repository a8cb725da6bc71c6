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
    cli(capsys, "judge", "queue", "create", "w", "--criterion", "clear", "--db", db)
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
