"""Every handler of the studio that changes a decision records its person.

The studio is built on the scripted model (no model load); every API handler whose name says it
decides (accept, reject, rate, tag, note, edit, force, skip, judge, ...) is found on the app, so a
new one cannot slip by: it must be listed below. The handlers that decide on a trajectory are
called here as a logged-in person ("ada", through the request Gradio would pass), and each call
must leave a record under that name (a review-log row or a version). The ones whose record is
written by a run or a judging queue are checked where they are driven end to end (named below);
here they must at least run as the request's person."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from core.data import curation

DECIDES = re.compile(r"_(accept|reject|reset|rate|tag|untag|note|edit|bulk|revert|force|skip|judge|reflect|submit|"
                     r"resolve)$")
PERSON = "ada"
# decision handlers whose record is written by an engine or a queue: where that is tested
ELSEWHERE = {
    "reer_edit": "tests/core/runs/test_events_annotators.py, tests/studio/app/test_ui_annotators.py (SegmentDecided.annotator)",
    "reer_force": "tests/core/runs/test_events_annotators.py, tests/core/reer/test_steering_race.py",
    "reer_skip": "tests/core/runs/test_events_annotators.py",
    "r2_judge": "tests/studio/app/test_ui_annotators.py (JudgmentGiven's judgment.annotator)",
    "r2_reflect": "tests/core/runs/test_events_annotators.py (Reflected.annotator)",
    "judge_submit": "tests/studio/browser/test_ui_judging.py (judgments.annotator from the login)",
    "judge_skip": "tests/studio/browser/test_ui_judging.py",
    "judge_resolve": "tests/core/judging/test_judging_queue.py",
}


@pytest.fixture
def app_and_store(store):
    from studio.app import build_app

    return build_app("scripted:", store=store, samples=[], samples_path=None), store


def _trajectory(store, kind: str = "reer") -> tuple[str, int]:
    """(run id, trajectory id) of a finished run with its trajectory, pending."""
    pid, _ = store.add_prompt(f"Write a note number {store.db['prompts'].count}.", "Dear Sam, thanks for the tomatoes.")
    run_id = store.create_run(kind, pid, {}, "scripted:")
    return run_id, store.save_trajectory(run_id, "I plan the note.", "Dear Sam, thanks for the tomatoes.")


def _records(store, name: str) -> int:
    """How many acts the store holds under `name`: review-log rows and versions."""
    q = "SELECT count(*) FROM {} WHERE annotator = ?"
    return sum(store.db.execute(q.format(t), [name]).fetchone()[0] for t in ("review_log", "versions"))


def _call(fn, dep, overrides: dict, state=None):
    """Call a handler with each input's default value, `overrides` by elem_id, the first State = `state`."""
    args, first = [], True
    for comp in dep.inputs:
        if type(comp).__name__ == "State" and first:
            args.append(state)
            first = False
        else:
            args.append(overrides.get(comp.elem_id, comp.value))
    return fn(*args)


def _setup_cases(store):
    """{api name: (overrides by elem_id, run-id state, trajectory id)} for the trajectory handlers."""
    cases = {}
    for name in ("reer_accept", "reer_reject", "r2_accept", "r2_reject"):
        run_id, tid = _trajectory(store, name.split("_")[0])
        cases[name] = ({}, run_id, tid)
    simple = {"review_accept": {}, "review_reject": {"review-note": "too long"}, "review_reset": {},
              "review_rate": {"review-rating": "4"}, "review_tag": {"review-tags": "keep"},
              "review_note": {"review-note": "a note"},
              "review_edit": {"review-thinking": "I plan the note again.", "review-answer": "Dear Sam."},
              "review_bulk": {"review-bulk-action": "reject all (note = reason)", "review-note": "all bad"},
              "focus_accept": {}, "focus_reject": {"focus-note": "off topic"}, "focus_rate": {"focus-rating": "5"},
              "focus_note": {"focus-note": "a note"}}
    for name, over in simple.items():
        _, tid = _trajectory(store)
        key = "focus-id" if name.startswith("focus") else "review-id"
        cases[name] = ({**over, key: tid}, None, tid)
    _, tid = _trajectory(store)
    curation.tag(store, tid, "keep", annotator="bo")  # someone else's tag, removed by the person
    cases["review_untag"] = ({"review-id": tid, "review-tags": "keep"}, None, tid)
    _, tid = _trajectory(store)
    curation.edit(store, tid, thinking="Another plan.", annotator="bo")
    cases["review_revert"] = ({"review-id": tid, "review-revert-version": 0}, None, tid)
    return cases


def test_every_decision_handler_records_the_person_who_acted(app_and_store):
    from gradio.context import LocalContext

    app, store = app_and_store
    deps = {d.api_name: d for d in app.fns.values() if d.api_name and DECIDES.search(d.api_name)}
    cases = _setup_cases(store)
    unknown = sorted(set(deps) - set(cases) - set(ELSEWHERE))
    assert not unknown, f"decision handlers this test does not know: {unknown}; add each to its cases"
    token = LocalContext.request.set(SimpleNamespace(username=PERSON))  # the request a logged-in person sends
    try:
        silent = []
        for name, (over, state, tid) in cases.items():
            before, status = _records(store, PERSON), store.db["trajectories"].get(tid)["status"]
            _call(deps[name].fn, deps[name], over, state)
            if _records(store, PERSON) == before:
                silent.append(f"{name} (status {status} -> {store.db['trajectories'].get(tid)['status']})")
        assert not silent, f"these handlers changed a decision with no record of {PERSON!r}: {silent}"
        for name, (_, _, tid) in cases.items():
            assert curation.show(store, tid)["annotator"] == PERSON, name  # the trajectory's last actor
    finally:
        LocalContext.request.reset(token)
    for name in ELSEWHERE:  # the rest run as the request's person (by_person), or read it from the request
        fn = deps[name].fn
        assert hasattr(fn, "__wrapped__") or "request" in fn.__code__.co_varnames, name
