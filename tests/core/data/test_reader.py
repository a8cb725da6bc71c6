"""One input reader for every command: `score`, `reer run`, `r2 run`, training and the studio's
samples read through core.data.records as `import` does, so every shape import accepts (any
alias incl. q/ref/output, CSV, Parquet) gives the same items everywhere, and every bad record
names its file, line and field. The CLI tests run `palimpsest` for real on a tiny random model
saved to disk (no real model, no download)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from needs import ROOT

from core.data import imports
from core.data.items import InputError, Item, read_items

Q1, A1 = "Write a two-line poem about fog.", "Fog on the harbour;\nthe gulls speak in grey."
Q2, A2 = "Describe a kettle in one sentence.", "A squat steel kettle ticks as it cools on the stove."
ROWS = [{"id": "a", "query": Q1, "reference": A1, "category": "poetry"},
        {"id": "b", "query": Q2, "reference": A2}]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    cols = sorted({k for r in rows for k in r})
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "studio.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# ---- the reading function -------------------------------------------------------------------------

def test_q_ref_and_output_aliases_become_items(tmp_path):
    f = write_jsonl(tmp_path / "in.jsonl", [{"uid": 7, "q": Q1, "ref": A1},
                                            {"instruction": Q2, "input": "", "output": A2},
                                            {"x": Q1, "y": A2, "z": "I plan a kettle."}])
    items, problems = read_items(f)
    assert not problems
    assert [(i.id, i.query, i.reference, i.thinking) for i in items] == [
        ("7", Q1, A1, ""), ("in.jsonl:2", Q2, A2, ""), ("in.jsonl:3", Q1, A2, "I plan a kettle.")]


def test_csv_parquet_and_jsonl_give_the_same_items(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r, "category": r.get("category")} for r in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    got = [read_items(p) for p in (write_jsonl(tmp_path / "in.jsonl", ROWS), write_csv(tmp_path / "in.csv", ROWS),
                                   tmp_path / "in.parquet")]
    assert all(not problems for _, problems in got)
    assert got[0][0] == got[1][0] == got[2][0] == [Item("a", Q1, A1, "", "poetry"), Item("b", Q2, A2)]


def test_import_and_score_read_the_same_items(store, tmp_path):
    f = write_jsonl(tmp_path / "mixed.jsonl", [
        {"id": "p1", "instruction": Q1, "response": A1, "checklists": ["Is it two lines?"], "category": "poetry"},
        {"q": Q2, "ref": A2, "uid": "p2"},
        {"messages": [{"role": "user", "content": Q2},
                      {"role": "assistant", "content": f"<think>\nSteam.\n</think>\n{A1}"}]},
    ])
    items, problems = read_items(f)
    report = imports.import_files(store, f)
    assert not problems and not report.problems and len(items) == 3
    prompts = {(p["query"], p["reference"]): p for p in store.list_prompts()}
    assert set(prompts) == {(i.query, i.reference) for i in items}
    first = prompts[(Q1, A1)]
    assert (first["id"], first["category"], tuple(first["rubric"])) == (items[0].id, "poetry", items[0].rubric)
    (traj,) = store.db.query("SELECT thinking, answer FROM trajectories")
    assert (traj["thinking"], traj["answer"]) == (items[2].thinking, items[2].reference) == ("Steam.", A1)


def test_bad_records_name_file_line_and_field(tmp_path):
    f = write_csv(tmp_path / "in.csv", [{"query": Q1, "reference": A1, "thinking": ""},
                                        {"query": Q2, "reference": "", "thinking": ""},
                                        {"query": "", "reference": A2, "thinking": ""}])
    items, problems = read_items(f)
    assert [i.query for i in items] == [Q1]
    # row 1 spans lines 2-3 (A1 holds a newline), so the bad rows start on lines 4 and 5
    assert [str(p).split(": ")[0] for p in problems] == [f"{f}:4 field 'reference'", f"{f}:5 field 'query'"]
    bad_thinking = {"query": Q2, "reference": A2, "trajectory": ["z"]}
    j = write_jsonl(tmp_path / "in.jsonl", [ROWS[0], "{oops", {"q": Q1, "ref": 3}, bad_thinking])
    _, problems = read_items(j)
    where = [(p.path, p.line, p.field) for p in problems]
    assert where == [(str(j), 2, ""), (str(j), 3, "ref"), (str(j), 4, "trajectory")]
    assert "not valid JSON" in problems[0].message


def test_references_without_a_query_are_problems_not_items(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "essay.txt").write_text(A1, encoding="utf-8")
    items, problems = read_items(folder)
    assert items == [] and [(p.path, p.field) for p in problems] == [(str(folder / "essay.txt"), "query")]


def test_a_csv_that_is_not_utf8_is_an_input_error(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("query,reference\nq,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_items(f)


def test_studio_samples_load_through_the_reader(tmp_path):
    from studio.app import load_samples

    samples = load_samples(write_csv(tmp_path / "samples.csv", ROWS))
    assert [(s["id"], s["query"], s["reference"], s["category"]) for s in samples] == [
        ("a", Q1, A1, "poetry"), ("b", Q2, A2, None)]


# ---- the commands, on a tiny random model ----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model_dir(tiny_lm, tmp_path_factory):
    """The tiny random Llama (tests/conftest.py) saved as a model folder the CLI can load."""
    where = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(where)
    tiny_lm.tokenizer.save_pretrained(where)
    return where


def test_score_reads_a_csv_with_alias_columns(tmp_path, tiny_model_dir):
    rows = [{"id": r["id"], "prompt": r["query"], "output": r["reference"]} for r in ROWS]
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.jsonl"
    res = cli("score", "--input", str(src), "--out", str(out), "--model", str(tiny_model_dir))
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "b"] and all(g["n_tokens"] > 5 for g in got)
    assert "scored 2 item(s); skipped 0" in res.stderr


def test_reer_run_reads_q_ref_jsonl(tmp_path, tiny_model_dir):
    src = write_jsonl(tmp_path / "in.jsonl", [{"uid": "r1", "q": Q1, "ref": A1}])
    out = tmp_path / "out.jsonl"
    res = cli("reer", "run", "--input", str(src), "--out", str(out), "--db", str(tmp_path / "p.db"),
              "--model", str(tiny_model_dir), "--candidates", "2", "--max-steps", "1",
              "--draft-max-new-tokens", "100", "--max-new-tokens", "20", "--seed", "1")
    assert res.returncode == 0, res.stderr
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (rec["id"], rec["query"], rec["reference"]) == ("r1", Q1, A1)
