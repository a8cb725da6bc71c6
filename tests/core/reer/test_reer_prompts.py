"""REER's prompt sets: `default` (today's prompts) and `deepwriter` (the REER
authors' framework in our words: a present-tense monologue, then a short draft of the piece
between two mark lines and a critique), chosen per run by `--prompts` and recorded with it.

The scripted model (core.models.scripted) logs every prompt it receives, so these tests assert on
the text the model is sent. One test runs the deepwriter set from the studio's REER form (marker
`ui`) and one on the built-in model (marker `model`), with tiny budgets.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from needs import ROOT

from core import events as ev
from core.models.scripted import Rule, ScriptedLM
from core.prompts import DRAFT_MARKS, draft_span, language, normalise_marks, prompt_set, render
from core.quality import QualityConfig, check, leaked_instructions
from core.reer.config import ReerConfig
from core.reer.search import (
    EASY_TOKENS,
    expand_candidates,
    in_draft,
    reer_search,
    run_reer,
    thinking_segments,
)
from core.segments import answer_part
from core.settings import SettingError

SAMPLES = [json.loads(line) for line in open(ROOT / "data" / "samples.jsonl")]
S = SAMPLES[1]  # the lighthouse keeper's letter
Y = answer_part(S["reference"])
MARK, END = DRAFT_MARKS["en"]
ZH_QUERY = "写一封短信，请邻居在我外出的四天里每天傍晚给阳台上的番茄浇一壶水，语气要亲切，并说明钥匙放在哪里。"
SMALL = dict(candidates=1, max_steps=1, draft_max_new_tokens=150, candidate_max_new_tokens=60)


def run(prompts: str, query: str = S["query"], lm: ScriptedLM | None = None, **cfg) -> tuple[ScriptedLM, dict]:
    lm = lm or ScriptedLM(seed=1)
    return lm, run_reer(lm, "run-1", "item-1", query, S["reference"], ReerConfig(prompts=prompts, **{**SMALL, **cfg}))


def user_prompts(lm: ScriptedLM) -> list[str]:
    return [c.messages[-1]["content"] for c in lm.calls]


# ---- choosing and recording the set ------------------------------------------------------------

def test_the_set_is_recorded_and_settings_stored_without_one_load_as_default():
    for name in ("default", "deepwriter"):
        _, rec = run(name)
        assert ReerConfig.from_dict(rec["settings"]).prompts == name
    assert "prompts" not in run("default")[1]["settings"]  # at its default it keeps the stored settings' key
    stored = {k: v for k, v in ReerConfig(prompts="deepwriter").as_dict().items() if k != "prompts"}
    assert ReerConfig.from_dict(stored).prompts == "default"  # a run from before the setting existed
    with pytest.raises(SettingError, match=r"prompts='nope': must be one of default, deepwriter"):
        ReerConfig(prompts="nope")


def test_each_set_sends_its_own_draft_and_rewrite_prompts():
    plain, _ = run("default")
    deep, _ = run("deepwriter")
    a, b = user_prompts(plain), user_prompts(deep)
    answer = Y[:ReerConfig().max_answer_chars]
    assert a[0] == render("reer_draft", task=S["query"], answer=answer)
    assert b[0] == render("deepwriter_draft_en", task=S["query"], answer=answer, mark=MARK, end_mark=END)
    assert a[0] != b[0]
    for needed in ("in the present tense", "intent and reader", "content:", "structure:", '"Hmm, maybe..."',
                   '"Wait, that..."', "no bullet points", f"a line that holds only {MARK}", "short draft",
                   f"a line that holds only {END}", "critique"):
        assert needed in b[0], needed
    assert "The paragraph to rewrite:" in a[-1] and "The paragraph to improve:" in b[-1]  # the rewrite prompts
    assert "This paragraph belongs to the monologue itself" in b[-1] and "monologue" not in a[-1]


def test_the_query_language_picks_the_chinese_or_english_variant():
    assert language(ZH_QUERY) == "zh" and language(S["query"]) == "en"
    assert language("Translate 你好 into French for a postcard") == "en"  # a quoted word does not switch it
    assert language("用Python写一个读取文件的脚本") == "zh"
    assert prompt_set("deepwriter", ZH_QUERY).draft == "deepwriter_draft_zh"
    assert prompt_set("default", ZH_QUERY).draft == "reer_draft"  # the default set is English only
    lm, rec = run("deepwriter", query=ZH_QUERY)
    prompts = user_prompts(lm)
    assert prompts[0] == render("deepwriter_draft_zh", task=ZH_QUERY, answer=Y, mark="--- 初稿 ---",
                                end_mark="--- 初稿结束 ---")
    assert "内心独白" in prompts[0] and "--- 初稿 ---" in lm.calls[1].prefix
    assert "--- 初稿 ---" in rec["initial_thinking"].splitlines()
    assert "要改的这一段" in prompts[-1]  # the Chinese rewrite prompt
    plain, _ = run("default", query=ZH_QUERY)
    assert "内心独白" not in user_prompts(plain)[0] and "Task:" in user_prompts(plain)[0]


# ---- the draft section ---------------------------------------------------------------------------

def test_a_model_that_never_writes_the_mark_line_is_given_it_and_continues():
    """The scripted model writes planning prose and no mark line, as a small model does."""
    lm, rec = run("deepwriter", max_steps=0)
    draft_calls = lm.calls[:2]
    assert len(draft_calls) == 2 and draft_calls[0].prefix == ""
    assert draft_calls[1].prefix.endswith(f"\n\n{MARK}\n")  # the monologue, then the mark as a prefill
    thinking = rec["initial_thinking"]
    span = draft_span(thinking)
    assert span is not None and len(thinking[span[0]:span[1]].split()) >= 10  # a draft under the mark
    segs = thinking_segments(thinking, 100)
    assert any(s.startswith(MARK + "\n") for s in segs)
    _, plain = run("default", max_steps=0)
    assert draft_span(plain["initial_thinking"]) is None


def test_a_model_that_writes_the_mark_itself_is_asked_once_and_an_easy_task_is_not_forced():
    own = ("I want the keeper to notice the letter slowly, and I keep weighing how much of the storm to show "
           "before the boat arrives.\n\nHmm, maybe the ending should stay quiet.\n\n-- Rough Draft --\n\n"
           "The boat brings flour and a letter; the keeper reads it twice by the lamp and says nothing.\n\n"
           f"{END}\nThe draft needs the smell of the lamp oil and one line of the letter itself.")
    lm = ScriptedLM(rules=[Rule(when=("inner monologue",), reply=own, name="draft")])
    _, rec = run("deepwriter", lm=lm, max_steps=0)
    assert [c.rule for c in lm.calls] == ["draft"]  # written in one go: no second call
    assert f"\n\n{MARK}\nThe boat brings flour" in rec["initial_thinking"]  # its spelling made ours
    short = ScriptedLM(seed=2)
    run_reer(short, "r", "i", "A two-line motto for a bakery.", "Bread at dawn,\nfriends by noon.",
             ReerConfig(prompts="deepwriter", max_steps=0, draft_max_new_tokens=150))
    assert len(short.calls) == 1  # under EASY_TOKENS: the model's choice (no draft) stands


def test_a_rewrite_of_the_draft_keeps_its_mark_line_and_no_other_segment_gains_one():
    segs = ["I want the keeper to read the letter twice; Hmm, maybe the storm should wait until the end of "
            "the piece, so the quiet comes first.",
            f"{MARK}\nThe boat comes on Thursday with flour and a letter. The keeper reads it by the lamp.",
            f"{END}\nThe draft is thin: I need the lamp oil, the gulls and one line of the letter itself."]
    assert [in_draft(segs, i) for i in range(3)] == [False, True, False]
    cfg = ReerConfig(prompts="deepwriter", candidates=2, candidate_max_new_tokens=60)
    lm = ScriptedLM(seed=3)
    made = expand_candidates(lm, S["query"], Y, segs, 1, cfg, step=1)
    assert lm.calls[0].prefix == f"<rewrite>\n{MARK}\nThe boat comes on"
    assert "This paragraph belongs to the short draft" in lm.calls[0].messages[-1]["content"]
    assert '"Hmm, maybe..."' not in lm.calls[0].messages[-1]["content"]  # no doubt cues inside the draft
    assert all(text.startswith(MARK + "\nThe boat comes on") for _, text, _ in made if text), made
    assert any(text for _, text, _ in made)
    own_mark = f" the storm waits.\n{MARK}\nA draft of my own here, written again.</rewrite>"
    sneaky = ScriptedLM(rules=[Rule(reply=own_mark)])
    one = ReerConfig(prompts="deepwriter", candidates=1)
    ((_, text, err),) = expand_candidates(sneaky, S["query"], Y, segs, 0, one, step=1)
    assert text is None and err == "the rewrite writes a draft mark line of its own"


# ---- the quality filters -------------------------------------------------------------------------

MONOLOGUE = ("I am about to write the keeper's story, and the reader should feel the wait before the boat. "
             "Hmm, maybe I open on the lamp, not the sea.\n\nWait, that hides the letter too long; I bring the "
             "letter into the second paragraph and let the storm come last, quietly, as weather and not as "
             "drama.\n\nThe structure: the boat, the letter read twice, the night, a small decision at dawn.")
OWN_DRAFT = ("The supply boat brings flour and one letter. The keeper reads it standing up, then again by the "
             "lamp, and does not answer it that night. At dawn she writes back three lines.")
CRITIQUE = "The draft skips the weather and the smell of the oil; I enrich those and name the sender."


def deep(draft: str, monologue: str = MONOLOGUE) -> str:
    return f"{monologue}\n\n{MARK}\n{draft}\n\n{END}\n{CRITIQUE}"


def checked(thinking: str) -> dict:
    return check(thinking, thinking.split("\n\n"), Y, QualityConfig(min_tokens=10),
                 count_tokens=lambda t: len(t.split()))


def passage(n: int) -> str:
    """A run of about n characters of y, verbatim, cut at word boundaries."""
    text = " ".join(Y.split())
    return text[:text.rfind(" ", 0, n)]


def test_a_deepwriter_thinking_with_its_own_draft_passes():
    assert checked(deep(OWN_DRAFT)) == {"passed": True, "reasons": []}


def test_the_answer_copied_into_the_draft_or_around_it_is_rejected():
    copied = checked(deep(passage(420)))  # a paragraph of y as the "draft"
    assert not copied["passed"]
    assert any(r.startswith("copies the answer in its draft section:") for r in copied["reasons"]), copied
    line = passage(260)  # one long opening sentence or two: allowed in a draft, not in the monologue
    assert len(line) > 200 and checked(deep(line + " " + OWN_DRAFT))["passed"]
    outside = checked(deep(OWN_DRAFT, MONOLOGUE + "\n\nI will open with: " + line))
    assert not outside["passed"] and any(r.startswith("copies the answer: ") for r in outside["reasons"]), outside
    after = checked(deep(OWN_DRAFT) + "\n\nThe final text: " + line)  # past the end mark: the strict limit again
    assert any(r.startswith("copies the answer: ") for r in after["reasons"]), after
    no_mark = checked(MONOLOGUE + "\n\n" + line + " " + OWN_DRAFT)  # no mark line: no draft section, no leniency
    assert not no_mark["passed"]


def test_the_draft_may_instruct_its_reader_but_the_monologue_may_not_echo_our_instructions():
    imperative = "Rewrite the paragraph again with more detail about the supply boat."
    assert leaked_instructions(imperative)  # opens as the rewrite prompt's instruction does
    assert checked(deep(OWN_DRAFT + " " + imperative))["passed"]  # the piece's own prose, in the draft
    leaked = checked(deep(OWN_DRAFT, MONOLOGUE + " " + imperative))
    assert any(r.startswith("leaked instruction") for r in leaked["reasons"]), leaked


def test_mark_lines_as_models_spell_them_are_normalised():
    text = normalise_marks("I plan.\n\n\n**Draft**\n\nThe boat.\n\n== End of the draft ==\n\nToo thin.")
    assert text == f"I plan.\n\n{MARK}\nThe boat.\n\n{END}\nToo thin."
    assert normalise_marks("我想想。\n\n— 草稿 —\n\n船来了。") == "我想想。\n\n--- 初稿 ---\n船来了。"


# ---- the command ---------------------------------------------------------------------------------

def test_reer_run_refuses_an_unknown_set_in_one_line_naming_the_known_ones(tmp_path):
    res = subprocess.run([sys.executable, "-m", "studio.cli", "reer", "run", "--input", "x", "--out",
                          str(tmp_path / "o.jsonl"), "--prompts", "deepwritter"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--prompts: invalid choice: 'deepwritter'" in res.stderr
    assert "default" in res.stderr and "deepwriter" in res.stderr


@pytest.mark.ui
def test_the_studio_reer_form_offers_the_sets_and_a_run_records_its_choice(tmp_path):
    import time

    from ui_helpers import client, launched, studio_app

    from core.store import open_store

    store = open_store(tmp_path / "studio.db")
    app = studio_app("scripted:", store, samples_path=None)
    pid, _ = store.add_prompt(S["query"], S["reference"], id="p-light", category="story_writing")
    try:
        (radio,) = [c for c in app.config["components"] if c.get("props", {}).get("elem_id") == "reer-prompts"]
        assert [c[1] for c in radio["props"]["choices"]] == ["default", "deepwriter"]
        with launched(app) as url:
            #             model candidates steps thr  draft cand seed cues  prompt set
            client(url).predict(pid, "", 1, 1, 0.0, 150, 60, 0, True, "deepwriter", api_name="/reer_run")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and store.list_runs(kind="reer")[0]["status"] != "finished":
                time.sleep(0.2)
        (run,) = store.list_runs(kind="reer")
        assert run["status"] == "finished" and run["settings"]["prompts"] == "deepwriter"
        draft = next(e for e in store.events(run["id"]) if e.kind == "initial_draft")
        assert draft_span(draft.thinking) is not None  # the deepwriter draft section, made in the studio
    finally:
        store.close()


# ---- the built-in model --------------------------------------------------------------------------

@pytest.mark.model
def test_the_builtin_model_writes_a_think_block_with_a_draft_section(builtin_lm):
    # tiny budgets: the piece's first two paragraphs (about 90 tokens: over EASY_TOKENS, so not an easy
    # task), 48 tokens of monologue, 24 of draft, one 24-token rewrite
    short = "\n\n".join(Y.split("\n\n")[:2])
    assert builtin_lm.count_tokens(short) >= EASY_TOKENS
    cfg = ReerConfig(prompts="deepwriter", candidates=1, max_steps=1, draft_max_new_tokens=72,
                     candidate_max_new_tokens=24, seed=0, quality=QualityConfig(min_tokens=0))
    events = list(reer_search(builtin_lm, "run-dw", "item-dw", S["query"], short, cfg))
    draft = next(e for e in events if isinstance(e, ev.InitialDraft))
    span = draft_span(draft.thinking)
    assert span is not None, draft.thinking
    assert draft.thinking[:span[0]].strip().endswith(MARK)  # the monologue, then the mark line
    assert len(draft.thinking[span[0]:span[1]].split()) >= 5, draft.thinking  # a draft under it
    assert any(s.startswith(MARK + "\n") for s in draft.segments)  # leading a segment: a rewrite keeps it
    assert isinstance(events[-1], ev.ReerFinished)
