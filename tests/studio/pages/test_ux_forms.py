"""Settings that cannot work are refused by the engine's config (once,
not per page), the pages show that refusal inline before a run starts, runs say in words why they
ended, and the R2 judgment form names the criterion a bad score belongs to.

Config and view tests need no model; the page tests launch the studio on the scripted R2 double
(tests/r2_fakes.py) and drive it through gradio_client."""
from __future__ import annotations

import re

import pytest
from r2_fakes import FakeLM
from ui_helpers import client, launched, studio_app, wait_r2

from core import events as ev
from core.quality import QualityConfig, too_short
from core.r2.config import R2Config
from core.r2.judge import DEFAULT_RUBRIC
from core.reer.config import ReerConfig
from core.settings import SettingError
from core.store import open_store

# ---- the configs refuse what cannot succeed ------------------------------------------------------


def test_reer_refuses_a_draft_budget_the_too_short_filter_always_drops():
    from core.quality import shortest_passing_budget

    least = shortest_passing_budget(QualityConfig().min_tokens)
    # the bound is the filter's own: `least` tokens can pass it, one fewer cannot
    one_per_word = lambda s: len(s.split())  # noqa: E731 (a tokenizer whose tokens are words)
    assert not too_short(" ".join(["word"] * least), QualityConfig().min_tokens, one_per_word)
    assert too_short(" ".join(["word"] * (least - 1)), QualityConfig().min_tokens, one_per_word)
    with pytest.raises(SettingError) as err:
        ReerConfig(draft_max_new_tokens=16)  # the 16-token draft: always "dropped"
    assert err.value.path == "draft_max_new_tokens" and f"at least {least}" in str(err.value)
    assert "every run would end dropped" in str(err.value)
    assert ReerConfig(draft_max_new_tokens=least).draft_max_new_tokens == least
    # the bound follows the filter's setting: with no minimum any budget can pass
    assert ReerConfig(draft_max_new_tokens=16, quality=QualityConfig(min_tokens=0)).draft_max_new_tokens == 16
    # stored settings are read back as they ran
    assert ReerConfig.from_dict({**ReerConfig().as_dict(), "draft_max_new_tokens": 16}).draft_max_new_tokens == 16


def test_r2_refuses_zero_rounds():
    with pytest.raises(SettingError, match="max_rounds=0: must be at least 1"):
        R2Config(max_rounds=0)
    assert R2Config(max_rounds=1).max_rounds == 1


def test_form_numbers_leave_the_check_to_the_config():
    """A Number carries no gradio bound of its own (gradio would refuse first, naming no field); the
    config's refusal, with the field's label, is what a page shows."""
    import gradio as gr

    from studio import forms

    steps = forms.widget(ReerConfig, "draft_max_new_tokens")
    assert isinstance(steps, gr.Number) and steps.minimum is None and steps.maximum is None
    assert forms.problem(ReerConfig, {"draft_max_new_tokens": 192}) == ""
    text = forms.problem(ReerConfig, {"draft_max_new_tokens": 0})
    assert text.startswith("Draft tokens: 0 — must be at least") and "(setting draft_max_new_tokens)" in text
    assert forms.widget(R2Config, "max_rounds", slider=True, maximum=6).minimum == 1  # a slider keeps its ends: the config's


# ---- runs say why they ended, in words -------------------------------------------------------------

def _finished_reer(reason: str, steps: int, max_steps: int, segments: int, filters=None):
    from studio.views.reer import ReerView

    v = ReerView(settings={"max_steps": max_steps, "passes": 1}, segments=[f"seg {i}" for i in range(segments)],
                 steps_done=steps, initial_score={"score": 1.0, "ppl": 3.0}, score={"score": 0.9, "ppl": 2.9})
    v.finished = ev.ReerFinished("r1", reason=reason, thinking="", segments=tuple(v.segments), score=v.score,
                                filters=filters or {"passed": True, "reasons": []})
    return {"id": "r1abcdef99", "status": "finished", "finish_reason": reason}, v


def test_reer_status_says_why_a_run_ended_before_its_step_budget():
    from studio.views.reer import status_html

    run, v = _finished_reer("segments_done", steps=3, max_steps=6, segments=3)
    text = status_html(run, v, False)
    assert "ended after 3 of 6 steps: every segment was visited (3 segments, 1 pass" in text
    assert "segments_done" not in text
    run, v = _finished_reer("dropped", steps=0, max_steps=6, segments=1,
                            filters={"passed": False, "reasons": ["too short: 21 tokens &lt; 100"]})
    assert "dropped before any step: too short" in status_html(run, v, False)


def test_run_menus_show_finish_reasons_in_words():
    from studio.pages.runs import run_label

    r2 = run_label({"id": "ab12cd34ef", "kind": "r2", "status": "finished", "finish_reason": "max_rounds",
                    "created_at": "2025-01-01T10:00:00"})
    reer = run_label({"id": "ab12cd34ef", "kind": "reer", "status": "finished", "finish_reason": "segments_done",
                      "created_at": "2025-01-01T10:00:00"})
    dropped = run_label({"id": "ab12cd34ef", "kind": "reer", "status": "finished", "finish_reason": "dropped",
                         "created_at": "2025-01-01T10:00:00"})
    assert "all rounds done" in r2 and "max_rounds" not in r2
    assert "every segment was visited" in reer and "segments_done" not in reer
    assert "draft was too short" in dropped


def test_r2_status_does_not_promise_a_plan_that_is_off():
    from studio.views.r2 import status_html

    def started(plan: bool):
        return [ev.R2Started("r2run0001", item_id="p", query="q", rubric=DEFAULT_RUBRIC,
                             settings=R2Config(plan=plan).as_dict(), writer="w", judge="")]

    run = {"id": "r2run0001", "status": "running"}
    off = status_html(run, started(False), True)
    assert "writing the first draft…" in off and "plan" not in off.split('class="state">')[1].split("<")[0]
    assert "writing the plan and first draft…" in status_html(run, started(True), True)


def test_judge_model_field_is_not_editable_when_a_person_judges():
    from studio.pages.r2 import judge_model_field

    assert judge_model_field("human").interactive is False
    assert judge_model_field("model").interactive is True
    assert judge_model_field("model_then_human").interactive is True


# ---- the pages, launched ------------------------------------------------------------------------------

@pytest.fixture
def page(tmp_path):
    store = open_store(tmp_path / "studio.db")
    app = studio_app(FakeLM(scores={0: 4, 1: 6}), store, samples_path=None)
    with launched(app) as url:
        yield app, client(url), store
    store.close()


def _prompt(store) -> str:
    pid, _ = store.add_prompt("Write a short story about a lighthouse keeper.", "The keeper read the letter twice.",
                              id="p-light", category="story_writing")
    return pid


#         judge mode rounds thr seed plan  draft refl rev edit  judge tokens
R2_FORM = ["human", 1, 9, 0, False, 64, 32, 64, False, 48]
#           model candidates steps thr  draft cand seed cues
REER_FORM = ["", 2, 2, 0.0, 120, 60, 0, True]


@pytest.mark.ui
def test_pages_refuse_settings_inline_before_a_run(page, capfd):
    app, api, store = page
    pid = _prompt(store)
    # REER: the inline check (redrawn as settings change) and Run say the same thing; nothing starts
    bad = list(REER_FORM)
    bad[4] = 16
    check = api.predict(*bad[1:], api_name="/reer_check")
    assert "Draft tokens: 16 — must be at least" in check and "dropped" in check
    out = api.predict(pid, *bad, api_name="/reer_run")
    assert "Draft tokens: 16" in out[1] and "Draft tokens: 16" in out[-1] and not store.list_runs()
    assert api.predict(*REER_FORM[1:], api_name="/reer_check") == ""
    # a value below a field's minimum that reaches the server: the config's words, naming the field
    below = list(REER_FORM)
    below[6] = -1
    assert "Seed: -1 — must be from 0" in api.predict(*below[1:], api_name="/reer_check")
    # R2: rounds 0 and a threshold off the judge's scale are refused; nothing starts
    zero = ["human", 0, *R2_FORM[2:]]
    assert "Rounds: 0 — must be at least 1" in api.predict(*zero, api_name="/r2_check")
    assert "Rounds: 0 — must be at least 1" in api.predict(pid, "", *zero, api_name="/r2_run")[-1]
    off_scale = ["human", 1, 11, *R2_FORM[3:]]
    check = api.predict(*off_scale, api_name="/r2_check")
    assert "Threshold: 11.0 — must be on the judge" in check and "scale, from 1 to 10" in check
    out = api.predict(pid, "", *off_scale, api_name="/r2_run")
    assert "threshold" in out[-1] and not store.list_runs()
    # the judge model menu starts locked: the page opens in human-judge mode
    (menu,) = [c for c in app.config["components"] if c.get("props", {}).get("elem_id") == "r2-judge-model"]
    assert menu["props"]["interactive"] is False
    assert "Traceback" not in capfd.readouterr().err  # refusals are answers, not server errors




@pytest.mark.ui
def test_judgment_form_names_the_criterion_and_its_scale(page, capfd):
    _, api, store = page
    pid = _prompt(store)
    out = api.predict(pid, "", *R2_FORM, api_name="/r2_run")
    run_id = re.search(r'data-run="([0-9a-f]+)"', out[1]).group(1)
    view = wait_r2(api, run_id, lambda s: 'data-state="waiting"' in s)
    head, boxes = view[4], view[7:15]
    labels = [b.get("label") for b in boxes if isinstance(b, dict) and b.get("visible")]
    assert labels and all(c in lab for c, lab in zip(DEFAULT_RUBRIC, labels))  # criteria sit on their boxes
    assert all("(1-10" in lab for lab in labels) and "<ol" not in head
    # an out-of-range score: refused, naming the criterion by its words and the scale; no traceback
    capfd.readouterr()
    scores = [None, None, 11, None, None, None, None, None]
    res = api.predict(5, "More boat.", *scores, api_name="/r2_judge")
    assert f"Criterion 3 “{DEFAULT_RUBRIC[2][:40]}" in res[0] and "give a score from 1 to 10" in res[0]
    assert not [e for e in store.events(run_id) if e.kind == "judgment_given"]
    res = api.predict(0, "More boat.", *[None] * 8, api_name="/r2_judge")
    assert "Overall: 0" in res[0] and "from 1 to 10" in res[0]
    assert "Traceback" not in capfd.readouterr().err
