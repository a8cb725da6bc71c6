"""The assistant-turn contract and the scoring templates (core.format): the turn round-trips, the
`train` template scores y under exactly the tokens training learns, and `none` scores x + z + y
exactly as given (an independent forward of the concatenated text agrees)."""
from __future__ import annotations

import pytest
import torch

from core.format import (
    DEFAULT_TEMPLATE,
    TEMPLATES,
    THINK_CLOSE,
    THINK_OPEN,
    answer_part,
    assistant_turn,
    split_assistant_turn,
)
from core.models.scoring import ScoringConfig, ScoringError, build_request, score
from core.segments import split_segments
from core.settings import SettingError, loading

LONG = "This paragraph plans the piece at some length, so that it stands as a segment of its own. " * 2
THINKING = f"{LONG}\n\nHmm, maybe the opening should be quieter.\n\n{LONG}"
ANSWER = "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife."


@pytest.mark.parametrize("z, y", [
    (THINKING, ANSWER),
    ("", ANSWER),  # no thinking: an empty block
    ("I will write it now.\n\n", "\nIt is a truth.\n"),  # blank line after z, newlines around y
    ("one line", "two\n\nparagraphs"),
])
def test_assistant_turn_round_trips(z, y):
    turn = assistant_turn(z, y)
    assert turn.startswith(THINK_OPEN + "\n") and turn.count(THINK_CLOSE) == 1
    assert split_assistant_turn(turn) == (z.strip(), y.strip())
    assert answer_part(turn) == y.strip()
    assert assistant_turn(*split_assistant_turn(turn)) == turn


def test_turn_without_think_block_is_all_answer():
    assert split_assistant_turn("  Just the answer.\n") == ("", "Just the answer.")
    assert answer_part("No block here. ") == "No block here. "


def test_templates_are_named_and_the_default_is_the_training_layout():
    assert DEFAULT_TEMPLATE == "train" == ScoringConfig().template
    assert set(TEMPLATES) == {"train", "chat", "none"}
    with pytest.raises(SettingError, match="template='jinja': must be one of train, chat, none"):
        ScoringConfig(template="jinja")  # refused when the settings are made, before any model call
    with loading(), pytest.raises(ScoringError, match="use one of train, chat, none"):
        build_request(None, "q", "", "y", ScoringConfig(template="jinja"))  # stored settings, checked at use


def test_runs_stored_before_keep_the_template_they_were_scored_with():
    from core.reer.config import ReerConfig
    from core.store import settings_key

    stored = {**ReerConfig().as_dict(), "template": "chat"}  # what every run saved before the assistant-turn contract holds
    assert ReerConfig.from_dict(stored).scoring().template == "chat"
    assert ReerConfig.from_dict({k: v for k, v in stored.items() if k != "template"}).template == "chat"
    assert ReerConfig.from_dict(ReerConfig().as_dict()).scoring().template == "train"
    # a new run with the defaults never picks up an old paused one scored the other way
    assert settings_key(ReerConfig().as_dict()) != settings_key(stored)


def test_train_template_scores_y_under_the_exact_training_tokens(tiny_lm):
    """REER's scoring text is a token-for-token prefix of what the trainer encodes for the
    exported record, ending right after y."""
    from core.train.data import chat_record, encode

    query = "Write the opening line of a novel about manners."
    req = build_request(tiny_lm, query, split_segments(THINKING), ANSWER, ScoringConfig(template="train"))
    ids = [t for p in req.context for t in tiny_lm.encode(p)] + tiny_lm.encode(req.continuation)
    trained = encode(tiny_lm.tokenizer, chat_record("1", query, THINKING, ANSWER)).input_ids
    assert trained[:len(ids)] == ids
    assert tiny_lm.tokenizer.decode(trained[len(ids):]).startswith("<|im_end|>")
    assert "".join(req.context).endswith("\n" + THINK_CLOSE + "\n") and req.continuation == ANSWER
    empty = build_request(tiny_lm, query, "", ANSWER, ScoringConfig(template="train"))
    assert "".join(empty.context).endswith(assistant_turn("", ANSWER)[:-len(ANSWER)])


def test_chat_template_keeps_the_answer_tags_runs_were_stored_with(tiny_lm):
    req = build_request(tiny_lm, "q", ["A plan."], ANSWER, ScoringConfig(template="chat"))
    text = "".join(req.context)
    assert text.endswith("<think>\nA plan.\n</think>\n<answer>\n") and req.continuation == ANSWER
    pieces = list(req.context) + [req.continuation]
    assert sum((tiny_lm.encode(p) for p in pieces), []) == tiny_lm.encode("".join(pieces))


def test_none_template_adds_nothing_between_x_and_z(tiny_lm):
    cfg = ScoringConfig(template="none")
    req = build_request(tiny_lm, "Q: write a haiku.", ["I plan a haiku.", "Then snow."], " Snow", cfg)
    assert req.context == ("Q: write a haiku.I plan a haiku.\n\nThen snow.",) and req.continuation == " Snow"
    with pytest.raises(ScoringError, match="needs a query or a thinking text"):
        build_request(tiny_lm, "", "", "y", cfg)


def _forward(lm, context: str, continuation: str) -> float:
    """Mean log-prob of `continuation` after `context`: one plain HF forward, nothing shared
    with the scoring code (harness tokenization: context and continuation apart)."""
    tok = lm.tokenizer
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), dim=-1)
    picked = logp[len(ctx) - 1:-1].gather(-1, ids[0, len(ctx):, None]).squeeze(-1)
    return picked.mean().item()


@pytest.mark.parametrize("x, z, y", [
    ("Write the opening of a novel.\n", "I plan the opening.\n\nI will write it now.\n\n", ANSWER),  # z ends in a blank line
    ("Task: a haiku.", "\n\n  Snow first, then the cedar.\n", "Snow on the cedar"),  # z opens with a blank line
    ("Q: write a haiku.", "", " Snow on the cedar"),  # no thinking: the space stays with y
])
def test_none_template_scores_x_z_y_exactly_as_given(tiny_lm, x, z, y):
    got = score(tiny_lm, x, z, y, ScoringConfig(template="none"), keep_tokens=True)
    assert "".join(got.tokens) == y
    assert abs(got.mean_logprob - _forward(tiny_lm, x + z, y)) < 1e-5
