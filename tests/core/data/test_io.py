"""Importers: every accepted shape lands as the same prompt or trajectory, duplicates are found by
content, every bad-input class gets a message naming file, line and field, a partly bad file
keeps its good records, and an import failing half way leaves the store exactly as it was."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from needs import ROOT, hellobench

from core.data import imports as io
from core.store import open_store

Q, A = "Write a haiku about rain on a tin roof.", "Tin roof, rain keeps time;\nthe kettle answers softly;\nnight forgets the clock."


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def counts(store) -> tuple[int, int, int]:
    return store.db["prompts"].count, store.db["runs"].count, store.db["trajectories"].count


def test_aliases_and_chat_shapes_all_become_the_same_prompt(store, tmp_path):
    shapes = [
        {"query": Q, "reference": A}, {"instruction": Q, "response": A}, {"prompt": Q, "completion": A},
        {"question": Q, "solution": A}, {"instruction": Q, "input": "", "output": A},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": Q},
                      {"role": "assistant", "content": A}]},
        {"conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}]},
    ]
    paths = [write_jsonl(tmp_path / f"s{i}.jsonl", [row]) for i, row in enumerate(shapes)]
    report = io.import_files(store, paths)
    assert report.total("read") == len(shapes) and report.total("prompts") == 1
    assert report.total("duplicates") == len(shapes) - 1 and not report.problems
    (p,) = store.list_prompts()
    assert (p["query"], p["reference"]) == (Q, A)
    assert set(report.duplicate_ids) == {p["id"]}


def test_alpaca_input_is_appended_to_the_instruction(store, tmp_path):
    io.import_files(store, write_jsonl(tmp_path / "a.jsonl", [{"instruction": Q, "input": "Use a kigo.", "output": A}]))
    assert store.list_prompts()[0]["query"] == Q + "\n\nUse a kigo."


def test_csv_reports_the_line_where_a_bad_row_starts_even_after_multiline_cells(store, tmp_path):
    f = tmp_path / "t.csv"
    f.write_text('query,reference,rating\n"Two\nline query","An answer",3\n"Third",,\n"Fourth","Fine",x\n', encoding="utf-8")
    report = io.import_files(store, f)
    assert report.total("prompts") == 1 and report.total("skipped") == 2
    bad = {(p.line, p.field) for p in report.problems}
    assert (4, "reference") in bad  # row 2 starts on line 4: the quoted cell spans lines 2-3
    assert store.list_prompts()[0]["query"] == "Two\nline query"


def test_deepwriting_parquet_imports_finished_trajectories(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": [{"role": "system", "content": "You think first."}, {"role": "user", "content": Q}],
             "solution": "<think>\nRain first, then the kettle.\n\nMaybe end on time.\n</think>\n" + A},
            {"prompt": [{"role": "user", "content": "Describe fog."}], "solution": "<think>\n\n</think>\nGrey."}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dw.parquet")
    report = io.import_files(store, tmp_path / "dw.parquet")
    assert report.total("trajectories") == 1 and report.total("skipped") == 1
    assert report.problems[0].line == 2 and report.problems[0].field == "solution"
    (t,) = store.list_trajectories()
    assert t["kind"] == "import" and t["thinking"] == "Rain first, then the kettle.\n\nMaybe end on time."
    assert t["answer"] == A and t["details"]["system"] == "You think first."
    assert store.get_run(t["run_id"])["status"] == "finished"
    assert store.get_prompt(t["prompt_id"])["reference"] == A


def release_object(uid: int, q: str, steps: list[str]) -> dict:
    return {"q": q, "ref": A, "uid": uid, "alist": [
        {"initial_response": "<think>\nfirst idea\n</think>", "thinking_segments": ["first idea"],
         "possible_refinements": [["first idea, richer", "first idea, other"]], "corrected_thinking": steps[0]},
        {"initial_response": "<think>\nsecond idea\n</think>", "thinking_segments": ["second", "idea"],
         "possible_refinements": [], "corrected_thinking": steps[1]}], "ppl_final": 1.7}


def test_reer_release_pretty_printed_objects_import_with_their_search_history(store, tmp_path):
    objs = [release_object(7, Q, ["draft one", "the final thinking"]), release_object(8, "Another task.", ["a", "b"])]
    f = tmp_path / "out_meta.jsonl"
    f.write_text("\n".join(json.dumps(o, indent=2) for o in objs) + "\n", encoding="utf-8")
    report = io.import_files(store, f)
    assert report.total("trajectories") == 2 and not report.problems
    t = store.list_trajectories()[0]
    assert t["thinking"] == "the final thinking" and t["answer"] == A
    assert t["details"]["history"] == objs[0]["alist"] and t["details"]["id"] == "7"
    assert t["details"]["source"] == "reer" and t["details"]["scores"] == {"ppl_final": 1.7}
    # the same objects as a JSON array: all duplicates
    g = tmp_path / "arr.json"
    g.write_text(json.dumps(objs, indent=1), encoding="utf-8")
    again = io.import_files(store, g)
    assert again.total("duplicates") == 2 and counts(store)[2] == 2


def test_a_broken_pretty_printed_object_is_named_by_its_line(store, tmp_path):
    f = tmp_path / "broken_meta.jsonl"
    f.write_text(json.dumps(release_object(1, Q, ["x", "y"]), indent=2) + "\n{\n  \"q\": \"cut off\n", encoding="utf-8")
    report = io.import_files(store, f)
    assert report.total("trajectories") == 1
    (p,) = report.problems
    start = len(json.dumps(release_object(1, Q, ["x", "y"]), indent=2).splitlines()) + 1
    assert p.line >= start and "not valid JSON" in p.message and "rest of the file" in p.message


def test_json_arrays_and_objects_may_follow_each_other(store, tmp_path):
    f = tmp_path / "mixed.json"
    f.write_text('[\n {"query": "A?", "reference": "a"},\n {"query": "B?"}\n]\n{\n "query": "C?",\n "reference": "c"\n}\n')
    report = io.import_files(store, f)
    assert {p["query"] for p in store.list_prompts()} == {"A?", "C?"}
    (p,) = report.problems
    assert (p.line, p.field) == (3, "reference")


def test_a_folder_of_data_files_imports_each_file(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "repo" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"prompt": Q, "completion": A}]), tmp_path / "repo" / "data" / "train-0.parquet")
    write_jsonl(tmp_path / "repo" / "extra.jsonl", [{"query": "Other?", "reference": "Yes."}])
    report = io.import_files(store, tmp_path / "repo")
    assert report.total("prompts") == 2 and len(report.files) == 2 and not report.problems


def test_reer_run_output_lines_import_with_their_steps(store, tmp_path):
    from library_fixtures import REER_ITEMS, add_reer

    src = open_store(None)
    rec = src.get_trajectory(add_reer(src, *REER_ITEMS[0]))["details"]
    report = io.import_files(store, write_jsonl(tmp_path / "reer_out.jsonl", [rec]))
    assert report.total("trajectories") == 1
    (t,) = store.list_trajectories()
    assert (t["thinking"], t["answer"]) == (rec["thinking"], rec["reference"])
    assert t["details"]["steps"] == rec["steps"] and t["details"]["source"] == "reer"
    assert (t["final_score"], t["final_ppl"]) == (rec["final_score"], rec["final_ppl"])
    assert store.get_run(t["run_id"])["model"] == rec["model"] and t["filters"] == rec["filters"]


def test_datasets_folder(store, tmp_path):
    from datasets import Dataset

    Dataset.from_list([{"question": Q, "answer": A}, {"question": "Second?", "answer": "Yes."}]).save_to_disk(str(tmp_path / "ds"))
    report = io.import_files(store, tmp_path / "ds")
    assert report.total("prompts") == 2 and {p["query"] for p in store.list_prompts()} == {Q, "Second?"}


def test_text_folder_references_wait_for_their_query(store, tmp_path):
    d = tmp_path / "refs"
    d.mkdir()
    (d / "a.txt").write_text(A, encoding="utf-8")
    (d / "b.txt").write_text("  \n", encoding="utf-8")
    report = io.import_files(store, d)
    assert report.total("prompts") == 1 and report.problems[0].path.endswith("b.txt")
    (p,) = store.list_prompts()
    assert p["query"] == "" and p["query_pending"] == 1 and p["reference"] == A
    assert io.import_files(store, d).total("duplicates") == 1
    io.write_query(store, p["id"], Q)
    p = store.get_prompt(p["id"])
    assert p["query"] == Q and p["query_pending"] == 0
    assert io.import_files(store, write_jsonl(tmp_path / "x.jsonl", [{"query": Q, "reference": A}])).total("duplicates") == 1


def test_hellobench_folder_imports_with_rubrics_and_is_idempotent(store):
    HELLOBENCH = hellobench()
    report = io.import_files(store, HELLOBENCH)
    n = report.total("prompts")
    assert n == len((HELLOBENCH / "heuristic_text_generation.jsonl").read_text().splitlines()) and not report.problems
    p = store.list_prompts()[0]
    assert p["category"] and p["rubric"] and all(isinstance(c, str) for c in p["rubric"])
    again = io.import_files(store, HELLOBENCH / "heuristic_text_generation.jsonl")
    assert again.total("duplicates") == n and store.db["prompts"].count == n


BAD = [  # (line content, field, words the message must hold)
    ('{"query": "q", "reference": ', "", "not valid JSON"),
    ({"query": "q"}, "reference", "missing"),
    ({"reference": "r"}, "query", "missing"),
    ({"query": 3, "reference": "r"}, "query", "must be a string"),
    ({"query": "  ", "reference": "r"}, "query", "is empty"),
    ({"messages": [{"role": "user", "content": "q"}]}, "messages", "no assistant turn"),
    ({"messages": [{"role": "narrator", "content": "q"}]}, "messages[0].role", "not a known role"),
    ({"messages": "hello"}, "messages", "non-empty list"),
    ({"query": "q", "reference": "<think>\nz\n</think>\n"}, "reference", "no answer text"),
    ({"query": "q", "reference": "r", "status": "great"}, "status", "not a review status"),
    ({"query": "q", "reference": "r", "rating": "five"}, "rating", "must be an integer"),
    ({"query": "q", "reference": "r", "rubric": "be clear"}, "rubric", "list of criteria"),
    ({"query": "q", "reference": "r", "tags": [1]}, "tags", "list of strings"),
    ({"query": "q", "reference": "r", "scores": {"ppl": "low"}}, "scores", "object of numbers"),
    ({"q": "q", "ref": "r", "alist": ["nope"]}, "alist", "list of search objects"),
    ({"q": "", "ref": "r", "alist": []}, "q", "missing or empty"),
    ([1, 2], "", "expected an object"),
]


def test_each_bad_input_class_gets_its_message_and_good_lines_still_import(store, tmp_path):
    f = write_jsonl(tmp_path / "mixed.jsonl", [{"query": Q, "reference": A}] + [row for row, _, _ in BAD])
    report = io.import_files(store, f)
    assert report.total("prompts") == 1 and report.total("skipped") == len(BAD)
    by_line = {p.line: p for p in report.problems}
    for i, (_, field, words) in enumerate(BAD, start=2):
        p = by_line[i]
        assert p.path == str(f) and p.field == field and words in p.message, (i, p)
        assert str(p).startswith(f"{f}:{i}")


def test_unreadable_files_are_problems_not_crashes(store, tmp_path):
    (tmp_path / "bin.jsonl").write_bytes(b'{"query": "\xff\xfe"}\n')
    (tmp_path / "notes.docx").write_text("x")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "wide.csv").write_text("query,reference\nq,r,extra\n")
    good = write_jsonl(tmp_path / "good.jsonl", [{"query": Q, "reference": A}])
    paths = [tmp_path / n for n in ("bin.jsonl", "notes.docx", "missing.jsonl", "empty_dir", "bad.parquet", "wide.csv")]
    report = io.import_files(store, paths + [good])
    msgs = {Path(p.path).name: p.message for p in report.problems}
    assert "not UTF-8" in msgs["bin.jsonl"] and "unknown file type" in msgs["notes.docx"]
    assert "no such file" in msgs["missing.jsonl"] and "no .txt files, no data files" in msgs["empty_dir"]
    assert "not a readable Parquet" in msgs["bad.parquet"] and "more value(s) than the header" in msgs["wide.csv"]
    assert report.total("prompts") == 1


def test_a_failure_half_way_leaves_the_store_as_it_was(store, tmp_path, monkeypatch):
    io.import_files(store, write_jsonl(tmp_path / "before.jsonl", [{"query": "Kept?", "reference": "Kept."}]))
    before = counts(store)
    rows = [{"query": f"Q{i}", "reference": f"<think>\nplan {i}\n</think>\nA{i}"} for i in range(5)]
    real, calls = store.save_trajectory, []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return real(*a, **k)

    monkeypatch.setattr(store, "save_trajectory", failing)
    with pytest.raises(io.ImportFailed, match="rolled back, nothing of it is stored"):
        io.import_files(store, write_jsonl(tmp_path / "big.jsonl", rows))
    assert counts(store) == before and len(calls) == 3
    assert [p["query"] for p in store.list_prompts()] == ["Kept?"]
    monkeypatch.undo()
    assert io.import_files(store, tmp_path / "big.jsonl").total("trajectories") == 5  # and it can simply be retried


def test_a_killed_import_leaves_nothing_half_written(tmp_path):
    """A real process killed mid-import (SIGKILL inside the transaction): the file keeps only what
    was committed before."""
    import os
    import signal
    import subprocess
    import sys

    db = tmp_path / "s.db"
    with open_store(db) as s:
        s.add_prompt("Kept?", "Kept.")
    rows = [{"query": f"Q{i}", "reference": f"A{i}"} for i in range(50)]
    f = write_jsonl(tmp_path / "many.jsonl", rows)
    code = (f"import os, signal, core.data.imports as io\nfrom core.store import open_store\ns = open_store({str(db)!r})\n"
            "real = s.add_prompt\nn = [0]\ndef add(*a, **k):\n    n[0] += 1\n"
            "    if n[0] == 20: os.kill(os.getpid(), signal.SIGKILL)\n    return real(*a, **k)\n"
            f"s.add_prompt = add\nio.import_files(s, {str(f)!r})\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.returncode == -signal.SIGKILL
    with open_store(db) as s:
        assert [p["query"] for p in s.list_prompts()] == ["Kept?"]
