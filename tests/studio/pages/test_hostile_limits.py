"""Hostile limits of the studio and the engines: runs from many browser sessions are capped and
queued, Stop ends a generation between tokens, and the Library lists a page at a time.

Knows: the runners (studio.runners.reer.ReerRunner, studio.runners.r2.R2Runner) sharing one
studio.runners.threads.RunSlots; the stop check of core.models.lm (`stop_when`) as the local
backend (tiny random model), the scripted model (its `delay`) and the server backend's wait see
it; the Library's listing handler (studio.pages.library.prompt_rows) over thousands of prompts.
Waits are bounded by what is waited for (a thread that would sleep for minutes), never timed.
"""
from __future__ import annotations

import threading
import time

import pytest

from core.models.lm import GenerationConfig, GenerationStopped, stop_when, wait_unless_stopped
from core.models.load import load_lm
from core.r2.config import R2Config
from core.reer.config import ReerConfig
from studio.runners.r2 import R2Runner
from studio.runners.reer import ReerRunner
from studio.runners.threads import RunSlots

SLOW = "scripted:delay=600"  # every generation waits ten minutes unless a Stop ends it
REER_CFG = ReerConfig(candidates=2, max_steps=2, threshold=0.0, draft_max_new_tokens=120, candidate_max_new_tokens=60)
R2_CFG = R2Config(max_rounds=1, threshold=10, plan=False, draft_max_new_tokens=32)
QUERY = "Write a short scene about a lighthouse keeper who finds a letter."
REFERENCE = ("The keeper found the letter wedged in the lamp room door. It was addressed to him, in his own "
             "hand, dated thirty years ahead. He read it twice, then climbed to the lamp and waited for dark.")


def _prompts(store, n: int) -> list[str]:
    return [store.add_prompt(f"{QUERY} ({i})", REFERENCE)[0] for i in range(n)]


def _until(check, what: str, limit_s: float = 60.0) -> None:
    """Wait until `check()` holds (a bound on a wait, not a timing assertion)."""
    end = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.02)


def _run_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("reer-", "r2-")) and t.is_alive()]


# ---- Stop ends a generation between tokens ------------------------------------------------------

class _StopAfter:
    """A transformers streamer: counts generated tokens; after `n` of them another thread sets `stop`."""

    def __init__(self, n: int, stop: threading.Event):
        self.n, self.stop, self.tokens, self._prompt = n, stop, 0, True

    def put(self, value) -> None:
        if self._prompt:  # the first put is the prompt
            self._prompt = False
            return
        self.tokens += 1
        if self.tokens == self.n:
            t = threading.Thread(target=self.stop.set)
            t.start()
            t.join()

    def end(self) -> None:
        pass


def test_stop_ends_a_local_generation_within_a_token(tiny_lm):
    chat = [{"role": "user", "content": "Tell me a very long story about the sea."}]

    def config(streamer):  # greedy, and no end of turn before the budget: only a stop can end it early
        return GenerationConfig(max_new_tokens=24, temperature=0, extra={"streamer": streamer, "min_new_tokens": 24})

    free = _StopAfter(4, threading.Event())
    (text,) = tiny_lm.generate(chat, config(free))  # nobody watches the flag: the whole budget is used
    assert free.tokens == 24 and free.stop.is_set()

    stop = threading.Event()
    counted = _StopAfter(4, stop)
    with stop_when(stop.is_set), pytest.raises(GenerationStopped) as info:
        tiny_lm.generate(chat, config(counted))
    # ended at the next check: the token the stop came in on, or the one after (the criterion runs per token)
    assert counted.tokens in (4, 5) and info.value.tokens == counted.tokens

    # a check that never fires changes nothing (with stop strings too: their criterion runs beside it)
    plain = GenerationConfig(max_new_tokens=12, temperature=0, stop=("</rewrite>",))
    with stop_when(lambda: False):
        watched = tiny_lm.generate(chat, plain)
    assert watched == tiny_lm.generate(chat, plain)

    with stop_when(lambda: True), pytest.raises(GenerationStopped) as before:
        tiny_lm.generate(chat, config(_StopAfter(5, threading.Event())))
    assert before.value.tokens == 0  # a stop before the call: no generation at all


def test_stop_ends_the_wait_for_a_server_reply():
    """The server backend's generate waits through `wait_unless_stopped`: a Stop ends the wait."""
    release, stop = threading.Event(), threading.Event()
    entered = threading.Event()

    def slow_request():
        entered.set()
        release.wait(600)
        return {"choices": []}

    def stop_when_inside():
        entered.wait(60)
        stop.set()

    threading.Thread(target=stop_when_inside).start()
    try:
        with stop_when(stop.is_set), pytest.raises(GenerationStopped):
            wait_unless_stopped(slow_request, poll_s=0.02)
    finally:
        release.set()
    assert wait_unless_stopped(lambda: 42) == 42  # no check set: a plain call
    with stop_when(lambda: False):
        assert wait_unless_stopped(lambda: 7, poll_s=0.01) == 7
        with pytest.raises(ZeroDivisionError):  # the call's own error comes back to the caller
            wait_unless_stopped(lambda: 1 / 0, poll_s=0.01)


def test_stop_ends_a_reer_run_inside_a_slow_generation(store):
    lm = load_lm(SLOW)
    runner = ReerRunner(store, lambda: lm, slots=RunSlots(1))
    (pid,) = _prompts(store, 1)
    run_id = runner.start(pid, REER_CFG, lm.name)
    _until(lambda: store.last_seq(run_id) >= 1, "the run started its draft")  # ReerStarted saved: drafting now
    assert runner.is_driving(run_id) and store.get_run(run_id)["status"] == "running"
    assert runner.stop(run_id)
    assert runner.wait(run_id, 60), "the run's thread still sleeps in its generation after Stop"
    run = store.get_run(run_id)
    assert (run["status"], run["finish_reason"]) == ("stopped", "stopped")
    assert not _run_threads()


def test_stop_ends_an_r2_run_inside_a_slow_generation(store):
    lm = load_lm(SLOW)
    runner = R2Runner(store, lambda: lm, SLOW, slots=RunSlots(1))
    (pid,) = _prompts(store, 1)
    run_id = runner.start(pid, R2_CFG)
    _until(lambda: store.last_seq(run_id) >= 1, "the run started its draft")
    assert runner.stop(run_id)
    assert runner.wait(run_id, 60), "the run's thread still sleeps in its generation after Stop"
    assert store.get_run(run_id)["status"] == "stopped"


# ---- a cap on runs driven at once, with a line -------------------------------------------------

def test_runs_over_the_cap_wait_in_one_line_for_the_whole_app(store):
    lm = load_lm(SLOW)
    slots = RunSlots(1)
    reer = ReerRunner(store, lambda: lm, slots=slots)
    r2 = R2Runner(store, lambda: lm, SLOW, slots=slots)
    p1, p2, p3 = _prompts(store, 3)
    a = reer.start(p1, REER_CFG, lm.name)  # three browser sessions press Run
    b = reer.start(p2, REER_CFG, lm.name)
    c = r2.start(p3, R2_CFG)
    assert reer.is_driving(a) and not reer.is_driving(b) and not r2.is_driving(c)
    assert reer.queue_place(b) == (1, [a]) and r2.queue_place(c) == (2, [a])
    assert reer.queue_place(a) is None and len(_run_threads()) == 1
    # the waiting runs are stored runs: an app that dies now loses neither
    assert [store.get_run(r)["status"] for r in (b, c)] == ["running", "running"]
    assert store.last_seq(b) == store.last_seq(c) == 0

    reer.resume(b, 1)  # Run again on a waiting run changes its pace, it does not queue it twice
    assert reer.queue_place(b) == (1, [a])

    assert reer.stop(b)  # Stop on a waiting run: out of the line, finished as stopped
    assert reer.wait(b, 60) and store.get_run(b)["status"] == "stopped"
    assert r2.queue_place(c) == (1, [a]) and reer.is_driving(a)

    assert reer.stop(a)  # the slot frees: the next in line starts by itself
    assert reer.wait(a, 60) and store.get_run(a)["status"] == "stopped"
    _until(lambda: r2.is_driving(c), "the queued R2 run started when the slot freed")
    assert r2.queue_place(c) is None and slots.driven() == [c]
    assert r2.stop(c) and r2.wait(c, 60)
    assert store.get_run(c)["status"] == "stopped" and not _run_threads() and slots.driven() == []


def test_a_run_left_in_line_by_a_dead_app_is_resumed_by_the_next(store):
    """The line lives in memory; its runs live in the store: a new app (runner) drives one on Run."""
    slow = load_lm(SLOW)
    first = ReerRunner(store, lambda: slow, slots=RunSlots(1))
    p1, p2 = _prompts(store, 2)
    a = first.start(p1, REER_CFG, "scripted:")
    b = first.start(p2, REER_CFG, "scripted:")
    assert first.is_queued(b)
    # the app "dies" here; the next one has no line and no driver for b, which is still in the store
    fast = load_lm("scripted:")
    second = ReerRunner(store, lambda: fast, slots=RunSlots(1))
    assert not second.is_queued(b) and store.get_run(b)["status"] == "running"
    second.resume(b)
    assert second.wait(b, 60) and store.get_run(b)["status"] == "finished"
    first.stop(a)
    assert first.wait(a, 60)
    assert first.wait(b, 60)  # the dead app's line moves on to b, which is finished already


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PALIMPSEST_MAX_RUNS", "3")
    assert RunSlots().limit == 3
    monkeypatch.setenv("PALIMPSEST_MAX_RUNS", "0")
    with pytest.raises(Exception, match="PALIMPSEST_MAX_RUNS='0'"):
        RunSlots()
    monkeypatch.delenv("PALIMPSEST_MAX_RUNS")
    assert RunSlots().limit == 1


def _api_fn(app, name: str):
    return next(f.fn for f in app.fns.values() if f.api_name == name)


def test_the_pages_show_a_queued_run_and_its_place(store, monkeypatch):
    from studio.app import build_app
    from studio.pages.reer import DEMO, REAL, SETTINGS

    monkeypatch.setenv("PALIMPSEST_MAX_RUNS", "1")
    p1, p2, p3 = _prompts(store, 3)
    app = build_app(SLOW, store=store, samples=[], samples_path=None)
    reer_run, reer_show, reer_stop = (_api_fn(app, n) for n in ("reer_run", "reer_show", "reer_stop"))
    r2_show, r2_stop = _api_fn(app, "r2_show"), _api_fn(app, "r2_stop")
    settings = [DEMO.get(k, getattr(REAL, k)) for k in SETTINGS]

    def status_of(out: dict) -> str:
        return next(v for k, v in out.items() if getattr(k, "elem_id", "") in ("reer-status", "r2-status"))

    def run_of(out: dict) -> str:
        return next(v for k, v in out.items() if type(k).__name__ == "State" and isinstance(v, str) and len(v) == 32)

    a = run_of(reer_run(p1, None, "", *settings))
    b_out = reer_run(p2, None, "", *settings)
    b = run_of(b_out)
    assert f"queued: 1st in line, waiting for run {a[:8]}" in status_of(b_out)
    shown = status_of(reer_show(b, "score"))
    assert 'data-state="queued"' in shown and f"waiting for run {a[:8]}" in shown and "Stop takes it out" in shown
    assert "queued" not in status_of(reer_show(a, "score"))

    c_out = _api_fn(app, "r2_run")(p3, None, "", "model", 1, 10, 0, False, 32, 32, 32, False, 64)
    c = run_of(c_out)  # the R2 page shares the REER page's line: one cap for the app
    assert f"queued: 2nd in line, waiting for run {a[:8]}" in status_of(c_out)
    assert f"queued: 2nd in line" in status_of(r2_show(c))
    reer_stop(b)  # Stop on a waiting run takes it out of the line: the R2 run moves up
    assert "queued: 1st in line" in status_of(r2_show(c))
    reer_stop(a)
    r2_stop(c)
    for rid in (a, b, c):
        _until(lambda: store.get_run(rid)["status"] == "stopped", f"run {rid[:8]} stopped")


# ---- the Library lists a page at a time ---------------------------------------------------------

def _many_prompts(store, n: int, ref_chars: int) -> int:
    """n prompts with references of about `ref_chars` characters each (every 700th mentions
    "albatross", in its reference only); returns the characters of all references together."""
    from core.store import content_hash, now

    filler = "the tide came in over the grey stones and went out again "
    rows = []
    for i in range(n):  # as an import stores them (Store.add_prompt), in bulk: the listing is under test
        query = f"Task number {i}: write about the harbour"
        ref = f"Answer {i}. " + filler * (ref_chars // len(filler)) + ("An albatross. " if i % 700 == 0 else "")
        h = content_hash(query, ref)
        rows.append({"id": h[:16], "query": query, "reference": ref, "category": "sea" if i % 2 else "land",
                     "source": "test", "content_hash": h, "created_at": now()})
    with store.transaction():
        store.db["prompts"].insert_all(rows, batch_size=500)
    return sum(len(r["reference"]) for r in rows)


def test_the_library_lists_one_page_of_thousands_without_reading_their_texts(store, monkeypatch):
    import tracemalloc

    from core.store import Store
    from studio.pages import library

    text_chars = _many_prompts(store, 5000, 5000)
    assert text_chars > 20_000_000

    def no_full_listing(*a, **k):
        raise AssertionError("a listing read every prompt with its texts (Store.list_prompts)")

    monkeypatch.setattr(Store, "list_prompts", no_full_listing)

    def peak_of(call):
        tracemalloc.start()
        try:
            return call(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    (first, later, found, sea), peak = peak_of(lambda: (
        library.prompt_page(store), library.prompt_page(store, page=37),
        library.prompt_page(store, "albatross"),  # in references only: searched by SQLite
        library.prompt_page(store, "", "sea", page=1)))
    # what was read into Python: a page of rows with short heads, not 25 MB of references
    assert peak < 1_000_000, f"listing a page of the Library allocated {peak:,} bytes"
    (menu, cats), menu_peak = peak_of(lambda: (library.prompt_choices(store), library.categories(store)))
    assert menu_peak < text_chars / 5, f"the prompt menus allocated {menu_peak:,} bytes"  # heads only
    assert len(first.rows) == library.PAGE_SIZE and (first.total, first.pages, first.page) == (5000, 100, 0)
    assert first.rows[0][0] == store.prompt_summaries(limit=1)[0][0]["id"]
    assert first.label() == "Prompts 1-50 of 5,000 (page 1 of 100)"
    assert [r[2] for r in later.rows][:1] == ["Task number 1850: write about the harbour"]
    assert later.rows[0][3] == 2 + 12 * (5000 // 57)  # "Answer 1850." and 87 fillers of 12 words, counted by SQLite
    assert [r[2].split(":")[0] for r in found.rows] == [f"Task number {i}" for i in range(0, 5000, 700)]
    assert found.total == 8 and found.pages == 1
    assert sea.total == 2500 and all(r[1] == "sea" for r in sea.rows) and sea.rows[0][2].startswith("Task number 101:")
    assert len(menu) == 5000 and cats == ["all categories", "land", "sea"]
    assert library.prompt_page(store, page=10_000).page == 99  # past the end: the last page
    assert library.prompt_page(store, "50%_").total == 0  # % and _ are literal in a search


def test_the_library_pages_through_its_handlers(store):
    """Next and Previous through the page's own handlers (the app's library_next / library_prev)."""
    from studio.app import build_app
    from studio.pages import library

    _many_prompts(store, 120, 200)
    app = build_app("scripted:", store=store, samples=[], samples_path=None)
    nxt, prev, search = (_api_fn(app, n) for n in ("library_next", "library_prev", "library_search"))

    def table_and_page(out: dict):
        rows = next(v for k, v in out.items() if getattr(k, "elem_id", "") == "library-table")
        page = next(v for k, v in out.items() if type(k).__name__ == "State")
        return [r[2].split(":")[0] for r in rows], page

    firsts, page = table_and_page(nxt("", "all categories", 0))
    assert page == 1 and firsts[0] == "Task number 50" and len(firsts) == 50
    assert "Prompts 51-100 of 120 (page 2 of 3)" in library.pager_html(store, "", "all categories", page)
    firsts, page = table_and_page(nxt("", "all categories", 2))
    assert page == 2 and firsts[0] == "Task number 100" and len(firsts) == 20  # no page past the last
    firsts, page = table_and_page(prev("", "all categories", 0))
    assert page == 0 and firsts[0] == "Task number 0"
    firsts, page = table_and_page(search("Task number 7", "all categories"))
    assert page == 0 and firsts == ["Task number 7"] + [f"Task number {i}" for i in range(70, 80)]
    assert "No prompt matches." in library.pager_html(store, "nothing like this", None, 0)
