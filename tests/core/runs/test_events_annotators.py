"""Annotators on engine events: a person's REER edit, forced candidate and skip (Controls.edit/force/skip)
record who on the SegmentDecided event, and so do R2's human judgments and reflections; events stored
before the field existed still load (core.events.from_dict), reading None ("unknown")."""
from __future__ import annotations

import threading

from core import events as ev
from core.annotators import acting_as
from core.r2.config import R2Config
from core.r2.jobs import pending_request, r2_job, submit_judgment, submit_reflection
from core.r2.judge import human_judgment
from core.r2.state import R2State
from core.reer.search import Controls, reer_search
from core.store import open_store
from r2_fakes import FakeLM
from test_reer import DRAFT, SMALL, S, ScriptedLM, rewrites


def test_reer_human_decisions_record_their_annotator_and_the_search_none(tiny_lm):
    controls = Controls()
    lm = ScriptedLM(tiny_lm, [[DRAFT]] + rewrites(("first option.", "second option."), ("x.", "y."), ("z.", "w.")))
    events = []
    for e in reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL, controls=controls):
        events.append(e)
        if isinstance(e, ev.CandidateScored) and e.index == 1:
            controls.pause()
    assert events[-1].kind == "run_paused"
    controls.force(1, annotator="bo")  # named explicitly
    controls.step(1)
    # the engine reads the commands in another thread, where nobody acts: the name travels with them
    more: list = []
    t = threading.Thread(target=lambda: more.extend(reer_search(lm, "run", S["id"], S["query"], S["reference"],
                                                                SMALL, controls=controls, history=events)))
    t.start()
    t.join()
    with acting_as("ada"):  # the studio's handlers: the person the request acts as, read when queued
        controls.edit(3, "My own plan: end on the letter, not the storm. Hmm, maybe the boat comes back.")
    with acting_as("cy"):
        controls.skip()
    controls.step(1)
    more += list(reer_search(lm, "run", S["id"], S["query"], S["reference"], SMALL, controls=controls,
                             history=events + more))
    decided = [e for e in more if isinstance(e, ev.SegmentDecided)]
    assert [(d.action, d.by, d.annotator) for d in decided] == [("force", "human", "bo"), ("edit", "human", "ada"),
                                                                 ("skip", "human", "cy")]
    first = [e for e in events if isinstance(e, ev.SegmentDecided)]
    assert all(d.by == "search" and d.annotator is None for d in first)
    # stored and read back: the field survives the JSON round trip
    assert [ev.from_dict(d.to_dict()).annotator for d in decided] == ["bo", "ada", "cy"]


def test_old_events_without_an_annotator_still_load():
    old = {"kind": "segment_decided", "run_id": "r", "t": 1.0, "step": 1, "segment": 0, "action": "edit",
           "by": "human", "chosen": None, "text": "mine", "segments": ["mine"], "score": {"score": 1.0}}
    e = ev.from_dict(old)
    assert isinstance(e, ev.SegmentDecided) and e.annotator is None and e.segments == ("mine",)
    refl = ev.from_dict({"kind": "r2_reflected", "run_id": "r", "t": 1.0, "round": 1, "text": "I should slow down.",
                         "raw": "", "dropped": [], "by": "human"})
    assert refl.annotator is None


def test_r2_human_judgment_and_reflection_record_the_person(tmp_path):
    store = open_store(tmp_path / "r2.db")
    pid, _ = store.add_prompt("Write a story about a lighthouse keeper.", "a reference story", id="p1",
                              rubric=["Is it vivid?", "Does the ending land?"])
    cfg = R2Config(max_rounds=1, threshold=9, judge_mode="human", review_reflections=True)
    events = list(r2_job(store, FakeLM(), None, pid, cfg))
    run_id = events[0].run_id
    assert pending_request(store, run_id).version == 0
    with acting_as("ada"):
        submit_judgment(store, run_id, human_judgment(["Is it vivid?", "Does the ending land?"], 4,
                                                      "The keeper never reacts; show her fear."))
    list(r2_job(store, FakeLM(), None, pid, cfg))  # reflects, then waits for the person's edit
    assert R2State.from_events(store.events(run_id)).pending_reflection() is not None
    with acting_as("bo"):
        submit_reflection(store, run_id, "I never let the keeper react; I want her fear on the page.")
    stored = store.events(run_id)
    given = [e for e in stored if isinstance(e, ev.JudgmentGiven)]
    assert given[0].judgment["annotator"] == "ada" and given[0].judgment["judge"] == "human"
    human_refl = [e for e in stored if isinstance(e, ev.Reflected) and e.by == "human"]
    model_refl = [e for e in stored if isinstance(e, ev.Reflected) and e.by == "model"]
    assert [e.annotator for e in human_refl] == ["bo"] and all(e.annotator is None for e in model_refl)
    store.close()


def test_r2_judge_cli_records_annotator_defaulting_to_the_os_user(tmp_path, capsys):
    from core.annotators import os_user
    from studio.cli.main import main

    db = tmp_path / "r2.db"
    store = open_store(db)
    pid, _ = store.add_prompt("Write a story about a lighthouse keeper.", "a reference story", id="p1",
                              rubric=["Is it vivid?"])
    cfg = R2Config(max_rounds=1, threshold=9, judge_mode="human")
    run_id = list(r2_job(store, FakeLM(), None, pid, cfg))[0].run_id
    store.close()
    base = ["r2", "judge", "--db", str(db), "--run", run_id, "--overall", "5", "--critique", "Slow the ending down."]
    assert main(base + ["--annotator", "model:me"]) == 2
    assert "kept for model judges" in capsys.readouterr().err
    assert main(base + ["--annotator", "dee"]) == 0
    store = open_store(db)
    list(r2_job(store, FakeLM(), None, pid, cfg))  # revises, then waits for the revision's judgment
    store.close()
    assert main(base) == 0
    store = open_store(db)
    given = [e.judgment["annotator"] for e in store.events(run_id) if isinstance(e, ev.JudgmentGiven)]
    store.close()
    assert given == ["dee", os_user()]
