"""One meaning per score. REER's score (clipped log-perplexity, lower is
better) and the R2 judge's overall score (1 to 10, higher is better) get their own review
columns, histograms, filters, card statistics and export fields; an R2 export's final fields
agree with the run's last judged text.

The store holds one REER trajectory of the shape its engine saves (tests/library_fixtures.py,
final score 1.1) and one R2 trajectory made by a real run of the loop on the scripted model
(tests/r2_fakes.py: first draft judged 3, the one revision judged 4 and kept): the numbers the
issue saw (a card mean of 2.55, an export record with final_overall 3 but final_score 4). No
model is loaded.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from library_fixtures import add_reer
from r2_fakes import FakeLM
from ui_helpers import client, launched, studio_app

from core.data import curation
from core.export import export
from core.r2.config import R2Config
from core.r2.jobs import r2_job, run_record
from core.store import BadValue, open_store
from studio.cli.main import main
from studio.pages.review import make_filter
from studio.views import review as view

REER_SCORE, FIRST_JUDGED, FINAL_JUDGED = 1.1, 3, 4


def _mixed(store) -> dict:
    """One REER trajectory (score 1.1) and one finished R2 run (judged 3, then 4); both accepted."""
    reer = add_reer(store, "Write a short essay on why tides matter.", "Who reads this?\n\nStart at the harbour.",
                    "Tides set the rhythm of a harbour town.", score=REER_SCORE)
    pid, _ = store.add_prompt("Write a short story about a lighthouse keeper who finds a letter.",
                              "a reference story", id="p-r2")
    lm = FakeLM(scores={0: FIRST_JUDGED, 1: FINAL_JUDGED})
    events = list(r2_job(store, lm, lm, pid, R2Config(max_rounds=1, threshold=9)))
    assert events[-1].kind == "r2_finished"
    r2 = next(t["id"] for t in store.list_trajectories(kind="r2"))
    for t in (reer, r2):
        store.set_status(t, "accepted")
    return {"reer": reer, "r2": r2, "run": events[-1].run_id}


@pytest.fixture
def mixed(tmp_path):
    store = open_store(tmp_path / "s.db")
    ids = _mixed(store)
    yield store, ids
    store.close()


def test_review_rows_put_each_scale_in_its_own_column(mixed):
    store, ids = mixed
    rows = {r["id"]: r for r in curation.list_trajectories(store)}
    reer_col, judge_col = view.HEADERS.index("REER score ↓"), view.HEADERS.index("judge score ↑")
    assert "score" not in view.HEADERS and len(view.COLUMN_WIDTHS) == len(view.HEADERS)
    reer = view.row_cells(rows[ids["reer"]], "q")
    r2 = view.row_cells(rows[ids["r2"]], "q")
    assert (reer[reer_col], reer[judge_col]) == ("1.100", "")
    assert (r2[reer_col], r2[judge_col]) == ("", "4")
    # the opened trajectory's chips name the scale and its direction
    assert "REER score ↓</em> 0.520 → 1.100" in view.header_html(curation.show(store, ids["reer"]))
    assert "judge score ↑</em> 3 → 4" in view.header_html(curation.show(store, ids["r2"]))


def test_summary_has_one_histogram_per_scale_titled_with_its_direction(mixed):
    store, _ = mixed
    fig = view.summary_figure(curation.list_trajectories(store))
    titles = [a.text for a in fig.layout.annotations]
    assert view.REER_TITLE in titles and "lower is better" in view.REER_TITLE
    assert view.JUDGE_TITLE in titles and "higher is better" in view.JUDGE_TITLE
    hists = [t for t in fig.data if t.type == "histogram"]
    by_axis = {t.xaxis: sorted(x for x in t.x) for t in hists}
    assert by_axis == {"x": [REER_SCORE], "x2": [FINAL_JUDGED]}  # never on one axis


def test_score_filters_say_their_scale_and_keep_to_it(mixed):
    store, ids = mixed

    def ids_of(**kw):
        return [r["id"] for r in curation.list_trajectories(store, curation.TrajectoryFilter(**kw))]

    # a REER bound of 0..5 once caught the judge's 4; a judge bound keeps judged rows only
    assert ids_of(min_score=0, max_score=5) == [ids["reer"]]
    assert ids_of(min_judge=4) == [ids["r2"]] and ids_of(min_judge=4.5) == [] and ids_of(max_judge=3) == []
    f = make_filter("any", "all", "", "", "", "", "any", "", "", "3.5", " 10 ")
    assert (f.min_score, f.max_score, f.min_judge, f.max_judge) == (None, None, 3.5, 10)
    with pytest.raises(BadValue, match="judge score from 8 is above judge score to 2; swap them"):
        make_filter("any", "all", "", "", "", "", "any", "", "", "8", "2")
    with pytest.raises(BadValue, match="REER score from 1 is above REER score to 0.5"):
        make_filter("any", "all", "1", "0.5", "", "", "any", "", "")


def test_cli_review_list_has_a_column_and_a_bound_per_scale(mixed, tmp_path, capsys):
    store, ids = mixed
    db = str(tmp_path / "s.db")
    assert main(["review", "list", "--db", db, "--min-judge", "4", "--json"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["reer_score"], r["judge_score"]) for r in got] == [(ids["r2"], None, FINAL_JUDGED)]
    assert main(["review", "list", "--db", db, "--max-score", "5"]) == 0
    out = capsys.readouterr().out
    assert "REER↓" in out and "judge↑" in out and len(out.splitlines()) == 2  # header + the REER row


def test_card_reports_each_scale_apart_and_never_a_mixed_mean(mixed, tmp_path):
    store, _ = mixed
    report = export(store, "chat", tmp_path / "out")
    assert set(report.stats) == {"reer", "judge"}
    assert {k: s["mean"] for k, s in report.stats["reer"].items()} == \
        {"initial_score": 0.52, "final_score": REER_SCORE, "initial_ppl": 2.5, "final_ppl": 1.9}
    assert report.stats["judge"]["final_overall"] == {"n": 1, "min": 4.0, "mean": 4.0, "max": 4.0}
    assert report.stats["judge"]["initial_overall"]["mean"] == FIRST_JUDGED
    card = Path(report.card).read_text(encoding="utf-8")
    reer_at, judge_at = card.index("### REER score"), card.index("### Judge score")
    assert "lower is better" in card[reer_at:judge_at] and "higher is better" in card[judge_at:]
    assert "| final_score | 1 | 1.1 | 1.1 | 1.1 |" in card[reer_at:judge_at]
    assert "| final_overall | 1 | 4 | 4 | 4 |" in card[judge_at:]
    assert "2.55" not in card and "2.56" not in card and "Judged on a scale of 1 to 10." in card
    # the export history keeps the same split
    assert json.loads(store.db.execute("SELECT stats FROM exports").fetchone()[0]) == json.loads(json.dumps(report.stats))


def test_r2_export_record_agrees_with_the_runs_last_judged_text(mixed, tmp_path):
    store, ids = mixed
    rec = run_record(store, ids["run"])
    row = store.get_trajectory(ids["r2"])
    assert rec["final_overall"] == row["final_score"] == FINAL_JUDGED  # the kept revision's judgment
    report = export(store, "chat", tmp_path / "out")
    lines = [json.loads(x) for x in Path(report.files[0]).read_text().splitlines()]
    r2 = next(x for x in lines if x["source"] == "r2")
    assert r2["scores"]["final_overall"] == FINAL_JUDGED and r2["scores"]["initial_overall"] == FIRST_JUDGED
    assert "final_score" not in r2["scores"] and "initial_score" not in r2["scores"]  # one meaning per field
    reer = next(x for x in lines if x["source"] == "reer")
    assert reer["scores"]["final_score"] == REER_SCORE and "final_overall" not in reer["scores"]
    # and read back: the re-imported R2 record is still on the judge's scale
    from core.data.imports import import_files

    back = open_store(tmp_path / "back.db")
    rep = import_files(back, report.files[0])
    rows = {curation.source_of(r): r for r in curation.list_trajectories(back)}
    assert len(rep.trajectory_ids) == 2
    assert (rows["r2"]["scale"], rows["r2"]["judge_score"], rows["r2"]["reer_score"]) == ("judge", FINAL_JUDGED, None)
    assert (rows["reer"]["scale"], rows["reer"]["reer_score"]) == ("reer", REER_SCORE)
    back.close()


@pytest.mark.ui
def test_review_page_lists_each_scale_in_its_column_through_the_api(mixed):
    store, ids = mixed
    with launched(studio_app("scripted:", store)) as url:
        api = client(url)
        open_ = ["any", "all", "", "", "", "", "any", "", ""]
        table, count, *_ = api.predict(*open_, "", "", api_name="/review_list")
        assert table["headers"] == list(view.HEADERS)
        cells = {r[0]: r for r in table["data"]}
        j = view.HEADERS.index("judge score ↑")
        assert cells[ids["r2"]][j] == "4" and cells[ids["reer"]][j] == ""
        table, *_ = api.predict(*open_, "4", "", api_name="/review_list")
        assert [r[0] for r in table["data"]] == [ids["r2"]]
        _, count, *_ = api.predict(*open_, "9", "1", api_name="/review_list")
        assert re.search("judge score from 9 is above judge score to 1", count)
