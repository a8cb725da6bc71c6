"""The leftover filters: template markers, leaked instructions and a cut
ending, on REER candidates and thinking and on R2 answers; and token counts from the model.

The lists the filters use come from the prompt files (core.prompts), so every template's own
sentences and header lines are caught when echoed. A failed filter names itself and quotes the
offending snippet escaped; an R2 record that fails keeps the Review path ("failed filters").
"""
from __future__ import annotations

import pytest

from core.data.curation import FAILED, queue_status
from core.models.scripted import Rule, ScriptedLM
from core.prompts import instruction_sentences, names, section_labels, template
from core.quality import (
    QualityConfig,
    check,
    cut_ending,
    leaked_instructions,
    leftovers,
    template_markers,
)
from core.r2.config import R2Config
from core.r2.jobs import r2_job
from core.r2.loop import _clean
from core.reer.config import ReerConfig
from core.reer.search import expand_candidates, run_reer
from core.store import open_store
from r2_fakes import FakeLM, revision_text

ESSAY = ("Libraries should stay open until midnight. Students, shift workers and parents all need a quiet, "
         "warm room after nine.\n\nThe cost is modest: one librarian and the lights. A pilot at one branch "
         "would show whether people come.")
POEM = "Rain on the tin roof\ncounting the hours\nI lie awake and listen\nuntil the sound is sleep"
LIST = "Three steps for the pilot:\n- open one branch late\n- count the visitors\n- report after six months"
DIALOGUE = 'She looked at the lamp and said, "Not yet.”'
HOWTO = "Do not leave the jars in the sun. Use several small jars rather than one big one. Write the date on each."


def test_clean_texts_pass_every_leftover_filter():
    for text in (ESSAY, POEM, LIST, DIALOGUE, "## Response to the critics\n\n" + ESSAY):
        assert leftovers(text) == [], text
    assert leftovers(HOWTO, openings=False) == []  # an answer may instruct its reader
    assert leftovers("I should open with the rain. Then I will name the roof.") == []
    assert leftovers('"Think about it," Jake said. The rain kept on.') == []  # dialogue, not an instruction


def test_an_r2_answer_that_opens_with_the_delimiter_and_is_cut_fails_naming_both():
    text = "<<<\nLibraries should stay open until midnight because students who work late need a"
    reasons = leftovers(text, openings=False)
    assert [r.split(":")[0] for r in reasons] == ["template marker", "cut ending"]
    assert reasons[0].startswith('template marker: "<<<" at the start: "<<<\\nLibraries')  # escaped snippet
    assert all("\n" not in r for r in reasons)  # one line whatever the text holds
    assert "students who work late need a" in reasons[1]
    assert cut_ending("A short essay. It ends", finish_reason="length")  # the budget ran out: certain
    assert cut_ending("Dogs are welcome on patios. Some")  # a sentence ended on the line: what follows is cut
    assert cut_ending("Dogs are welcome on patios.\n\nSome") == []  # a short line alone may be a label
    assert cut_ending("A short essay. It ends well.", finish_reason="length") == []


@pytest.mark.parametrize("marker", ["[ANSWER] Libraries matter.", "### Draft\nLibraries matter.",
                                    "Libraries matter.\n>>>", "Libraries matter.<|im_end|>",
                                    "The draft:\nLibraries matter.", "Libraries matter.\n</draft>",
                                    "<rewrite>Libraries matter.</rewrite>"])
def test_template_markers_anywhere_in_a_final_text(marker):
    assert template_markers(marker), marker


def test_every_template_sentence_and_header_is_known_from_the_files():
    sentences, labels = instruction_sentences(), section_labels()
    assert "Rewrite only that paragraph, in the first person, as the writer thinking ahead." in sentences
    assert "Write the complete improved version now, making those changes." in sentences
    # (Chinese templates have no spaces: a "word" is a clause, so only their long sentences are indexed)
    assert all(any(s in template(n) for s in sentences) for n in names()
               if n != "reer_format_analysis" and not n.endswith("_zh"))
    assert {"The paragraph to rewrite:", "Their thinking so far:", "Here is my draft:"} <= set(labels)
    for s in sentences:  # echoed anywhere, each is a leaked instruction (the opening too, in a thinking)
        assert leaked_instructions(f"I think about the rain. {s}"), s
    assert not any('Hmm, maybe' in s for s in sentences)  # the cues we ask for are quoted: never a leak


def test_a_candidate_that_tells_itself_to_rewrite_again_is_rejected_with_the_reason():
    lm = ScriptedLM(rules=[Rule(when=("The paragraph to rewrite",), reply=[
        " the rain first. Rewrite the paragraph again, making it richer and more concrete.</rewrite>",
        " the rain first, and the roof can wait until the second paragraph.</rewrite>"])])
    segs = ["I want to open with the rain and keep the roof for later in the piece.",
            "Then the roof closes it, quietly, without explaining the rain at all."]
    cfg = ReerConfig(candidates=2)
    out = expand_candidates(lm, "A poem about rain.", "Rain on the roof.", segs, 0, cfg, step=1)
    (raw0, text0, err0), (_, text1, err1) = out
    assert text0 is None and err0.startswith('leaked instruction: "Rewrite the paragraph again')
    assert text1 and err1 is None
    # the filter can be turned off like the others
    off = ReerConfig(candidates=2, quality=QualityConfig(disabled=("leaked_instructions",)))
    assert expand_candidates(lm, "A poem about rain.", "Rain on the roof.", segs, 0, off, step=1)[0][1]


def test_reer_thinking_with_a_marker_and_a_cut_end_fails_and_counts_the_models_tokens():
    draft = ("I want to open with the rain, and keep the roof for later.\n\n"
             "<<<\nThen the roof closes it, quietly, and I will end on")
    lm = ScriptedLM(rules=[Rule(when=("you think privately",), reply=draft)])
    cfg = ReerConfig(max_steps=0, min_segment_chars=0, quality=QualityConfig(min_tokens=500))
    rec = run_reer(lm, "r1", "rain", "A poem about rain.", "Rain on the roof.", cfg)
    reasons = rec["filters"]["reasons"]
    assert rec["finish_reason"] == "dropped" and not rec["filters"]["passed"]
    # too short counts the model's tokens (the scripted model's: words and punctuation), not words * 1.3
    assert f"too short: {lm.count_tokens(rec['thinking'])} tokens < 500" in reasons
    assert any(r.startswith('template marker: "<<<"') for r in reasons)
    assert any(r.startswith("cut ending:") and "I will end on" in r for r in reasons)


def test_check_names_the_leftover_filters_and_honours_disabled():
    thinking = "I want to open with the rain.\n\nKeep its opening words. Then the roof closes it."
    words = lambda s: len(s.split())  # noqa: E731
    cfg = QualityConfig(min_tokens=1, min_segments=1)
    assert [r.split(":")[0] for r in check(thinking, [thinking], "x", cfg, count_tokens=words)["reasons"]] == \
        ["leaked instruction"]
    off = QualityConfig(min_tokens=1, min_segments=1, disabled=("leaked_instructions",))
    assert check(thinking, [thinking], "x", off, count_tokens=words)["passed"]


def test_r2_prompts_quote_drafts_in_tags_the_parser_strips():
    for name in ("r2_critique", "r2_reflect", "r2_revise"):
        assert "<draft>" in template(name) and "<<<" not in template(name)
    assert _clean("<draft>\nThe keeper climbs the stairs.\n</draft>") == "The keeper climbs the stairs."


class LeakyWriter(FakeLM):
    """Writes a revision that opens with the judge prompt's delimiter and stops mid-sentence."""

    def reply(self, kind, messages, config, call_no):
        if kind == "revise":
            return "<<<\n" + revision_text(1) + " Then the keeper rows out and the"
        return super().reply(kind, messages, config, call_no)


def test_an_r2_answer_with_leftovers_is_saved_as_failed_filters_for_review():
    store = open_store(None)
    pid, _ = store.add_prompt("Write a story about a lighthouse keeper.", "a reference", id="p1",
                              rubric=["Is the story vivid?"])
    cfg = R2Config(max_rounds=1, threshold=9)
    events = list(r2_job(store, LeakyWriter(scores={0: 4, 1: 8}), FakeLM(scores={0: 4, 1: 8}), pid, cfg))
    row = store.trajectory_for_run(events[0].run_id)
    assert row["answer"].startswith("<<<")
    assert not row["filters"]["passed"]
    assert [r.split(":")[0] for r in row["filters"]["reasons"]] == ["template marker", "cut ending"]
    assert queue_status(row) == FAILED  # the Review queue's "failed filters", as for a dropped REER run
    store.close()
