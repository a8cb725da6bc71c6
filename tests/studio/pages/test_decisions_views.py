"""The REER page's views (studio.views.reer), from events written here: candidates an edit
made stale say so and are not offered; a run that accepted nothing says why; the status counts the
steps the run can take, as the progress line does; a stopped run shows no "generating candidates…"."""
from __future__ import annotations

from core import events as ev
from studio.views.reer import candidates_html, fold, nothing_accepted, shown_of, status_html

RID = "r" * 32


def _events(max_steps=4, segments=("a", "b"), decide="keep"):
    out = [ev.ReerStarted(RID, item_id="p", query="q", reference="y", model="scripted:",
                         settings={"max_steps": max_steps, "passes": 1, "candidates": 2}),
           ev.InitialDraft(RID, thinking="\n\n".join(segments), segments=tuple(segments),
                           score={"score": 1.10, "ppl": 8.0}),
           ev.SegmentStarted(RID, step=1, segment=0, text="a")]
    for k, sc in enumerate((1.20, 1.15)):
        out += [ev.CandidateGenerated(RID, step=1, segment=0, index=k, raw="", text=f"cand {k}"),
                ev.CandidateScored(RID, step=1, segment=0, index=k, score={"score": sc, "ppl": 9.0})]
    if decide:
        out.append(ev.SegmentDecided(RID, step=1, segment=0, action=decide, by="search", chosen=None, text="a",
                                     segments=tuple(segments), score={"score": 1.10, "ppl": 8.0}))
    return out


def test_an_edit_makes_the_waiting_candidates_stale_and_not_offered():
    evs = _events(decide=None)
    v = fold(evs)
    assert sorted(shown_of(RID, v)["cands"]) == [0, 1]
    evs.append(ev.SegmentDecided(RID, step=1, segment=1, action="edit", by="human", chosen=None, text="mine",
                                 segments=("a", "mine"), score={"score": 1.0, "ppl": 7.0}, annotator="ada"))
    v = fold(evs)
    assert [c["state"] for c in v.cards] == ["stale", "stale"] and shown_of(RID, v)["cands"] == {}
    assert "made these candidates stale" in candidates_html(v)
    run = {"id": RID, "status": "paused"}
    status = status_html(run, v, False)
    assert "stale" in status and "await your decision" not in status


def test_a_run_that_accepted_nothing_says_why_and_counts_the_steps_it_can_take():
    evs = _events() + [ev.ReerFinished(RID, reason="segments_done", thinking="a\n\nb", segments=("a", "b"),
                                      score={"score": 1.10, "ppl": 8.0}, filters={"passed": True, "reasons": []})]
    v = fold(evs)
    why = nothing_accepted(v)
    assert "no candidate beat the current segment" in why and "best 1.1500 vs current 1.1000" in why
    status = status_html({"id": RID, "status": "finished", "finish_reason": "segments_done"}, v, False)
    assert "best 1.1500 vs current 1.1000" in status
    going = status_html({"id": RID, "status": "running"}, fold(_events()), True)
    assert "1 of 2 steps done" in going  # 2 segments, 1 pass: the run takes 2 steps at most, not Max steps 4
    accepted = _events(decide="accept")
    assert nothing_accepted(fold(accepted)) == ""


def test_a_stopped_run_shows_no_candidates_being_written():
    evs = _events(decide=None)[:3] + [ev.ReerFinished(RID, reason="stopped", thinking="a\n\nb", segments=("a", "b"),
                                                     score={"score": 1.1, "ppl": 8.0},
                                                     filters={"passed": False, "reasons": []})]
    html = candidates_html(fold(evs))
    assert "generating candidates" not in html and "ended before any was written" in html


def test_no_text_on_the_pages_names_the_code_inside():
    """Labels, help, placeholders and fixed texts of every component speak of what a person sees, never of
    modules ("stored through core.r2.jobs.submit_reflection" was one)."""
    import re

    from core.store import open_store
    from studio.app import build_app

    app = build_app("scripted:", store=open_store(None), samples=[], samples_path=None)
    pat = re.compile(r"\b(core|studio)\.[a-z_]+")
    found = [(type(b).__name__, b.elem_id, attr, pat.search(v).group(0)) for b in app.blocks.values()
             for attr in ("label", "info", "placeholder", "value")
             if isinstance(v := getattr(b, attr, None), str) and pat.search(v)]
    assert not found, found


def test_skip_on_the_last_task_says_it_is_the_last_one_left(store):
    from types import SimpleNamespace

    from core.judging import queue as jq
    from studio.app import build_app

    pid, _ = store.add_prompt("Write a note.", "Dear Sam.")
    run_id = store.create_run("reer", pid, {}, "scripted:")
    tid = store.save_trajectory(run_id, "I plan the note.", "Dear Sam.")
    jq.create_queue(store, "one", ["clear"], overlap=1)
    (item,), _ = jq.add_items(store, "one", [f"traj:{tid}"])
    app = build_app("scripted:", store=store, samples=[], samples_path=None)
    skip = next(f.fn for f in app.fns.values() if f.api_name == "judge_skip")
    nxt = next(f.fn for f in app.fns.values() if f.api_name == "judge_next")
    me = SimpleNamespace(username="ann")
    nxt("one", [], request=me)
    out = skip("one", item, [], request=me)
    msg = next(v for k, v in out.items() if getattr(k, "elem_id", "") == "judge-msg")
    assert "the last task left for you" in msg and "skipped." not in msg


def test_library_rows_that_share_an_opening_are_told_apart():
    from studio.pages.library import distinct_heads

    opening = "You should write a well-structured, argumentative essay on the following topic.\n[Topic]: "
    heads = [opening + "Should dogs be allowed in shops?", opening + "Is homework worth it?",
             "Write a short note about a lighthouse keeper."]
    rows = distinct_heads(heads)
    assert rows[0] == "…Should dogs be allowed in shops?" and rows[1] == "…Is homework worth it?"
    assert rows[2] == heads[2]  # nothing shared: shown whole
    assert distinct_heads(["Write a poem.", "Write a story."]) == ["Write a poem.", "Write a story."]  # too short


def test_r2_plot_names_its_faint_criteria_once_and_keeps_every_reward_bar_in_view():
    from core.r2.judge import DEFAULT_RUBRIC
    from studio.views.r2 import r2_figure

    rubric = tuple(DEFAULT_RUBRIC[:5])
    j = lambda o: {"overall": o, "scores": {c: o for c in rubric}, "judge": "model"}  # noqa: E731
    evs = [ev.R2Started(RID, item_id="p", query="q", rubric=rubric, settings={"judge": {"low": 1, "high": 10},
                                                                            "threshold": 9}, writer="m", judge="m"),
           ev.JudgmentGiven(RID, version=0, judgment=j(5)), ev.JudgmentGiven(RID, version=1, judgment=j(7))]
    evs.append(ev.RoundFinished(RID, round=1, before=5, after=7, kept=True, reward={"improvement": 2.0, "redundancy": -0.1, "circularity": 0.0,
                                                       "length": 0.0, "total": 1.9}))
    fig = r2_figure(evs)
    shown = [t.name for t in fig.data if t.showlegend is not False and t.type == "scatter"]
    assert "criteria 1–5 (faint)" in shown and not any(n == "criterion 1" for n in shown)
    lo, hi = fig.layout.yaxis2.range
    bars = [y for t in fig.data if t.type == "bar" for y in t.y if y is not None]
    assert bars and lo < min(bars) and max(bars) < hi
