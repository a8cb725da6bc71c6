"""Segmenting trajectories and reading input lines: pure functions, no model."""
from __future__ import annotations

import json

import pytest

from core.data.items import InputError, read_items
from core.segments import answer_part, join_segments, split_segments

LONG = "This sentence is long enough to stand as a paragraph of planning on its own, surely. " * 2


def test_blank_lines_split_and_short_pieces_merge():
    text = f"{LONG}\n\nShort.\n\n{LONG}\n\n\n{LONG}"
    segs = split_segments(text)
    assert len(segs) == 3 and segs[0].endswith("Short.")
    assert all(len(s) >= 100 for s in segs)


def test_fenced_blocks_stay_whole():
    code = "```\nline one\n\nline two after a blank\n```"
    segs = split_segments(f"{LONG}\n\n{code}\n\n{LONG}")
    assert any(code in s for s in segs)


def test_single_block_falls_back_to_newlines():
    text = "\n".join([LONG, LONG, LONG])
    assert len(split_segments(text)) == 3


def test_join_roundtrip_and_empty():
    segs = split_segments(f"{LONG}\n\n{LONG}")
    assert split_segments(join_segments(segs)) == segs
    assert split_segments("  \n ") == []


def test_answer_part_strips_think_block():
    assert answer_part("<think>plan</think>\n\nThe answer.") == "The answer."
    assert answer_part("No block here.") == "No block here."


def test_read_items_reports_every_bad_line(tmp_path):
    p = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "query": "q", "reference": "r"}),
        "{broken",
        json.dumps({"query": "q"}),
        json.dumps({"instruction": "q", "response": "   "}),
        json.dumps({"instruction": "q", "response": "r", "thinking": 5}),
        json.dumps(["not", "an", "object"]),
        "",
        json.dumps({"prompt": "q2", "completion": "r2"}),
    ]
    p.write_text("\n".join(lines) + "\n")
    items, problems = read_items(p)
    assert [i.query for i in items] == ["q", "q2"] and items[1].id == "in.jsonl:8"
    assert [pr.line for pr in problems] == [2, 3, 4, 5, 6]
    text = [str(pr) for pr in problems]
    assert "not valid JSON" in text[0] and "field 'reference'" in text[1] and "no answer text" in text[2]
    assert "field 'thinking'" in text[3] and "expected an object" in text[4]


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_items(tmp_path / "absent.jsonl")
