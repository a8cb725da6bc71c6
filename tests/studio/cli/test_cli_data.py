"""`palimpsest import | review | export`: a curator's whole path from the shell, user errors as one
line with exit status 2, bad records listed by file and line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from library_fixtures import filled_store
from needs import ROOT

from core.store import open_store
from studio.cli.main import main


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "lib.db"
    with open_store(path) as s:
        filled_store(s)
    return str(path)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_import_reports_bad_lines_and_imports_the_rest(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps({"instruction": "Write a limerick.", "response": "There once was..."}) + "\n{oops\n"
                 + json.dumps({"query": "q"}) + "\n", encoding="utf-8")
    db = str(tmp_path / "x.db")
    code, out, err = cli(capsys, "import", str(f), "--db", db)
    assert code == 0 and "imported 1 new prompt(s)" in out
    assert f"skipped {f}:2: not valid JSON" in err and f"skipped {f}:3 field 'reference': missing" in err
    code, out, err = cli(capsys, "import", str(f), "--db", db)
    assert "1 duplicate(s)" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    code, out, err = cli(capsys, "import", str(bad), "--db", db)
    assert code == 2 and "nothing imported" in err and "Traceback" not in err


def test_review_commands(db, capsys):
    code, out, _ = cli(capsys, "review", "list", "--status", "pending", "--db", db)
    assert code == 0 and len(out.strip().splitlines()) == 2  # header + the one pending trajectory
    tid = out.strip().splitlines()[1].split()[0]
    assert cli(capsys, "review", "accept", tid, "--db", db)[0] == 0
    cli(capsys, "review", "tag", tid, "gold", "short", "--db", db)
    cli(capsys, "review", "rate", tid, "4", "--db", db)
    cli(capsys, "review", "note", tid, "fine opening", "--db", db)
    code, out, _ = cli(capsys, "review", "edit", tid, "--thinking", "A new plan.", "--note", "shorter", "--db", db)
    assert "saved version 1" in out
    code, out, _ = cli(capsys, "review", "show", tid, "--json", "--db", db)
    shown = json.loads(out)
    assert (shown["status"], shown["tags"], shown["rating"], shown["notes"]) == ("accepted", ["gold", "short"], 4, "fine opening")
    assert shown["thinking"] == "A new plan." and shown["original_thinking"] != "A new plan." and shown["version"] == 1
    code, out, _ = cli(capsys, "review", "list", "--tag", "gold", "--json", "--db", db)
    assert [json.loads(l)["id"] for l in out.splitlines()] == [int(tid)]
    code, _, err = cli(capsys, "review", "rate", tid, "11", "--db", db)
    assert code == 2 and "from 1 to 5" in err
    code, _, err = cli(capsys, "review", "accept", "999", "--db", db)
    assert code == 2 and "no row with id 999" in err


def test_export_every_format_from_the_cli(db, tmp_path, capsys):
    for fmt in ("chat", "sharegpt", "alpaca", "parquet", "hf", "prm", "dpo"):
        code, out, err = cli(capsys, "export", "--format", fmt, "--out", str(tmp_path / fmt), "--db", db)
        assert code == 0, err
        assert (tmp_path / fmt / "README.md").is_file() and "card:" in out
    rows = [json.loads(l) for l in (tmp_path / "chat" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    code, _, err = cli(capsys, "export", "--format", "chat", "--out", str(tmp_path / "r"), "--status", "rejected", "--db", db)
    assert code == 2 and "nothing to export" in err


def test_cli_as_a_real_process(db, tmp_path):
    res = subprocess.run([sys.executable, "-m", "studio.cli", "export", "--format", "chat", "--out", str(tmp_path / "c"),
                          "--source", "r2", "--check-template", "--db", db], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "wrote 1 chat record(s)" in res.stdout
    assert "0 lost or changed the think block" in (tmp_path / "c" / "README.md").read_text()


def test_user_errors_are_one_line_in_a_real_process_too(db, tmp_path):
    """Under `python -m studio.cli` the CLI module is __main__: errors must still end as one line."""
    for args in (["review", "rate", "1", "9"], ["export", "--format", "dpo", "--out", str(tmp_path / "d"), "--source", "reer"]):
        res = subprocess.run([sys.executable, "-m", "studio.cli", *args, "--db", db], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.startswith(f"palimpsest {args[0]}: ") and len(res.stderr.strip().splitlines()) == 1
