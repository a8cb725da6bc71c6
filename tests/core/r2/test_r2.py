"""The R2 writer-judge loop: judging, the loop's logic, process reward, human judging across
processes, overrides, resume after a kill, the CLI; and end to end on the built-in model.

Most tests use `FakeLM` (tests/r2_fakes.py): scripted writer and judge replies, so each test
pins what the loop sees. The `model` tests run the real built-in model with small budgets.
"""
from __future__ import annotations

import json

import pytest

from core import events as ev
from core.format import assistant_turn
from core.r2.config import R2Config
from core.r2.jobs import (
    NoPendingJudgment,
    accept_proposed,
    pending_request,
    r2_job,
    run_record,
    submit_judgment,
)
from core.r2.judge import (
    DEFAULT_RUBRIC,
    BadJudgment,
    JudgeConfig,
    Judgment,
    human_judgment,
    model_judge,
    override_judgment,
    parse_judgment,
    rubric_for,
)
from core.r2.loop import NO_CRITIQUE, Controls, r2_loop, run_r2, with_think
from core.r2.reward import RewardConfig, circularity, process_reward, redundancy
from core.r2.state import record_from_events
from core.store import open_store
from r2_fakes import DRAFT, FakeLM, judge_reply, revision_text

QUERY = "Write a short story about a lighthouse keeper who finds a letter."
RUBRIC = ("Is the story vivid?", "Does the ending land?", "Is the letter's role clear?")
CFG = R2Config(max_rounds=2, threshold=9)


def run(lm, cfg=CFG, controls=None, history=(), judge="same", rubric=RUBRIC):
    judge_lm = lm if judge == "same" else judge
    return list(r2_loop(lm, judge_lm, "run", "item", QUERY, rubric, cfg, controls=controls, history=history))


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def store_with_prompt(path=None, rubric=list(RUBRIC)):
    store = open_store(path)
    pid, _ = store.add_prompt(QUERY, "a reference story", id="p1", rubric=rubric)
    return store, pid


# ---- judging ----------------------------------------------------------------------------------

def test_parse_judgment_reads_lines_json_and_refuses_garbage():
    got, why = parse_judgment("1: 7\n2. The ending: 5/10\n3: 6\nOverall: 6\nCritique: The ending is rushed; "
                              "slow it down.", RUBRIC)
    assert why == "" and got["scores"] == dict(zip(RUBRIC, [7, 5, 6])) and got["overall"] == 6
    assert got["critique"] == "The ending is rushed; slow it down."
    got, _ = parse_judgment('{"scores": [8, 9, 7], "overall": 8.5, "critique": "Cut the second scene short."}', RUBRIC)
    assert got["scores"][RUBRIC[2]] == 7 and got["overall"] == 8.5
    got, _ = parse_judgment("1: 4\n2: 6\n3: 8\nCritique: Give the keeper a name and a past.", RUBRIC)
    assert got["overall"] == 6  # no overall line: the mean of a complete set of criterion scores
    for bad in ("I liked it a lot!", "1: 4\nOverall: 6", "Overall: 42\nCritique: too long to read here.",
                "1: 4\n2: 5\nCritique: fix the middle part please."):
        got, why = parse_judgment(bad, RUBRIC)
        assert got is None and why


def test_unparsable_judge_output_is_retried_once_then_kept_with_raw_text():
    lm = FakeLM(judge=lambda messages, n: f"lovely story number {n} !!")
    j = model_judge(lm, QUERY, DRAFT, RUBRIC, JudgeConfig(), seed=0)
    assert lm.count("judge") == 1 and lm.count("judge_retry") == 1
    assert not j.parsed and j.attempts == 2 and j.overall is None and j.critique == ""
    assert "lovely story number 1" in j.raw and "lovely story number 1" in j.raw.split("-----")[1]
    assert all(s is None for s in j.scores.values()) and j.error
    assert "-1" not in json.dumps(j.to_dict())  # no magic number anywhere
    replies = iter(["garbage", judge_reply(7, 3)])
    good_second = FakeLM(judge=lambda m, n: next(replies))
    j2 = model_judge(good_second, QUERY, DRAFT, RUBRIC)
    assert j2.parsed and j2.overall == 7 and j2.attempts == 2


def test_rubric_is_the_prompts_own_else_the_default():
    assert rubric_for(None) == DEFAULT_RUBRIC and rubric_for([]) == DEFAULT_RUBRIC
    long = [f"criterion {i}?" for i in range(12)]
    assert rubric_for(long, JudgeConfig(max_criteria=8)) == tuple(long[:8])
    lm = FakeLM(scores={0: 9})
    events = run(lm, rubric=None)
    assert events[0].rubric == DEFAULT_RUBRIC
    judge_prompt = next(m for k, m, _ in lm.calls if k == "judge")[0]["content"]
    assert all(c in judge_prompt for c in DEFAULT_RUBRIC)


def test_human_judgment_and_override_validate_and_record_changes():
    with pytest.raises(BadJudgment, match="overall"):
        human_judgment(RUBRIC, 11, "too high a score")
    with pytest.raises(BadJudgment, match="critique"):
        human_judgment(RUBRIC, 5, "   ")
    with pytest.raises(BadJudgment, match="not a criterion"):
        human_judgment(RUBRIC, 5, "ok then", scores={"made up": 3})
    model = model_judge(FakeLM(), QUERY, DRAFT, RUBRIC)
    o = override_judgment(model, overall=8, scores={RUBRIC[1]: 9}, note="editor")
    assert o.judge == "human" and o.model_judgment == model.to_dict() and o.critique == model.critique
    assert {c["field"] for c in o.changes} == {"overall", f"scores.{RUBRIC[1]}"}
    assert next(c for c in o.changes if c["field"] == "overall") == {"field": "overall", "before": 4, "after": 8}
    assert Judgment.from_dict(o.to_dict()) == o


# ---- the loop with a scripted writer and judge -------------------------------------------------

def test_two_rounds_end_to_end_record_and_trajectory():
    lm = FakeLM(scores={0: 4, 1: 6, 2: 8})
    events = run(lm)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["r2_started", "r2_drafted"] and kinds[-1] == "r2_finished"
    assert kinds.count("r2_round_finished") == 2 and events[-1].reason == "max_rounds"
    rec = record_from_events(events)
    assert [r["round"] for r in rec["rounds"]] == [1, 2]
    assert [r["judgment"]["overall"] for r in rec["rounds"]] == [4, 6]
    assert [r["revision_judgment"]["overall"] for r in rec["rounds"]] == [6, 8]
    assert rec["rounds"][0]["draft"] == DRAFT and rec["rounds"][1]["draft"] == revision_text(1)
    assert all(r["judgment"]["judge"] == "model" and r["judgment"]["parsed"] for r in rec["rounds"])
    assert rec["rounds"][0]["reward"]["improvement"] == round(2 / 9, 4)
    assert set(rec["rounds"][0]["reward"]) >= {"improvement", "redundancy", "circularity", "length", "total"}
    assert rec["final"] == revision_text(2) and rec["final_overall"] == 8 and rec["initial_overall"] == 4
    # the trajectory: plan, first draft, reflection, revision 1, reflection 2; the final draft is the answer
    t = rec["thinking"]
    assert t.index("lamp room, hold") < t.index(DRAFT) < t.index(rec["rounds"][0]["reflection"]) \
        < t.index(revision_text(1)) < t.index(rec["rounds"][1]["reflection"])
    assert revision_text(2) not in t and with_think(rec) == assistant_turn(t, revision_text(2))
    assert all(r["reflection"].startswith("Rereading my draft,") for r in rec["rounds"])
    # the judge's critique reached the writer's reflection prompt
    reflect_prompt = next(m for k, m, _ in lm.calls if k == "reflect")[0]["content"]
    assert "The ending is rushed" in reflect_prompt
    assert run_r2(FakeLM(scores={0: 4, 1: 6, 2: 8}), FakeLM(scores={0: 4, 1: 6, 2: 8}), "run", "item", QUERY,
                  RUBRIC, CFG)["thinking"] == t  # the twin, two model objects: same record


def test_threshold_and_excerpted_drafts():
    events = run(FakeLM(scores={0: 4, 1: 9}), cfg=R2Config(max_rounds=3, threshold=9, keep_drafts="excerpt",
                                                           excerpt_chars=20))
    assert events[-1].reason == "threshold" and len(of(events, ev.RoundFinished)) == 1
    assert DRAFT[:20] in events[-1].thinking and DRAFT not in events[-1].thinking
    easy = run(FakeLM(scores={0: 9}))  # a first draft already at the top: no rounds (difficulty filter)
    assert easy[-1].reason == "threshold" and not of(easy, ev.Reflected)


def test_worse_revision_is_discarded_and_no_improvement_stops():
    events = run(FakeLM(scores={0: 5, 1: 3}))
    end = of(events, ev.RoundFinished)[0]
    assert (end.before, end.after, end.kept) == (5, 3, False) and events[-1].reason == "no_improvement"
    assert events[-1].final == DRAFT and events[-1].final_version == 0
    assert "weaker than the one before" in events[-1].thinking
    go_on = R2Config(max_rounds=2, threshold=9, stop_when_no_improvement=False)
    rec = record_from_events(run(FakeLM(scores={0: 5, 1: 3, 2: 7}), cfg=go_on))
    assert rec["rounds"][1]["draft"] == DRAFT  # round 2 revises the kept draft, not the discarded one
    assert rec["final"] == revision_text(2) and rec["final_overall"] == 7
    back = record_from_events(run(FakeLM(scores={0: 4, 1: 6, 2: 3}), cfg=go_on))
    assert back["final"] == revision_text(1) and revision_text(1) in back["thinking"]  # a later try was set aside
    assert back["thinking"].index(revision_text(1)) < back["thinking"].index(revision_text(2))
    keep_all = R2Config(max_rounds=1, threshold=9, discard_worse=False)
    assert run(FakeLM(scores={0: 5, 1: 3}), cfg=keep_all)[-1].final == revision_text(1)


def test_unparsable_judge_is_recorded_not_fatal():
    lm = FakeLM(judge=lambda m, n: "<<<>>> ???")
    events = run(lm)
    assert events[-1].kind == "r2_finished" and not of(events, ev.RunError)
    rec = record_from_events(events)
    j = rec["rounds"][0]["judgment"]
    assert j["parsed"] is False and j["overall"] is None and "???" in j["raw"]
    assert rec["rounds"][0]["reward"]["improvement"] is None  # unknown, said so; counts 0 in the total
    reflect_prompt = next(m for k, m, _ in lm.calls if k == "reflect")[0]["content"]
    assert NO_CRITIQUE in reflect_prompt


def test_reflection_never_names_the_judge():
    lm = FakeLM(reflections={1: "the judge gave it a low score. The boat scene is too short and I will extend it."})
    rec = record_from_events(run(lm, cfg=R2Config(max_rounds=1, threshold=9)))
    refl = rec["rounds"][0]["reflection"]
    assert "judge" not in refl.lower() and "score" not in refl.lower()
    assert "The boat scene is too short and I will extend it." in refl


# ---- process reward -------------------------------------------------------------------------------

def test_repeated_reflection_gets_a_redundancy_penalty():
    same = "the boat scene is rushed and the letter's writer is never named. I will slow the ending down."
    rec = record_from_events(run(FakeLM(scores={0: 3, 1: 5, 2: 7}, reflections={1: same, 2: same})))
    first, second = (r["reward"] for r in rec["rounds"])
    assert rec["rounds"][0]["reflection"] == rec["rounds"][1]["reflection"]
    assert first["redundancy"] == 0 and second["redundancy"] == 1.0
    assert first["improvement"] == second["improvement"] and second["total"] < first["total"]
    assert second["circularity"] == 1.0  # every issue was raised before and its revision kept


def test_circularity_counts_only_issues_already_addressed():
    old = "The boat scene is rushed. The keeper has no name."
    assert circularity("Again the boat scene feels rushed here.", [old]) > 0
    assert circularity("The dialogue sounds stiff and formal.", [old]) == 0
    assert circularity("The boat scene is rushed.", []) == 0  # raised before but not addressed: no penalty
    assert redundancy("a b c d", ["x y z"]) == 0 and redundancy("same words here", ["same words here"]) == 1


def test_reward_components_and_weights():
    cfg = RewardConfig(w_improvement=2.0, w_redundancy=0.0, w_circularity=0.0, w_length=1.0, token_budget=10)
    r = process_reward("word " * 15, 15, 4, 7, [], [], (1, 10), cfg)
    assert r["improvement"] == round(3 / 9, 4) and r["length"] == 0.5
    assert r["total"] == round(2.0 * 3 / 9 - 0.5, 4)
    assert process_reward("x y", 2, None, 7, [], [], (1, 10), cfg)["improvement"] is None


# ---- people judging: in process and across processes ------------------------------------------------

def test_human_judgment_through_controls_is_used_and_recorded_as_human():
    lm = FakeLM(scores={0: 4, 1: 6, 2: 8})
    controls = Controls()
    controls.supply_judgment(human_judgment(RUBRIC, 3, "Add a storm scene before the letter is opened.",
                                            scores={RUBRIC[0]: 2}, note="tester"))
    rec = record_from_events(run(lm, controls=controls))
    j = rec["rounds"][0]["judgment"]
    assert j["judge"] == "human" and j["overall"] == 3 and j["scores"][RUBRIC[0]] == 2
    assert rec["rounds"][0]["reward"]["improvement"] == round(3 / 9, 4)  # 3 -> 6
    assert "Add a storm scene" in next(m for k, m, _ in lm.calls if k == "reflect")[0]["content"]
    judged = [v for k, m, _ in lm.calls if k == "judge" for v in [m[0]["content"]]]
    assert all(DRAFT not in p for p in judged)  # the model never judged the first draft
    assert rec["rounds"][1]["judgment"]["judge"] == "model"


def test_hold_in_model_mode_pauses_with_the_models_proposal():
    controls = Controls()
    controls.hold()
    first = run(FakeLM(), controls=controls)
    assert [e.kind for e in first[-2:]] == ["judgment_requested", "run_paused"]
    assert first[-2].proposed["judge"] == "model" and first[-2].proposed["overall"] == 4
    controls.supply_judgment(override_judgment(Judgment.from_dict(first[-2].proposed), overall=2))
    rest = run(FakeLM(), controls=controls, history=first)
    rec = record_from_events(first + rest)
    assert rec["rounds"][0]["judgment"]["overall"] == 2 and rec["rounds"][0]["judgment"]["model_judgment"]
    assert rest[-1].kind == "r2_finished"


def test_human_mode_works_across_processes(tmp_path):
    db = tmp_path / "r2.db"
    store, pid = store_with_prompt(db)
    cfg = R2Config(max_rounds=1, threshold=9, judge_mode="human")
    events = list(r2_job(store, FakeLM(), None, pid, cfg))
    assert [e.kind for e in events[-2:]] == ["judgment_requested", "run_paused"] and events[-2].proposed is None
    run_id = events[0].run_id
    assert store.get_run(run_id)["status"] == "paused"
    store.close()
    other = open_store(db)  # another process: a page reload, the studio's second tab
    req = pending_request(other, run_id)
    assert req.version == 0 and req.text == DRAFT
    with pytest.raises(BadJudgment, match="scale"):
        submit_judgment(other, run_id, Judgment(scores={}, overall=50, critique="x y z", judge="human",
                                                parsed=True, scale=(0, 100)))
    submit_judgment(other, run_id, human_judgment(RUBRIC, 4, "The keeper never reacts; show her fear."))
    other.close()
    store = open_store(db)
    n = store.last_seq(run_id)
    assert list(r2_job(store, FakeLM(), None, pid, cfg)) != []
    assert store.last_seq(run_id) > n and pending_request(store, run_id).version == 1
    assert list(r2_job(store, FakeLM(), None, pid, cfg)) == []  # asked again: nothing new, still waiting
    submit_judgment(store, run_id, human_judgment(RUBRIC, 7, "Better; the ending could still be slower."))
    with pytest.raises(NoPendingJudgment):
        submit_judgment(store, run_id, human_judgment(RUBRIC, 7, "one too many judgments"))
    tail = list(r2_job(store, FakeLM(), None, pid, cfg))
    assert tail[-1].kind == "r2_finished" and store.get_run(run_id)["status"] == "finished"
    rec = run_record(store, run_id)
    assert [rec["rounds"][0][k]["judge"] for k in ("judgment", "revision_judgment")] == ["human", "human"]
    assert rec["rounds"][0]["reward"]["improvement"] == round(3 / 9, 4)
    assert store.trajectory_for_run(run_id)["details"] == rec
    assert store.trajectory_for_run(run_id)["filters"] == {"passed": True, "reasons": []}


def test_first_draft_at_the_threshold_is_saved_but_filtered(tmp_path):
    store, pid = store_with_prompt()
    events = list(r2_job(store, FakeLM(scores={0: 9}), FakeLM(scores={0: 9}), pid, CFG))
    row = store.trajectory_for_run(events[0].run_id)
    assert row["answer"] == DRAFT and row["initial_score"] == row["final_score"] == 9
    assert row["filters"]["passed"] is False and "threshold" in row["filters"]["reasons"][0]


def test_override_keeps_the_models_judgment_and_the_persons_edit(tmp_path):
    store, pid = store_with_prompt(tmp_path / "o.db")
    cfg = R2Config(max_rounds=1, threshold=9, judge_mode="model_then_human")
    events = list(r2_job(store, FakeLM(), FakeLM(), pid, cfg))
    run_id = events[0].run_id
    proposed = pending_request(store, run_id).proposed
    assert proposed["judge"] == "model" and proposed["overall"] == 4
    edit = override_judgment(Judgment.from_dict(proposed), overall=2, critique="The letter is never read aloud.")
    submit_judgment(store, run_id, edit)
    list(r2_job(store, FakeLM(), FakeLM(), pid, cfg))
    accept_proposed(store, run_id)  # the revision: the person lets the model's judgment stand
    list(r2_job(store, FakeLM(), FakeLM(), pid, cfg))
    rec = run_record(store, run_id)
    j = rec["rounds"][0]["judgment"]
    assert j["judge"] == "human" and j["overall"] == 2 and j["critique"] == "The letter is never read aloud."
    assert j["model_judgment"] == proposed
    assert {c["field"]: (c["before"], c["after"]) for c in j["changes"]} == {
        "overall": (4, 2), "critique": (proposed["critique"], "The letter is never read aloud.")}
    assert rec["rounds"][0]["revision_judgment"]["judge"] == "model" and rec["finish_reason"] == "max_rounds"


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path):
    store, pid = store_with_prompt(tmp_path / "k.db")
    whole_id = None
    for e in r2_job(store, FakeLM(), FakeLM(), pid, CFG):
        whole_id = e.run_id
    whole = run_record(store, whole_id)
    store.close()

    store, pid = store_with_prompt(tmp_path / "k2.db")
    with pytest.raises(KeyboardInterrupt):  # killed while writing the second revision
        list(r2_job(store, FakeLM(fail_on=("revise", 2)), FakeLM(), pid, CFG))
    store.close()
    store = open_store(tmp_path / "k2.db")
    writer = FakeLM()
    list(r2_job(store, writer, FakeLM(), pid, CFG))
    run_id = store.list_runs(kind="r2")[0]["id"]
    assert len(store.list_runs(kind="r2")) == 1 and store.get_run(run_id)["status"] == "finished"
    assert [k for k, _, _ in writer.calls] == ["revise"]  # only the lost step was redone
    kinds = [e.kind for e in store.events(run_id)]
    assert kinds.count("r2_drafted") == 1 and kinds.count("r2_reflected") == 2
    rec = run_record(store, run_id)
    strip = lambda r: {k: v for k, v in r.items() if k not in ("run_id", "seconds")}  # noqa: E731
    assert strip(rec) == strip(whole)


def test_stop_ends_the_run_keeping_what_was_done():
    controls = Controls()
    events = []
    for e in r2_loop(FakeLM(), FakeLM(), "run", "item", QUERY, RUBRIC, CFG, controls=controls):
        events.append(e)
        if isinstance(e, ev.Reflected):
            controls.stop()
    assert events[-1].reason == "stopped" and of(events, ev.Revised)
    assert events[-1].final == DRAFT  # the unjudged revision never became the current draft


# ---- CLI ------------------------------------------------------------------------------------------

def test_cli_r2_run_writes_records_and_skips_finished_items(tmp_path, monkeypatch, capsys):
    from studio.cli import main as cli
    from studio.cli import r2 as cli_r2

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "query": QUERY, "reference": "ref a", "checklists": list(RUBRIC)}) + "\n"
                   + "not json\n"
                   + json.dumps({"id": "b", "query": QUERY + " Make it sad.", "reference": "ref b"}) + "\n")
    loads = []
    monkeypatch.setattr(cli_r2, "load_model", lambda spec: loads.append(spec) or FakeLM(name=spec))
    out, db = tmp_path / "out.jsonl", tmp_path / "r2.db"
    args = ["r2", "run", "--input", str(src), "--out", str(out), "--db", str(db), "--rounds", "2",
            "--threshold", "9", "--writer", "w", "--judge", "j"]
    assert cli.main(args) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b"] and loads == ["w", "j"]
    for r in lines:
        assert {"id", "query", "rounds", "thinking", "final"} <= set(r)
        assert {"round", "draft", "judgment", "reflection", "revision", "reward"} <= set(r["rounds"][0])
        assert {"scores", "overall", "critique", "judge", "parsed"} <= set(r["rounds"][0]["judgment"])
    assert lines[0]["rubric"] == list(RUBRIC) and lines[1]["rubric"] == list(DEFAULT_RUBRIC)
    err = capsys.readouterr().err
    assert "in.jsonl:2" in err  # the bad line is named
    store = open_store(db)
    assert store.trajectory_for_run(lines[0]["run_id"])["details"] == lines[0]
    store.close()
    loads.clear()
    assert cli.main(args) == 0 and loads == []  # finished: nothing reloaded or rerun
    assert [json.loads(x) for x in out.read_text().splitlines()] == lines
    assert cli.main(args[:-4] + ["--threshold", "11"]) == 2
    assert "threshold" in capsys.readouterr().err


def test_cli_human_judging_round_trip(tmp_path, monkeypatch, capsys):
    from studio.cli import main as cli
    from studio.cli import r2 as cli_r2

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "query": QUERY, "reference": "ref a", "checklists": list(RUBRIC)}) + "\n")
    monkeypatch.setattr(cli_r2, "load_model", lambda spec: FakeLM(name=spec))
    out, db = tmp_path / "out.jsonl", tmp_path / "r2.db"
    run_args = ["r2", "run", "--input", str(src), "--out", str(out), "--db", str(db), "--rounds", "1",
                "--judge-mode", "model_then_human"]
    assert cli.main(run_args) == 0 and out.read_text() == ""  # waiting: nothing written yet
    capsys.readouterr()
    assert cli.main(["r2", "judge", "--db", str(db)]) == 0
    run_id = capsys.readouterr().out.split()[0]
    assert cli.main(["r2", "judge", "--db", str(db), "--run", run_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["text"] == DRAFT and shown["proposed"]["overall"] == 4
    assert cli.main(["r2", "judge", "--db", str(db), "--run", run_id, "--score", "9=3"]) == 2
    assert "1 to 3" in capsys.readouterr().err
    assert cli.main(["r2", "judge", "--db", str(db), "--run", run_id, "--overall", "2", "--score", "1=1"]) == 0
    assert cli.main(run_args) == 0
    assert cli.main(["r2", "judge", "--db", str(db), "--run", run_id, "--accept"]) == 0
    assert cli.main(run_args) == 0
    rec = json.loads(out.read_text())
    j = rec["rounds"][0]["judgment"]
    assert j["judge"] == "human" and j["overall"] == 2 and j["scores"][RUBRIC[0]] == 1
    assert {c["field"] for c in j["changes"]} == {"overall", f"scores.{RUBRIC[0]}"}
    assert rec["rounds"][0]["revision_judgment"]["judge"] == "model" and rec["finish_reason"] == "max_rounds"


# ---- the built-in model ----------------------------------------------------------------------------

SMALL = R2Config(max_rounds=2, threshold=10, stop_when_no_improvement=False, plan=False, draft_max_new_tokens=32,
                 reflection_max_new_tokens=32, revision_max_new_tokens=32,
                 judge=JudgeConfig(max_new_tokens=48, max_criteria=2))  # tiny budgets: the CPU is shared


@pytest.mark.model
def test_two_rounds_on_the_builtin_model_act_on_a_human_judgment(builtin_lm, tmp_path):
    """One run pays for both real-model paths: a person judges the first draft (the loop acts on
    it), the model judges the rest (its replies are kept, scored only when read)."""
    store, pid = store_with_prompt(tmp_path / "m.db")
    controls = Controls()
    controls.supply_judgment(human_judgment(RUBRIC, 2, "The story needs a storm and a boat."))
    events = list(r2_job(store, builtin_lm, builtin_lm, pid, SMALL, controls=controls))
    assert events[-1].kind == "r2_finished" and events[-1].reason == "max_rounds"
    rec = run_record(store, events[0].run_id)
    assert len(rec["rounds"]) == 2 and rec["final"]
    first = rec["rounds"][0]["judgment"]
    assert first["judge"] == "human" and first["overall"] == 2
    # improvement from the person's 2 to the model's score of the revision: known iff that was read
    assert (rec["rounds"][0]["reward"]["improvement"] is None) != rec["rounds"][0]["revision_judgment"]["parsed"]
    model_judged = [rec["rounds"][1]["judgment"]] + [r["revision_judgment"] for r in rec["rounds"]]
    for j in model_judged:
        assert j["judge"] == "model" and j["raw"]
        assert (j["overall"] is not None) == j["parsed"]  # a score only when the reply was read
    for r in rec["rounds"]:
        assert r["reflection"].startswith("Rereading my draft,") and "judge" not in r["reflection"].lower()
        assert set(r["reward"]) >= {"improvement", "redundancy", "circularity", "length", "total"}
    assert store.trajectory_for_run(events[0].run_id)["details"] == rec


class _LogprobOnlyJudge:
    """Writes garbage when asked to grade, but its log-probs favour one score: what a tiny judge does."""

    name = "logprob-judge"

    def __init__(self, favourite: int):
        self.favourite = favourite

    def chat_text(self, messages, add_generation_prompt=True):
        return "\n".join(m["content"] for m in messages) + "\nassistant:"

    def generate(self, messages, config, prefix=""):
        if "two most important concrete problems" in messages[-1]["content"]:
            return ["The middle repeats the opening; cut it and add the storm scene."]
        return ["<score> <score> Great title!"]

    def loglikelihood(self, requests, precision="fp32", truncate="error"):
        from core.models.lm import TokenLogprobs

        out = []
        for r in requests:
            n = int(r.continuation.split("/")[0])
            out.append(TokenLogprobs([r.continuation], [-0.1 if n == self.favourite else -6.0], 10))
        return out


def test_unreadable_judge_falls_back_to_logprob_scores_and_keeps_its_replies():
    from core.r2.judge import JudgeConfig, model_judge

    j = model_judge(_LogprobOnlyJudge(8), "Write a story.", "A story.", RUBRIC, JudgeConfig(method="auto"))
    assert j.parsed and j.method == "logprob" and "<score>" in j.raw and j.attempts == 2
    assert all(7.5 < s <= 8.5 for s in j.scores.values()) and 7.5 < j.overall <= 8.5
    assert "storm scene" in j.critique and "log-probs" in j.error
    strict = model_judge(_LogprobOnlyJudge(8), "Write a story.", "A story.", RUBRIC, JudgeConfig())
    assert not strict.parsed and strict.overall is None  # the default does not fall back: kept unparsed


def test_logprob_judge_on_a_real_tokenizer_gives_scores_on_the_scale(tiny_lm):
    from core.r2.judge import JudgeConfig, logprob_judge

    cfg = JudgeConfig(critique_max_new_tokens=8)
    j = logprob_judge(tiny_lm, "Write a haiku about rain.", "Rain taps the tin roof.", RUBRIC[:2], cfg)
    assert j.parsed and set(j.scores) == set(RUBRIC[:2])
    assert all(1 <= s <= 10 for s in j.scores.values()) and j.overall == round(sum(j.scores.values()) / 2, 2)
