"""Splitting texts into segments (docs/design.md, REER step 3).

A segment is a paragraph-like unit of a trajectory: split on blank lines, keep fenced code
and display-maths blocks whole, merge pieces shorter than `min_chars` into their neighbour;
if that leaves a single segment, split on single newlines instead. Joining segments with
"\n\n" gives back a normalised text (runs of blank lines collapse to one).
`answer_part` (the answer after a think block) lives in core.format and is re-exported here.
Does not know the think block's layout (core.format).
"""
from __future__ import annotations

import re

from core.format import answer_part

__all__ = ["SEP", "answer_part", "join_segments", "split_segments"]

SEP = "\n\n"
_FENCE = re.compile(r"^\s*(```|~~~|\$\$)")


def _blocks(text: str, splitter: str) -> list[str]:
    """Split on `splitter` (a regex), keeping fenced/maths blocks whole."""
    pieces = [p for p in re.split(splitter, text.strip()) if p.strip()]
    out: list[str] = []
    open_fence = None
    for piece in pieces:
        if open_fence is not None:
            out[-1] = out[-1] + SEP + piece
        else:
            out.append(piece)
        for line in piece.splitlines():
            m = _FENCE.match(line)
            if m:
                open_fence = None if open_fence == m.group(1) else (open_fence or m.group(1))
    return [p.strip("\n") for p in out]


def _merge_short(pieces: list[str], min_chars: int, joiner: str) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and (len(out[-1]) < min_chars or len(piece) < min_chars):
            out[-1] = out[-1] + joiner + piece
        else:
            out.append(piece)
    return out


def split_segments(text: str, min_chars: int = 100) -> list[str]:
    """Segments of a trajectory (see module docstring). Empty text gives []."""
    if not text.strip():
        return []
    segs = _merge_short(_blocks(text, r"\n\s*\n"), min_chars, SEP)
    if len(segs) == 1:
        lines = _merge_short(_blocks(text, r"\n"), min_chars, "\n")
        if len(lines) > 1:
            return lines
    return segs


def join_segments(segments: list[str]) -> str:
    return SEP.join(segments)
