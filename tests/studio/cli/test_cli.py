"""The `palimpsest` command, run for real as a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from needs import ROOT

from core.prompts import PromptNotFound, render


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "studio.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.model
def test_score_writes_one_line_per_good_input_and_reports_bad_ones(tmp_path):
    rows = [json.loads(l) for l in open(ROOT / "data" / "samples.jsonl")][:2]
    lines = [json.dumps({"id": r["id"], "query": r["query"], "thinking": r["thinking"], "reference": r["reference"]}) for r in rows]
    lines.insert(1, "{oops")
    lines.append(json.dumps({"instruction": rows[0]["query"], "response": rows[0]["reference"]}))  # HelloBench names
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n")
    res = run("score", "--input", str(src), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert f"{src}:2: not valid JSON" in res.stderr and "Traceback" not in res.stderr
    got = [json.loads(l) for l in out.read_text().splitlines()]
    assert [g["id"] for g in got] == ["sample-01", "sample-02", "in.jsonl:4"]
    for g in got:
        assert set(g) == {"id", "n_tokens", "mean_logprob", "ppl", "score"}
        assert g["n_tokens"] > 100 and 1 < g["ppl"] < 1000 and 0 < g["score"] < 2
    # thinking helps: the same reference without its trajectory is less expected
    assert got[0]["ppl"] < got[2]["ppl"]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    res = run("score", "--input", str(tmp_path / "missing.jsonl"))
    assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "reference": "fine"}\n{"query": "q"}\n')
    res = run("score", "--input", str(bad), "--strict")
    assert res.returncode == 2 and "bad.jsonl:2 field 'reference'" in res.stderr and "--strict" in res.stderr
    res = run("score", "--input", str(bad), "--model", str(tmp_path / "no-model"))
    assert res.returncode == 2 and "no such folder" in res.stderr and "Traceback" not in res.stderr


def test_prompt_templates_load_by_name():
    text = render("rewrite_segment", task="Write a poem.", segment="I start with the sea.")
    assert "Write a poem." in text and "I start with the sea." in text
    with pytest.raises(PromptNotFound, match="known: .*rewrite_segment"):
        render("no_such_prompt")
