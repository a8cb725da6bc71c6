"""The Review and Export pages, launched for real and driven through gradio_client.

The store is seeded directly (tests/library_fixtures.py: REER and R2 trajectories of the shapes
their engines save) plus a small file imported through core.data.imports; no model generates anything.
Every assertion is about what the store, the exported files or the page hold."""
from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.io as pio
import pytest
from library_fixtures import add_reer, filled_store
from ui_helpers import client, launched, studio_app

from core.data import curation
from core.data.imports import import_files
from core.store import open_store

pytestmark = [pytest.mark.ui]

ANY = ["any, failed filters too", "all", "", "", "", "", "any", "", "", "", ""]  # the Review filters, all open (failed filters shown)


def filters(**kw) -> list:
    names = ["status", "source", "min_score", "max_score", "min_chars", "max_chars", "flags", "tags", "search",
             "min_judge", "max_judge"]
    return [kw.get(n, v) for n, v in zip(names, ANY)]


IMPORTED = [  # written for these tests
    {"id": "imp-1", "query": "Write a <b>bold</b> two-line poem about fog.",
     "answer": "<think>\nFog first, then the pier.\n</think>\nFog eats the pier.\nThe gulls go quiet.",
     "source": "handmade", "status": "pending"},
    {"id": "imp-2", "query": "Describe a kettle in one sentence.",
     "answer": "<think>\nSound before sight.\n</think>\nIt ticks, then sighs, then sings.", "source": "handmade"},
]


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "studio.db")
    ids = filled_store(s)  # 3 REER (first two accepted) + 1 accepted R2
    # one REER trajectory whose quality filters failed
    bad = add_reer(s, "Write a limerick about a cat.", "Cat.\n\nCat again.", "There once was a cat.", score=0.9)
    s.db["trajectories"].update(bad, {"filters": json.dumps({"passed": False, "reasons": ["think block empty"]})})
    f = tmp_path / "handmade.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in IMPORTED))
    rep = import_files(s, f)
    assert len(rep.trajectory_ids) == 2 and not rep.problems
    s.ids = {**ids, "failed": bad, "imported": rep.trajectory_ids}  # type: ignore[attr-defined]
    yield s
    s.close()


@pytest.fixture
def api_url(store):
    app = studio_app("scripted:", store)
    with launched(app) as url:
        yield url


def _ids(table) -> list[int]:
    return [int(r[0]) for r in table["data"]]


def test_review_filters_select_what_the_store_holds(api_url, store):
    api = client(api_url)
    table, count, plot, source = api.predict(*ANY, api_name="/review_list")
    every = [t["id"] for t in store.list_trajectories()]
    assert _ids(table) == every and f'data-n="{len(every)}"' in count
    # the summary figure shows the status counts of the table
    fig = pio.from_json(plot["plot"])
    bars = [t for t in fig.data if t.type == "bar"][0]
    assert dict(zip(bars.x, bars.y)) == {s: len(store.list_trajectories(status=s)) for s in bars.x}
    hist_n = sum(len(t.x) for t in fig.data if t.type == "histogram")
    listed = curation.list_trajectories(store)
    assert hist_n == sum(t["reer_score"] is not None for t in listed) + sum(t["judge_score"] is not None for t in listed)
    # the source menu offers the imported file's source
    assert "import: handmade" in [c[0] for c in source["choices"]]

    def ids(**kw):
        return _ids(api.predict(*filters(**kw), api_name="/review_list")[0])

    assert ids(status="accepted") == [t["id"] for t in store.list_trajectories(status="accepted")]
    assert ids(source="r2") == [store.ids["r2"]]
    assert ids(source="import: handmade") == ids(source="import (any file)") == store.ids["imported"]
    assert ids(flags="failed") == [store.ids["failed"]]
    assert ids(flags="passed") == [t["id"] for t in store.list_trajectories() if (t["filters"] or {}).get("passed")]
    assert ids(flags="not run") == [store.ids["r2"], *store.ids["imported"]]
    scored = [t for t in store.list_trajectories() if t["final_score"] is not None and t["kind"] == "reer"]
    assert ids(min_score="0.35", max_score=" 0.95 ") == [t["id"] for t in scored if 0.35 <= t["final_score"] <= 0.95]
    assert ids(max_chars="40") == [t["id"] for t in curation.list_trajectories(store) if len(t["thinking"]) <= 40]
    assert ids(search="kettle") == [store.ids["imported"][1]]
    # a bad filter is refused with the control's name and the fix
    _, count, *_ = api.predict(*filters(min_score="0.9", max_score="0.1"), api_name="/review_list")
    assert "REER score from 0.9 is above REER score to 0.1; swap them" in count
    _, count, *_ = api.predict(*filters(max_chars="ten"), api_name="/review_list")
    assert "thinking length to must be a number" in html.unescape(count)


def test_review_accept_rate_tag_note_edit_and_revert(api_url, store):
    api = client(api_url)
    tid = store.ids["imported"][0]
    names = ["table", "count", "plot", "source", "tid", "header", "ref", "thinking", "answer", "versions", "rating",
             "rev_n", "msg"]

    def call(api_name, *args, **kw):
        return dict(zip(names + ["extra"], api.predict(*args, *filters(**kw), api_name=api_name)))

    # nothing open yet: a readable refusal
    assert "No trajectory open" in html.unescape(call("/review_accept", None)["msg"])
    out = call("/review_open", tid)
    assert out["thinking"] == "Fog first, then the pier." and out["answer"].startswith("Fog eats the pier.")
    # the query is shown escaped (it came from a file)
    assert "&lt;b&gt;bold&lt;/b&gt;" in out["ref"] and "<b>bold</b>" not in out["ref"]

    # Next walks the filtered queue in id order and wraps round
    pending = [t["id"] for t in store.list_trajectories(status="pending")
               if curation.queue_status(t) == "pending"]  # failed-filter ones are not pending work
    nxt = api.predict(pending[-1], *filters(status="pending"), api_name="/review_next")
    assert nxt[0] == pending[0] and f'data-id="{pending[0]}"' in nxt[1]
    nxt = api.predict(pending[0], *filters(status="pending"), api_name="/review_next")
    assert nxt[0] == pending[1]
    out = call("/review_accept", tid, status="pending")
    assert store.get_trajectory(tid)["status"] == "accepted" and 'data-status="accepted"' in out["header"]
    assert tid not in _ids(out["table"])  # the pending queue no longer holds it
    out = call("/review_rate", tid, "4")
    assert store.get_trajectory(tid)["rating"] == 4 and out["rating"] == "4"
    out = call("/review_tag", tid, "gold, fog")
    assert store.get_trajectory(tid)["tags"] == ["gold", "fog"] and out["extra"] == ""
    assert _ids(api.predict(*filters(tags="gold"), api_name="/review_list")[0]) == [tid]
    call("/review_untag", tid, "fog")
    assert store.get_trajectory(tid)["tags"] == ["gold"]
    bad = call("/review_tag", tid, " , ")
    assert "write one or more tags" in bad["msg"] and store.get_trajectory(tid)["tags"] == ["gold"]
    call("/review_note", tid, "Good <fog> image.")
    assert store.get_trajectory(tid)["notes"] == "Good <fog> image."

    # an edit becomes version 1; the original row is untouched; the page shows version 1
    new = "Fog first, then the pier.\n\nMaybe end on the <gulls>, not the fog."
    out = call("/review_edit", tid, new, "Fog eats the pier.\nThe gulls go quiet.")
    assert curation.current(store, tid)["thinking"] == new and curation.current(store, tid)["version"] == 1
    assert store.get_trajectory(tid)["thinking"] == "Fog first, then the pier."
    assert 'data-version="1"' in out["header"] and out["thinking"] == new and out["rev_n"] == 1
    assert out["versions"].count("<li") == 2 and "Saved as version 1" in out["msg"]
    # an edit that changes nothing is refused, and the text typed stays
    same = call("/review_edit", tid, new, "Fog eats the pier.\nThe gulls go quiet.")
    assert "changes nothing" in same["msg"] and len(curation.versions(store, tid)) == 1
    # restore the original: a new version 2 with version 0's text
    out = call("/review_revert", tid, 0)
    assert curation.current(store, tid) == {"version": 2, "thinking": "Fog first, then the pier.",
                                            "answer": "Fog eats the pier.\nThe gulls go quiet."}
    # reject with a reason: status and notes
    call("/review_reject", tid, "too short")
    t = store.get_trajectory(tid)
    assert t["status"] == "rejected" and t["notes"].endswith("rejected: too short")
    call("/review_reset", tid)
    assert store.get_trajectory(tid)["status"] == "pending"
    assert "no row with id 9999" in call("/review_open", 9999)["msg"]


def test_review_bulk_actions_change_exactly_what_the_filters_match(api_url, store):
    api = client(api_url)
    names = ["table", "count", "plot", "source", "tid", "header", "ref", "thinking", "answer", "versions", "rating",
             "rev_n", "msg"]

    def bulk(action, tags="", reason="", **kw):
        return dict(zip(names, api.predict(action, None, tags, reason, *filters(**kw), api_name="/review_bulk")))

    imported = set(store.ids["imported"])
    before = {t["id"]: t["status"] for t in store.list_trajectories()}
    out = bulk("accept every match (skips failed filters)", source="import (any file)")
    assert "2 trajectory(ies) accepted" in out["msg"]
    after = {t["id"]: t["status"] for t in store.list_trajectories()}
    assert all(after[i] == "accepted" for i in imported)
    assert {i: s for i, s in after.items() if i not in imported} == {i: s for i, s in before.items() if i not in imported}
    # tags on every match; a tag action with no tags is refused and changes nothing
    out = bulk("add the tags below to all", tags="batch-1, fog", source="import (any file)")
    assert all(store.get_trajectory(i)["tags"] == ["batch-1", "fog"] for i in imported)
    assert "Bulk tags: write the tags" in bulk("remove the tags below from all", source="import (any file)")["msg"]
    out = bulk("reject all (note = reason)", reason="off-topic", tags="batch-1", search="kettle")
    (kettle,) = [i for i in imported if "kettle" in store.get_prompt(store.get_trajectory(i)["prompt_id"])["query"]]
    assert "1 trajectory(ies) rejected" in out["msg"] and store.get_trajectory(kettle)["status"] == "rejected"
    assert "rejected: off-topic" in store.get_trajectory(kettle)["notes"]
    assert _ids(out["table"]) == [kettle]  # the queue is redrawn with the same filters
    out = bulk("all back to pending", source="import (any file)")
    assert all(store.get_trajectory(i)["status"] == "pending" for i in imported)
    out = bulk("accept every match (skips failed filters)", search="no trajectory says this")
    assert "no trajectories to change" in out["msg"]
    with pytest.raises(Exception, match="not in the list of choices"):  # the menu itself refuses it
        bulk("delete all")


def test_export_preview_run_and_load_with_datasets(api_url, store):
    from datasets import load_dataset, load_from_disk

    api = client(api_url)
    # edit an accepted trajectory first: the export carries the current version
    tid = store.ids["reer"][0]
    curation.edit(store, tid, thinking="Edited plan: harbour first.")
    accepted = len(store.list_trajectories(status="accepted"))

    msg, records, describe = api.predict("chat", "accepted", "all", api_name="/export_preview")
    assert f'data-records="{accepted}"' in describe and f"Preview: 3 of {accepted} chat" in msg
    assert len(json.loads(records)) == 3

    result, files, card, history = api.predict("chat", "accepted", "all", True, api_name="/export_run")
    assert f'data-count="{accepted}"' in result and 'data-issues="0"' in result  # template kept every think block
    data = [f for f in files if f["orig_name"] == "train.jsonl"][0]["path"]
    assert any(f["orig_name"] == "README.md" for f in files) and card.startswith("# Palimpsest export (chat)")
    ds = load_dataset("json", data_files=data, split="train")
    assert len(ds) == accepted
    contents = [m[1]["content"] for m in ds["messages"]]
    assert any(c.startswith("<think>\nEdited plan: harbour first.\n</think>\n") for c in contents)
    # the export has its own folder under the store's folder, recorded in the history
    folder = Path(store.path).parent / "exports"
    written = [p for p in folder.iterdir() if p.is_dir()]
    assert len(written) == 1 and (written[0] / "train.jsonl").is_file() and (written[0] / "README.md").is_file()
    assert history["data"][0][2] == "chat" and history["data"][0][5] == accepted

    # hf: the datasets folder arrives zipped, and loads after unzipping
    result, files, *_ = api.predict("hf", "any", "all", False, api_name="/export_run")
    import zipfile

    z = [f["path"] for f in files if f["orig_name"].endswith(".zip")][0]
    out = Path(store.path).parent / "unzipped"
    zipfile.ZipFile(z).extractall(out)
    assert len(load_from_disk(str(out))) == len(store.list_trajectories())

    # dpo from REER trajectories only: a readable refusal naming why and what to try
    result, files, *_ = api.predict("dpo", "accepted", "reer", False, api_name="/export_run")
    text = html.unescape(result)
    assert "nothing to export as dpo" in text and "without REER steps that make preference pairs" in text
    assert 'Source "all"' in text and "--source" not in text and files is None
    # prm from the R2 trajectory works
    result, files, *_ = api.predict("prm", "accepted", "r2", False, api_name="/export_run")
    assert 'data-count="1"' in result


def test_library_upload_goes_through_core_io_and_feeds_review(api_url, store, tmp_path):
    from gradio_client import handle_file

    api = client(api_url)
    f = tmp_path / "more.jsonl"
    f.write_text(json.dumps({"query": "Name a colour for dusk.", "answer": "<think>\nNot grey.\n</think>\nLilac."})
                 + "\n{not json\n" + json.dumps({"query": "No answer"}) + "\n"
                 + json.dumps(IMPORTED[0]) + "\n")  # the last one is already stored
    before = len(store.list_trajectories())
    _, _, msg = api.predict([handle_file(str(f))], "", "all categories", api_name="/library_upload")
    msg = html.unescape(msg)
    assert "more.jsonl: 1 new prompt(s), 1 already in the library, 1 trajectory(ies) added for review" in msg
    assert "2 line(s) skipped" in msg and "<li>more.jsonl:2" in msg and "<li>more.jsonl:3" in msg
    assert len(store.list_trajectories()) == before + 1
    table, count, *_ = api.predict(*filters(search="lilac"), api_name="/review_list")
    assert len(table["data"]) == 1 and table["data"][0][2] == "jsonl"
