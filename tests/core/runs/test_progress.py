"""Live progress: generations stream partial texts to a token
sink, the engines turn them into TRANSIENT `Progress` events with a measured estimate, and nothing
of it is ever stored. All on the scripted model: no model load."""
from __future__ import annotations

import time

import pytest
import torch

from core import events as ev
from core.models.hf import StreamTokens
from core.models.lm import GenerationConfig, on_tokens
from core.models.load import load_lm
from core.models.scripted import tokenize
from core.r2.config import R2Config
from core.r2.loop import Controls as R2Controls
from core.r2.loop import r2_loop
from core.reer.config import ReerConfig
from core.reer.jobs import reer_job
from core.reer.search import Controls, reer_search
from core.runs.driver import drive
from core.runs.engine import Engine
from core.runs.progress import ProgressMeter
from core.store import BadValue

QUERY = "Write a short note about a lighthouse keeper and the storm at sea."
ANSWER = ("The keeper climbed the stairs when the storm broke over the sea. He lit the lamp and watched the "
          "boats turn for home. In the morning he wrote the night down in his log, word by word. ") * 2
CFG = ReerConfig(candidates=2, max_steps=1, threshold=0.0, draft_max_new_tokens=120, candidate_max_new_tokens=60,
                 seed=0)


class Log(Controls):
    """REER controls that keep every progress report, in order, beside the events the caller saw."""

    def __init__(self, seen: list):
        super().__init__()
        self.seen = seen

    def report(self, progress):
        super().report(progress)
        self.seen.append(progress)


def test_scripted_streams_growing_partial_texts_before_the_final_one():
    lm = load_lm("scripted:delay=0.5")
    reports = []
    with on_tokens(reports.append):
        out = lm.generate([{"role": "user", "content": QUERY}], GenerationConfig(max_new_tokens=80, n=2))
    partial, last = reports[:-1], reports[-1]
    assert len(partial) >= 2, "a 0.5 s generation should report its text several times while it goes"
    assert last.done and list(last.texts) == [str(g) for g in out] and not any(p.done for p in partial)
    for a, b in zip(partial, partial[1:] + [last]):  # in order: every report extends the one before
        assert b.tokens >= a.tokens
        assert all(tb.startswith(ta) for ta, tb in zip(a.texts, b.texts))
    assert partial[0].tokens < last.tokens == max(len(tokenize(g)) for g in out)
    assert all(p.budget == 80 and len(p.texts) == 2 for p in reports)


def test_hf_stream_criterion_decodes_rows_cut_at_stop_and_never_stops():
    class Tok:
        def batch_decode(self, rows, skip_special_tokens=True):
            return ["".join(chr(96 + int(t)) for t in row) for row in rows]

    seen = []
    watch = StreamTokens(seen.append, Tok(), prompt_len=2, budget=9, stop=("c",), every_s=0.0)
    ids = torch.tensor([[9, 9, 1, 2, 3, 4], [9, 9, 2, 2, 2, 2]])
    halt = watch(ids, None)
    assert not halt.any(), "watching must never end a generation"
    assert seen[-1].texts == ("ab", "bbbb") and seen[-1].tokens == 4 and seen[-1].budget == 9
    watch.every_s, watch._next = 60.0, time.monotonic() + 60  # throttled: no decode before its time
    watch(ids, None)
    assert len(seen) == 1


def test_meter_says_estimating_until_a_rate_is_measured_then_estimates_from_budgets():
    now = [100.0]
    got = []
    meter = ProgressMeter("r", got.append, offset_s=30.0, clock=lambda: now[0])
    with meter.generating("drafting", "draft", budget=100, later_tokens=200, later_scorings=0):
        assert got[-1].left_s is None and got[-1].tokens_per_s is None  # no token yet: "estimating…"
        now[0] += 60.0  # a slow first token (the model warms up): no rate from it alone
        meter.on_tokens(ev_tp(1))
        assert got[-1].left_s is None
        now[0] += 5.0
        meter.on_tokens(ev_tp(51))
        p = got[-1]
        assert p.tokens_per_s == pytest.approx(10.0)  # 50 tokens in 5 s since the first, measured
        assert p.left_s == pytest.approx((100 - 51 + 200) / 10.0)  # the call's rest and later budgets at that rate
        assert p.elapsed_s == pytest.approx(95.0) and p.phase_s == pytest.approx(65.0)  # earlier sessions counted
    assert meter.rate() == pytest.approx(10.0)  # the finished generation counts from its first report
    meter.phase("scoring", "scoring", later_tokens=100, later_scorings=1)
    now[0] += 2.0
    meter.phase("scoring again", "scoring", later_tokens=100, later_scorings=1)
    assert got[-1].left_s == pytest.approx(100 / 10.0 + 2.0)  # plus one scoring pass at its measured 2 s


def ev_tp(tokens):
    from core.models.lm import TokenProgress

    return TokenProgress(("x" * tokens,), tokens, 100)


def test_reer_reports_draft_and_candidates_as_they_are_written_and_yields_none_of_it():
    lm = load_lm("scripted:delay=0.4")
    log: list = []
    controls = Log(log)
    yielded = []
    for e in reer_search(lm, "run1", "p1", QUERY, ANSWER, CFG, controls=controls):
        log.append(e)
        yielded.append(e)
    kinds = [x.kind for x in log]
    assert yielded[-1].kind == "run_finished" and not any(e.transient for e in yielded)
    first_draft = kinds.index("initial_draft")
    draft_progress = [x for x in log[:first_draft] if isinstance(x, ev.Progress) and x.stage == "draft"]
    assert any(p.texts and p.texts[0] and not p.done for p in draft_progress), "no partial draft before the draft"
    first_cand = kinds.index("candidate_generated")
    cands = [x for x in log[first_draft:first_cand] if isinstance(x, ev.Progress) and x.stage == "candidates"]
    assert cands and "of segment 1 (step 1/1)" in cands[0].phase and len(cands[-1].texts) == 2
    assert any(x.stage == "scoring" for x in log if isinstance(x, ev.Progress))
    progress = [x for x in log if isinstance(x, ev.Progress)]
    assert progress[0].left_s is None  # estimating… until a rate exists
    assert any(p.left_s is not None and p.tokens_per_s for p in progress)
    elapsed = [p.elapsed_s for p in progress]
    assert elapsed == sorted(elapsed)


def test_progress_is_never_stored_and_the_stored_run_is_the_same_with_a_watcher(store):
    pid, _ = store.add_prompt(QUERY, ANSWER, id="p-light")
    lm = load_lm("scripted:delay=0.05")
    log: list = []
    watched = list(reer_job(store, lm, pid, CFG, controls=Log(log)))
    assert any(isinstance(x, ev.Progress) for x in log) and not any(e.transient for e in watched)
    run_id = watched[0].run_id
    stored = store.events(run_id)
    assert [e.kind for e in stored] == [e.kind for e in watched] and "progress" not in {e.kind for e in stored}
    with pytest.raises(BadValue):  # the store refuses a transient event outright
        store.append_event(ev.Progress(run_id, phase="drafting"))
    with pytest.raises(ValueError):  # and nothing can rebuild one from a stored row
        ev.from_dict(ev.Progress(run_id, phase="drafting").to_dict())
    # the non-streaming twin of the same prompt, unwatched: the same texts and scores
    pid2, _ = store.add_prompt(QUERY, ANSWER, id="p-light-2")
    plain = list(reer_job(store, lm, pid2, CFG))
    strip = lambda e: {k: v for k, v in e.to_dict().items() if k not in ("t", "run_id", "item_id", "seconds")}  # noqa: E731
    assert [strip(e) for e in plain] == [strip(e) for e in watched]


def test_the_driver_passes_a_transient_event_on_unsaved(store):
    pid, _ = store.add_prompt(QUERY, ANSWER, id="p-drive")
    run_id = store.create_run("reer", pid, CFG.as_dict(), "scripted:")
    eng = Engine(kind="reer", finish=ev.ReerFinished, record=lambda evs: {}, trajectory=lambda rec: {})

    def events(history):
        yield ev.ReerStarted(run_id, item_id=pid, query=QUERY, reference=ANSWER, settings={}, model="scripted:")
        yield ev.Progress(run_id, phase="drafting", stage="draft", tokens=3, budget=9, texts=("abc",))

    out = list(drive(store, eng, run_id, events))
    assert [e.kind for e in out] == ["run_started", "progress"]
    assert [e.kind for e in store.events(run_id)] == ["run_started"]


def test_r2_reports_its_phases_in_order_and_no_planning_when_the_plan_is_off():
    lm = load_lm("scripted:judge=6,delay=0.15")
    for plan, first in ((False, "drafting"), (True, "planning")):
        controls = R2Controls()
        seen = []
        controls.report = seen.append  # type: ignore[method-assign]
        cfg = R2Config(judge_mode="model", max_rounds=1, threshold=10, plan=plan, draft_max_new_tokens=60,
                       reflection_max_new_tokens=40, revision_max_new_tokens=60)
        events = list(r2_loop(lm, lm, "r", "p", QUERY, cfg=cfg, controls=controls))
        assert events[-1].kind == "r2_finished"
        phases = list(dict.fromkeys(p.phase for p in seen))
        assert phases[0] == first and ("planning" in phases) == plan
        assert phases[-4:] == ["judging the first draft", "reflecting (round 1/1)", "revising (round 1/1)",
                               "judging revision 1"]
        assert any(p.texts and p.texts[0] and not p.done for p in seen if p.stage == "revising")


def test_train_status_says_elapsed_and_a_measured_estimate_and_its_phases():
    from studio.views.train import status_html

    run = {"id": "t" * 32, "status": "running", "model": "smollm2-135m"}
    started = ev.TrainStarted("r", config={}, out_dir="/x", n_train=8, n_eval=2, train_tokens=900, trained_tokens=400,
                              total_steps=20, t=1000.0)
    before = ev.TrainEvaluated("r", stage="before", ppl_with_thinking=9.0, ppl_without_thinking=9.5, n_items=2,
                               n_tokens=80, seconds=20.0, t=1020.0)
    step5 = ev.TrainProgress("r", step=5, total_steps=20, loss=2.0, lr=1e-4, epoch=0.5, seconds_per_step=2.0, t=1030.0)
    first = status_html(run, [started], "running", now=1012.0)
    assert "evaluating the base model on 2 held-out record(s)…" in first and "12 s elapsed · estimating…" in first
    going = status_html(run, [started, before, step5], "running", now=1040.0)
    assert "training…" in going and "step 5/20" in going
    assert "40 s elapsed · about 50 s left" in going  # 15 steps x 2 s measured + the 20 s evaluation after
    done = ev.TrainProgress("r", step=20, total_steps=20, loss=1.0, lr=1e-4, epoch=2, seconds_per_step=2.0, t=1100.0)
    last = status_html(run, [started, before, step5, done], "running", now=1105.0)
    assert "evaluating the trained model" in last and "about 15 s left" in last
    assert "stopping…" in status_html(run, [started, before, step5], "running", now=1040.0, stopping=True)
