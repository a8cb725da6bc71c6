"""Trajectory filters: each catches its own failure, and a good trajectory passes them all."""
from __future__ import annotations

import random

import pytest

from core.format import assistant_turn
from core.quality import (
    QualityConfig,
    broken_think_block,
    check,
    copies_answer,
    longest_common_substring,
    repeat_ratio,
    repetitive,
    single_segment,
    too_short,
)
from core.segments import split_segments


def WORDS(text: str) -> int:
    """A stand-in for a model's count_tokens: one token per whitespace word."""
    return len(text.split())

ANSWER = """The Lighthouse Keeper's Daughter

Every evening at six, Mara climbed the ninety-one steps with a thermos of tea and a paperback
she never finished. Her father had kept the light for thirty years; now the light kept itself,
automated in 2009, and she kept him company instead.

He did not talk about the sea. He talked about the steps: which ones had cracked in the winter
of '87, which one her mother had sat on to catch her breath the year before she died. Mara
learned the tower the way other daughters learn recipes.

When he went into the home in March, she still climbed. The lamp turned without her. But someone,
she thought, should count the steps."""

GOOD = """I want this to be a quiet story about inheritance, not a story about the sea. The lighthouse is
just the setting; what matters is a daughter keeping faith with a job that no longer needs doing.
So the emotional centre has to be small and physical, something she can do with her hands and feet.

Hmm, maybe the steps are that thing. If the light is automated, the keeper's knowledge becomes
useless except as memory, and the steps are where memory lives. Each one can hold a date, a
crack, a person. That gives me a way to talk about the dead mother without a flashback.

Wait, should the father speak at all? If he tells stories about storms it turns heroic and loud.
Better if he only talks about ordinary damage, a cracked tread, a winter, so the grief stays
under the surface and the reader does the work of noticing it.

Structure: three short paragraphs. First the routine and the fact of automation. Second the
father's odd way of remembering, ending on the mother. Third the loss of the father, and her
choosing to keep climbing anyway. The last line should be a decision, not an image, so it lands
on her rather than on the lighthouse."""


def test_a_good_trajectory_passes_every_filter():
    segments = split_segments(GOOD)
    assert len(segments) == 4
    assert too_short(GOOD, 100, WORDS) == []
    assert single_segment(segments) == []
    assert repetitive(GOOD) == [] and repeat_ratio(GOOD) < 0.05
    assert copies_answer(GOOD, ANSWER) == []
    assert broken_think_block(assistant_turn(GOOD, ANSWER)) == []
    assert check(GOOD, segments, ANSWER, count_tokens=WORDS) == {"passed": True, "reasons": []}


def test_too_short_counts_the_models_tokens():
    assert too_short("abc", min_tokens=5, count_tokens=lambda s: 3 * len(s)) == []
    assert too_short(GOOD, 100, count_tokens=lambda s: 12) == ["too short: 12 tokens < 100"]
    with pytest.raises(TypeError):  # no estimate from words: the caller must pass the model's count
        too_short(GOOD, 100)


def test_single_segment():
    assert single_segment(["only one thought here"]) == ["single segment: 1 segment < 2"]
    assert single_segment([]) == ["single segment: 0 segments < 2"]
    assert single_segment(["one", "   "]) == ["single segment: 1 segment < 2"]
    assert single_segment(["one", "two"]) == []
    assert single_segment(["one", "two"], min_segments=3) == ["single segment: 2 segments < 3"]


def test_repetitive_catches_loops():
    loop = "Let me think about the opening again. " * 20
    assert repeat_ratio(loop) > 0.8
    (reason,) = repetitive(loop)
    assert reason.startswith("repetitive: ") and "4-word sequences repeat (max 30%)" in reason
    # a good text with one paragraph pasted twice repeats about half its n-grams
    twice = GOOD + "\n\n" + GOOD
    assert 0.45 < repeat_ratio(twice) < 0.55 and repetitive(twice) != []
    assert repetitive(twice, max_ratio=0.6) == []
    assert repeat_ratio("too few words") == 0.0


def test_copies_answer_catches_a_pasted_answer():
    leak = GOOD + "\n\nDraft: " + ANSWER[200:520]
    (reason,) = copies_answer(leak, ANSWER)
    assert reason.startswith("copies the answer: ") and "(max 200)" in reason
    n = int(reason.split(": ")[1].split()[0])
    assert 300 <= n <= 330
    # re-wrapped and re-cased copies still count
    rewrapped = GOOD + "\n" + " ".join(ANSWER[200:520].upper().split())
    assert copies_answer(rewrapped, ANSWER) != []
    # a short quotation (the title, a phrase) is allowed
    assert copies_answer(GOOD + "\nTitle: The Lighthouse Keeper's Daughter.", ANSWER) == []
    assert copies_answer(leak, ANSWER, max_chars=400) == []


def test_longest_common_substring_is_exact():
    assert longest_common_substring("xxabcdefyy", "zzabcdeq") == (5, 2)
    assert longest_common_substring("abc", "xyz") == (0, -1)
    assert longest_common_substring("abcdef", "abcdef", at_least=7) == (0, -1)
    rng = random.Random(0)
    words = "the a of light evening she walked slowly toward water plan open with tide".split()
    a = " ".join(rng.choice(words) for _ in range(400))[:2000]
    b = " ".join(rng.choice(words) for _ in range(400))[:2000]
    planted = a[700:1000]
    b = b[:900] + planted + b[900:]
    n, start = longest_common_substring(a, b, at_least=201)
    assert n >= 300 and a[start:start + n] in b
    assert a[start:start + n + 1] not in b or start + n == len(a)  # maximal to the right
    assert copies_answer(a, b) != [] and copies_answer(a, b[:900]) == []


@pytest.mark.parametrize("text, reason", [
    ("Just an answer, no thinking.", "think block missing"),
    ("<think>\nplanning\n\nThe answer", "think block unclosed"),
    ("<think>\nplan <think> inner </think> more\n</think>\nanswer", "think block nested"),
    ("planning\n</think>\nanswer", "</think> without an opening <think>"),
    ("<think>\nplan\n</think>\n</think>\nanswer", "think block broken: </think> without an opening <think>"),
    ("<think>\nplan\n</think>\nanswer\n<think>\nagain\n</think>\nmore", "think block repeated: 2 blocks"),
    ("Sure! <think>\nplan\n</think>\nanswer", "think block late"),
    ("<think>\n  \n</think>\nanswer", "think block empty"),
    ("<think>\nplan\n</think>\n  ", "no answer after </think>"),
    ("<THINK>\nplan\n<think>\n</think>\nanswer", "think block nested"),
])
def test_broken_think_block(text, reason):
    reasons = broken_think_block(text)
    assert any(reason in r for r in reasons), reasons


def test_think_block_ok_shapes():
    assert broken_think_block("<think>\nplan\n</think>\n\nanswer") == []
    assert broken_think_block("  \n<think>plan</think>answer") == []


def test_think_tags_inside_the_thinking_break_the_block():
    bad = GOOD.replace("Structure:", "</think>\nStructure:")
    out = check(bad, split_segments(bad), ANSWER, count_tokens=WORDS)
    assert not out["passed"] and any("think block" in r for r in out["reasons"])
    bad = GOOD.replace("Structure:", "<think> Structure:")
    assert any("nested" in r for r in check(bad, split_segments(bad), ANSWER, count_tokens=WORDS)["reasons"])


def test_check_collects_readable_reasons_and_honours_config():
    z = "I should write it."
    out = check(z, [z], ANSWER, count_tokens=WORDS)
    assert out == {"passed": False, "reasons": ["too short: 4 tokens < 100", "single segment: 1 segment < 2"]}
    relaxed = QualityConfig(min_tokens=3, disabled=("single_segment",))
    assert check(z, [z], ANSWER, relaxed, count_tokens=WORDS) == {"passed": True, "reasons": []}
    assert check(z, [z], ANSWER, count_tokens=lambda s: 500)["reasons"] == ["single segment: 1 segment < 2"]
    with pytest.raises(ValueError, match="unknown filter.*too_long"):
        check(z, [z], ANSWER, QualityConfig(disabled=("too_long",)), count_tokens=WORDS)
