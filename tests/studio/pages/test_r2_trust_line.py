"""The R2 page's line under the judge fields (studio.pages.r2.judge_trust_html): how far the chosen model
judge agrees with people on the prompt's rubric (core.judging.calibration.trust), a warning pointing to
Judge → Calibrate when that is unknown or low, nothing when a person judges alone; the spec is escaped."""
from __future__ import annotations

from library_fixtures import REER_ITEMS, add_reer
from test_judging_calibration import _judge_by_text

from core.judging import calibration as cal
from core.judging import queue as jq
from core.models.scripted import Rule, ScriptedLM
from studio.pages.r2 import judge_trust_html


def test_the_line_warns_when_unknown_or_low_and_is_quiet_when_ok(store, monkeypatch):
    monkeypatch.setattr(cal, "TRUST_MIN_N", 3)
    pid, _ = store.add_prompt("Write about fog.", "Fog.", id="p-fog", rubric=["clear"])
    other, _ = store.add_prompt("Write about tides.", "Tides.", id="p-tide", rubric=["tidal"])
    assert judge_trust_html(store, "human", "scripted:", pid, "app-model") == ""  # a person judges alone
    unknown = judge_trust_html(store, "model", "scripted:", pid, "app-model")
    assert 'data-level="unknown"' in unknown and "see Judge → Calibrate" in unknown and "scripted:" in unknown
    assert "app-model" in judge_trust_html(store, "model", "", pid, "app-model")  # empty: the app's model
    hostile = judge_trust_html(store, "model", "<img src=x onerror=alert(1)>", pid, "app-model")
    assert "<img" not in hostile and "&lt;img" in hostile

    refs = [f"traj:{add_reer(store, f'{REER_ITEMS[0][0]} ({i})', REER_ITEMS[0][1], f'x marker-{i}')}" for i in range(4)]
    cal.calibrate(store, _judge_by_text(), "scripted:", "t", refs, overlap=1, rubric=["clear"])
    for item, s in zip([i["id"] for i in jq.items(store, "t")], [1, 2, 3, 4]):
        assert jq.next_task(store, "t", "ann").item_id == item  # handed out, then judged
        jq.submit(store, item, "ann", {"clear": s}, overall=s)
    ok = judge_trust_html(store, "model_then_human", "scripted:", pid, "app-model")
    assert 'data-level="ok"' in ok and "Spearman 1.00" in ok and "Calibrate" not in ok
    # another prompt's rubric: nothing measured there
    assert 'data-level="unknown"' in judge_trust_html(store, "model", "scripted:", other, "app-model")
    cal.calibrate(store, ScriptedLM(rules=[Rule(when=(r"grading", rf"marker-{i}\b"), judge=9 - 2 * i)
                                           for i in range(4)]), "scripted:", "t", refs)
    low = judge_trust_html(store, "model", "scripted:", pid, "app-model")
    assert 'data-level="low"' in low and "Spearman -1.00" in low and "see Judge → Calibrate" in low
