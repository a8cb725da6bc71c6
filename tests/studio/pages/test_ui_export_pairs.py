"""The Export page's pair controls (Pair sources, Min margin), launched for real and driven through
gradio_client: a dpo export with a min margin and one chosen source is byte for byte the file
`palimpsest export --format dpo --sources ... --min-margin ...` writes from the same store; bad
values get one line naming the control and the fix; formats without pairs ignore the controls.

The store holds one scripted REER run (its step pairs have margins either side of the one asked
for) and one R2 trajectory (r2-revision pairs, which the chosen source leaves out)."""
from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from library_fixtures import add_r2
from ui_helpers import client, launched, studio_app

from core.store import open_store
from studio.cli.main import main
from studio.pages.export import pair_options

pytestmark = [pytest.mark.ui]
MARGIN = 0.004  # between the smallest and the largest margin of the run's step pairs (asserted below)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from core.models.load import load_lm
    from core.reer.config import ReerConfig
    from core.reer.jobs import reer_job, save_trajectory

    s = open_store(tmp_path_factory.mktemp("pairs") / "studio.db")
    pid, _ = s.add_prompt("Explain why the sea has tides, in three short paragraphs.",
                          "The moon pulls the water. The earth turns beneath it. Two bulges make two tides a day.")
    for e in reer_job(s, load_lm("scripted:seed=2"), pid, ReerConfig(candidates=3, max_steps=3, threshold=0.0)):
        last = e
    save_trajectory(s, last.run_id)
    add_r2(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(store):
    with launched(studio_app("scripted:", store)) as url:
        yield client(url)


def rows(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


def test_a_dpo_export_with_a_min_margin_and_one_source_is_the_clis_file(api, store, tmp_path):
    result, files, card, _ = api.predict("dpo", "any", "all", False, ["reer-step"], MARGIN, api_name="/export_run")
    page = [f for f in files if f["orig_name"] == "train.jsonl"][0]["path"]
    assert main(["export", "--format", "dpo", "--status", "any", "--sources", "reer-step", "--min-margin", str(MARGIN),
                 "--out", str(tmp_path / "cli"), "--db", str(store.path)]) == 0
    assert Path(page).read_bytes() == (tmp_path / "cli" / "train.jsonl").read_bytes()
    # the options did something: every source and margin by default is more, and holds r2 pairs
    assert main(["export", "--format", "dpo", "--status", "any", "--out", str(tmp_path / "all"),
                 "--db", str(store.path)]) == 0
    kept, every = rows(page), rows(tmp_path / "all" / "train.jsonl")
    steps = [r for r in every if r["source"] == "reer-step"]
    assert {r["source"] for r in every} >= {"reer-step", "r2-revision"}
    assert min(r["margin"] for r in steps) < MARGIN <= max(r["margin"] for r in steps)
    assert [r["id"] for r in kept] == [r["id"] for r in steps if r["margin"] >= MARGIN]
    assert f'data-count="{len(kept)}"' in result and "- sources: reer-step" in card
    assert f"- min margin: {MARGIN:g}" in card
    # the preview counts what the export writes, with the same options
    msg, _, describe = api.predict("dpo", "any", "all", ["reer-step"], MARGIN, api_name="/export_preview")
    assert f'data-records="{len(kept)}"' in describe


@pytest.mark.parametrize("sources, margin, words", [
    ([], 0.001, "Pair sources: none ticked; tick at least one of reer-step, reer-human, r2-revision, people"),
    (["reer-step"], -1, "Min margin: -1; give a number 0 or above (default 0.001)"),
    (["reer-step"], None, "Min margin: empty; give a number 0 or above (default 0.001)"),
])
def test_bad_pair_controls_get_one_line_naming_the_control_and_the_fix(api, sources, margin, words):
    result, files, card, _ = api.predict("dpo", "any", "all", False, sources, margin, api_name="/export_run")
    assert words in html.unescape(result) and files is None and card == ""
    msg, records, _ = api.predict("dpo", "any", "all", sources, margin, api_name="/export_preview")
    assert words in html.unescape(msg) and records == ""


def test_formats_without_pairs_ignore_the_hidden_pair_controls(api):
    result, files, *_ = api.predict("chat", "any", "all", False, [], -1, api_name="/export_run")
    assert 'data-count="2"' in result and files


def test_people_pairs_go_only_into_a_leads_export():
    assert pair_options("dpo", 0.01, ["reer-step", "people"], lead=True)[0]["sources"] == "reer-step,people"
    assert pair_options("dpo", 0.01, ["reer-step", "people"], lead=False)[0] == {"min_margin": 0.01,
                                                                                 "sources": "reer-step"}
    assert pair_options("dpo", 0.01, ["people"], lead=False)[1].startswith("Pair sources: people's pairs go only "
                                                                           "into a lead's export; tick another")
