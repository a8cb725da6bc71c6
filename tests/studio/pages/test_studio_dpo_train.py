"""The Train page runs DPO (`--method dpo`) on a dpo export in its own process, through gradio_client:
the same progress line, and the before/after table shows held-out pair accuracy and reward margin;
a fresh browser page (Chromium) reattaches to the finished run and shows the same figures."""
from __future__ import annotations

import json
import os
import re
import time

import pytest
from test_studio_r2_train import STORE_FILE, api, fake  # noqa: F401  (the launched studio; its store's file)
from ui_helpers import needs_chromium

from core import events as ev
from core import pairs as pp

pytestmark = [pytest.mark.ui]


def _pairs_file(path) -> str:
    rows = []
    for topic in ("rain", "fog", "tides"):
        r = f"run-{topic}"
        sc = lambda x: {"score": x, "ppl": 1.0, "n_tokens": 3, "mean_logprob": -x, "truncated": 0}  # noqa: E731
        es = [ev.ReerStarted(r, item_id=topic, query=f"Write about {topic}.", reference="y", settings={}, model="m"),
              ev.InitialDraft(r, thinking="", segments=(f"I think of {topic}.", "Then I write."), score=sc(0.9)),
              ev.SegmentStarted(r, step=1, segment=1, text="Then I write.")]
        for i, (t, s) in enumerate([(f"Then I name the {topic}.", 0.4), ("Then words.", 0.7)]):
            es += [ev.CandidateGenerated(r, step=1, segment=1, index=i, raw=t, text=t),
                   ev.CandidateScored(r, step=1, segment=1, index=i, score=sc(s))]
        es.append(ev.SegmentDecided(r, step=1, segment=1, action="accept", by="search", chosen=0,
                                    text=f"Then I name the {topic}.", segments=(), score=sc(0.4)))
        rows += pp.reer_pairs(es)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def test_train_page_refuses_a_chat_file_for_dpo(api, tmp_path):  # noqa: F811
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                    + "\n")
    msg = api.predict(str(chat), "smollm2-135m", 2, 0, False, 0.34, "", "dpo", api_name="/train_run")[0]
    assert "chat.jsonl:1: a preference pair needs prompt, chosen and rejected" in msg


@pytest.mark.model
@needs_chromium  # its second half checks the same run in a browser
def test_train_page_runs_dpo_and_shows_pair_accuracy_before_and_after(api, store, tmp_path):  # noqa: F811
    data = _pairs_file(tmp_path / "pairs.jsonl")
    out_dir = str(tmp_path / "dpo-out")
    res = api.predict(data, "smollm2-135m", 2, 0, True, 0.34, out_dir, "dpo", api_name="/train_run")
    assert "Training started in its own process" in res[0]
    t0, status = time.time(), ""
    while time.time() - t0 < 400:
        status, _ = api.predict(out_dir, api_name="/train_show")
        if re.search(r'data-state="(finished|failed|stopped)"', status):
            break
        time.sleep(1)
    assert 'data-state="finished"' in status, status
    run = store.list_train_runs()[0]
    started = next(e for e in store.train_events(run["id"]) if e.kind == "train_started")
    assert started.config["method"] == "dpo" and started.config["lora"] is True
    evs = {e.stage: e for e in store.train_events(run["id"]) if e.kind == "train_evaluated"}
    assert evs["before"].pair_accuracy == 0 and evs["after"].pair_accuracy is not None
    assert f"pair accuracy before 0.00 → after {evs['after'].pair_accuracy:,.2f}" in status
    assert "step 2/2" in status and "eval PPL" not in status
    # the same run in a browser: a fresh page reattaches to it and shows the pair figures (screenshot)
    from ui_helpers import ARTIFACTS, browser_page

    with browser_page(api.src) as page:
        page.get_by_role("tab", name="Train").click(timeout=60_000)
        page.wait_for_selector('#train-status [data-state="finished"]', timeout=30_000)
        shown = page.inner_text("#train-status")
        assert f"pair accuracy before 0.00 → after {evs['after'].pair_accuracy:,.2f}" in shown, shown
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, "studio-train-dpo-finished.png"))
