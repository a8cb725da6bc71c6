"""Hostile conditions for the server backend's replica pool (core.models.endpoints): dead
replicas, overloaded ones (429/503), slow ones, replicas that die mid-run, and API keys per
endpoint. Each replica is a tiny http.server on 127.0.0.1 that answers a vLLM-shaped chat
reply ("from <port>") after an optional delay, or with the statuses queued in `fail`.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from needs import ROOT

from core.models.endpoints import AllEndpointsDown, Endpoint, EndpointPool, key_env_name
from core.models.lm import GenerationConfig, LMError
from core.models.server import OpenAILM
from core.models.shelf import ModelPolicy

MODEL = "m"
HI = [{"role": "user", "content": "hi"}]


class Replica:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.fail: list[int] = []  # statuses to answer with, first first, before answering normally
        self.chats = 0
        self.auth: set = set()
        self.open = 0  # requests being answered now
        self.most_open = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.auth.add(self.headers.get("Authorization"))
                if self.path == "/v1/models":
                    return self._send(200, {"data": [{"id": MODEL, "max_model_len": 4096}]})
                self._send(404, {"message": "Not Found"})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.auth.add(self.headers.get("Authorization"))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"message": "Not Found"})
                with lock:
                    status = outer.fail.pop(0) if outer.fail else 200
                    outer.open += 1
                    outer.most_open = max(outer.most_open, outer.open)
                try:
                    if status != 200:
                        return self._send(status, {"message": f"HTTP {status} on purpose"})
                    time.sleep(outer.delay)
                    with lock:
                        outer.chats += 1
                    self._send(200, {"choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"content": f"from {outer.port}"}}]})
                finally:
                    with lock:
                        outer.open -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replicas(monkeypatch):
    for name in ("PALIMPSEST_API_KEY", "OPENAI_API_KEY", "PALIMPSEST_SERVER_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    made = []

    def make(delay: float = 0.0) -> Replica:
        made.append(Replica(delay))
        return made[-1]
    yield make
    for r in made:
        r.stop()


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def fast(lm: OpenAILM) -> OpenAILM:
    lm.pool.backoff_s, lm.pool.backoff_cap_s = 0.01, 0.02
    return lm


def test_requests_spread_over_replicas_least_in_flight(replicas):
    a, b = replicas(delay=0.2), replicas(delay=0.2)
    lm = OpenAILM.from_spec(f"{a.url},{b.url}#{MODEL}")
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda _: lm.generate(HI, GenerationConfig())[0], range(8)))
    assert a.chats == 4 and b.chats == 4  # least in-flight: 8 at once split evenly
    assert {str(o) for o in out} == {f"from {a.port}", f"from {b.port}"}


def test_a_dead_replica_is_dropped_at_load_and_the_others_carry_on(replicas, caplog):
    live = replicas()
    dead = dead_url()
    with caplog.at_level("WARNING"):
        lm = OpenAILM.from_spec(f"{dead},{live.url}#{MODEL}")
    assert f"dropping endpoint {dead}" in caplog.text
    assert [lm.generate(HI, GenerationConfig())[0] for _ in range(3)] == [f"from {live.port}"] * 3


def test_a_replica_killed_mid_run_is_retried_elsewhere_then_dropped(replicas, monkeypatch, caplog):
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "3")
    a, b = replicas(), replicas()
    lm = fast(OpenAILM.from_spec(f"{a.url},{b.url}#{MODEL}"))
    a.stop()
    with caplog.at_level("WARNING"):
        out = [lm.generate(HI, GenerationConfig())[0] for _ in range(6)]
    assert out == [f"from {b.port}"] * 6  # nothing lost
    assert f"dropping endpoint {a.url} after 3 failures" in caplog.text
    assert [e.base for e in lm.pool.live] == [b.url]


def test_overload_is_retried_and_a_bad_request_is_not(replicas, monkeypatch):
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "2")
    r = replicas()
    lm = fast(OpenAILM.from_spec(f"{r.url}#{MODEL}"))
    r.fail = [429, 503]
    assert lm.generate(HI, GenerationConfig())[0] == f"from {r.port}"
    r.fail = [400]
    with pytest.raises(LMError, match="HTTP 400"):
        lm.generate(HI, GenerationConfig())
    assert r.fail == []  # asked once


def test_every_replica_down_is_one_line_naming_each(replicas, monkeypatch):
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "6")
    a, b = replicas(), replicas()
    lm = fast(OpenAILM.from_spec(f"{a.url},{b.url}#{MODEL}"))
    a.stop()
    b.stop()
    with pytest.raises(AllEndpointsDown) as err:
        lm.generate(HI, GenerationConfig())
    text = str(err.value)
    assert "\n" not in text and text.startswith("every endpoint is down") and a.url in text and b.url in text


def test_a_dropped_replica_gets_a_trial_after_its_revive_time():
    now = [1000.0]  # the pool's clock, moved by the test: no real waiting, no window to miss
    pool = EndpointPool([Endpoint("http://a/v1", "http://a"), Endpoint("http://b/v1", "http://b")],
                        timeout=1, revive_s=60, clock=lambda: now[0])
    a, b = pool.endpoints
    pool.drop(a, "refused")
    assert a.dropped_at == 1000.0 and pool._pick(set()) is b
    pool._done(b, None)
    b.in_flight = 5  # busy: once revived, a is the least in-flight
    now[0] += 59.9
    assert pool._pick(set()) is b  # not yet: b, busy as it is
    pool._done(b, None)
    now[0] += 0.1  # 60 s after the drop
    assert pool._pick(set()) is a and a.dropped_at == 1060.0  # one trial, and the next trial in 60 s
    pool._done(a, RuntimeError("still down"))
    assert pool._pick(set()) is b  # the trial failed: dropped until 1120
    pool._done(b, None)
    now[0] += 60
    assert pool._pick(set()) is a
    pool._done(a, None)  # it answers: back in use
    assert a.dropped_at is None and pool.live == [a, b]


def test_each_replica_gets_its_own_key_and_only_named_hosts_get_one(replicas, monkeypatch):
    a, b = replicas(), replicas()
    monkeypatch.setenv(key_env_name(a.url), "key-a")
    monkeypatch.setenv("PALIMPSEST_API_KEY", "key-all")
    assert key_env_name("http://gpu-1.lan:8000/v1") == "PALIMPSEST_API_KEY_GPU_1_LAN_8000"
    OpenAILM.from_spec(f"{a.url},{b.url}#{MODEL}")
    assert a.auth == {"Bearer key-a"} and b.auth == {"Bearer key-all"}
    c = replicas()
    named_only_a = ModelPolicy((f"{a.url},{b.url}#{MODEL}",), allow_any=True).key_hosts
    assert ("127.0.0.1", a.port) in named_only_a and ("127.0.0.1", b.port) in named_only_a
    OpenAILM.from_spec(f"{a.url},{c.url}#{MODEL}", key_hosts=named_only_a)
    assert c.auth == {None}


def test_one_model_serves_many_threads_with_a_client_tokenizer(replicas, monkeypatch):
    """The batch commands call one OpenAILM from N threads: chats rendered and tokens counted
    here at the same time must neither fail nor mix."""
    r = replicas()
    lm = OpenAILM.from_spec(f"{r.url}#{MODEL}#tokenizer=smollm2-135m")
    texts = [f"item {i}: " + "word " * (i % 7) for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(lm.count_tokens, texts))
        chats = list(pool.map(lambda t: lm.chat_text([{"role": "user", "content": t}]), texts))
    assert counts == [lm.count_tokens(t) for t in texts]
    assert all(t in c for t, c in zip(texts, chats))


def test_special_tokens_left_out_of_the_echo_before_the_continuation_are_accepted():
    """llama-cpp-python leaves every `<|im_start|>` (its BOS id) out of its echo under a chat
    template while usage counts it: the count check refused every chat-template score (the studio
    REER page against it). Specials left out BEFORE the continuation are now accepted, checked
    against the text; the continuation's own tokens are still located by characters."""
    from core.models.lm import ScoreRequest
    from core.serve_standin import fake_logprob, render_chat, serve

    context = render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A line."}], True)
    with serve(mode={"drop_specials"}) as s:
        lm = OpenAILM.from_spec(s.spec, check=False)
        out = lm.loglikelihood([ScoreRequest((context,), "The sea was calm."),
                                ScoreRequest((context + "The",), " sea was calm.")])
        # "\nThe" straddles the boundary (the stand-in's words keep their leading whitespace): continuation
        assert [r.tokens for r in out] == [["\nThe", " sea", " was", " calm."], [" sea", " was", " calm."]]
        assert out[0].logprobs == [fake_logprob(t) for t in out[0].tokens]
        assert [r.context_tokens for r in out] == [11, 12]  # listed ones only: 3 specials left out, 2 listed as ""
        # a special left out INSIDE the continuation is not explained by the text before it
        with pytest.raises(LMError, match="lists .* prompt tokens but counts"):
            lm.loglikelihood([ScoreRequest((context,), "Yes.<|im_end|>\n<|im_start|>user\nMore")])


def test_unlisted_specials_must_be_the_only_difference_from_the_text():
    from core.models.echo import BadServerReply, pick_continuation, unlisted_specials

    head_text = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    head = ["user", "\n", "Hi", "", "\n", "ass", "istant", "\n"]
    assert unlisted_specials(head, head_text) == 2
    assert unlisted_specials(["user", "\n", "Ho"] + head[3:], head_text) is None  # a word differs: no excuse
    toks, lps = head + ["Yes", "."], [None] * len(head) + [-1.0, -2.0]
    text = head_text + "Yes."
    n = len(head) + 2
    assert pick_continuation(toks, lps, len(head_text), len(text), n, n + 3, text) == (["Yes", "."], [-1.0, -2.0], 8)
    with pytest.raises(BadServerReply, match="do not explain it"):  # one more than 2 unlisted + a BOS
        pick_continuation(toks, lps, len(head_text), len(text), n, n + 4, text)


# ---- a misbehaving server: bad log-probs, a huge reply, a trickle ------------------------------

POISONS = [float("nan"), float("-inf"), 5.0, "-0.5"]


@pytest.mark.parametrize("poison", POISONS, ids=["nan", "-inf", "+5", "string"])
def test_invalid_logprobs_are_one_line_naming_the_server_and_the_value(poison):
    """Before: NaN scored as ppl NaN / score 2.0, -inf as ppl 1e304, +5 as ppl 0.0067, "-0.5" as -0.5."""
    from core.models.lm import ScoreRequest
    from core.models.scoring import score
    from core.serve_standin import serve

    with serve() as s:
        lm = OpenAILM.from_spec(s.spec)  # the alignment probe is answered honestly: it loads
        s.state.poison = poison
        with pytest.raises(LMError) as err:
            lm.loglikelihood([ScoreRequest(("The sea",), " was calm tonight.")])
        text = str(err.value)
        assert "\n" not in text and s.url in text and repr(poison) in text and "not used" in text
        with pytest.raises(LMError):
            score(lm, "A query.", "", "The sea was calm tonight.")


def test_rounding_just_above_zero_is_taken_as_zero():
    from core.models.echo import LOGPROB_TOLERANCE
    from core.models.lm import ScoreRequest
    from core.serve_standin import serve

    with serve() as s:
        lm = OpenAILM.from_spec(s.spec)
        s.state.poison = LOGPROB_TOLERANCE / 2
        got = lm.loglikelihood([ScoreRequest(("The sea",), " was calm.")])[0]
        assert got.logprobs == [0.0, 0.0]
        s.state.poison = 0  # a JSON integer is a number too
        assert lm.loglikelihood([ScoreRequest(("The sea",), " was calm.")])[0].logprobs == [0.0, 0.0]


def test_score_against_a_nan_server_exits_nonzero_and_writes_no_row(tmp_path):
    import subprocess
    import sys

    from core.serve_standin import serve

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"query": "Write a line.", "reference": "The sea was calm tonight."}) + "\n")
    with serve() as s:
        s.state.poison = float("nan")
        res = subprocess.run([sys.executable, "-m", "studio.cli", "score", "--input", str(src), "--out", str(out),
                              "--model", s.spec], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert res.returncode != 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "nan" in ln]
    assert len(lines) == 1 and s.url in lines[0], res.stderr  # one line, naming the server and the value
    assert not out.exists() or out.read_text() == ""  # nothing stored


def test_a_huge_reply_is_refused_at_the_cap_without_reading_it_whole(monkeypatch):
    """Before: a valid 1 GB reply took the client to 3.18 GB before it gave up."""
    import tracemalloc

    from core.models.lm import ScoreRequest
    from core.serve_standin import serve

    monkeypatch.setenv("PALIMPSEST_SERVER_MAX_REPLY_MB", "1")
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "0")
    with serve() as s:
        lm = OpenAILM.from_spec(s.spec)
        s.state.huge_mb = 200
        tracemalloc.start()
        try:
            with pytest.raises(LMError, match=r"more than the 1,048,576-byte cap.*MAX_REPLY_MB") as err:
                lm.loglikelihood([ScoreRequest(("The sea",), " was calm.")])
            peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
        finally:
            tracemalloc.stop()
        assert s.url in str(err.value) and "\n" not in str(err.value)
        assert peak_mb < 20, peak_mb  # the stand-in streams 1 MB pieces; the client kept at most the cap
        s.state.huge_mb = 0.5  # under the cap: taken
        assert lm.loglikelihood([ScoreRequest(("The sea",), " was calm.")])[0].tokens == [" was", " calm."]


def test_a_trickling_reply_is_cut_off_at_the_deadline_for_the_whole_request(monkeypatch):
    """Before: 1 byte every 2 s with PALIMPSEST_SERVER_TIMEOUT=5 took 151 s (the timeout was per read)."""
    from core.models.lm import ScoreRequest
    from core.serve_standin import serve

    monkeypatch.setenv("PALIMPSEST_SERVER_TIMEOUT", "2")
    monkeypatch.setenv("PALIMPSEST_SERVER_RETRIES", "0")
    with serve() as s:
        lm = OpenAILM.from_spec(s.spec)
        s.state.trickle_s = 0.2  # each byte well within the per-read timeout; ~1000 bytes: 200 s in all
        got: list = []

        def go():
            try:
                lm.loglikelihood([ScoreRequest(("The sea",), " was calm.")])
                got.append("answered")
            except LMError as exc:
                got.append(exc)
        t0 = time.monotonic()
        worker = threading.Thread(target=go, daemon=True)
        worker.start()
        worker.join(15)
        took = time.monotonic() - t0
        assert got and isinstance(got[0], LMError), f"still reading after {took:.0f} s"
        assert took < 4, took
        assert "within 2 s" in str(got[0]) and "PALIMPSEST_SERVER_TIMEOUT" in str(got[0]) and s.url in str(got[0])


@pytest.mark.parametrize("line, why", [
    ("Overall: -3", "the overall score -3 is not on the 1-10 scale"),
    ("**Overall**: -3", "the overall score -3 is not on the 1-10 scale"),
    ("Overall score: -3/10", "the overall score -3 is not on the 1-10 scale"),
    ("Overall: 12", "the overall score 12 is not on the 1-10 scale"),
    ("Overall: n/a", "not replaced by the criteria's mean"),
    ('{"scores": [7, 5], "overall": -3, "critique": "needs more vivid detail here"}', "-3 is not on the 1-10 scale"),
    ('{"scores": [7, 5], "overall": 30, "critique": "needs more vivid detail here"}', "30 is not on the 1-10 scale"),
])
def test_the_judge_parser_keeps_the_minus_sign_and_never_replaces_an_off_scale_overall(line, why):
    """Before: "Overall: -3" was read as the criteria's mean 6 (or "Overall -3" as 3.0), and an off-scale
    JSON overall was silently replaced by the criteria's mean."""
    from core.r2.judge import parse_judgment

    raw = line if line.startswith("{") else f"1. clear: 7\n2. vivid: 5\n{line}\nCritique: the draft needs more detail."
    assert parse_judgment(raw, ["clear", "vivid"]) == (None, why) or why in parse_judgment(raw, ["clear", "vivid"])[1]
    ok = parse_judgment("1. clear: 7\n2. vivid: -5\nOverall - 7\nCritique: the draft needs more detail.",
                        ["clear", "vivid"])[0]
    assert ok["overall"] == 7 and ok["scores"] == {"clear": 7, "vivid": None}  # "- 7" a separator; -5 unscored


def test_reer_run_against_a_nan_server_stores_no_score(tmp_path):
    """Before: `reer run` stored 8 NaN events and a trajectory scored 2.0."""
    import sqlite3
    import subprocess
    import sys

    from core.serve_standin import serve

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"query": "Write a short essay on tides.", "reference": "The tide comes in twice a "
                               "day. Towns plan around it. Fishermen know its hours by heart."}) + "\n")
    db = tmp_path / "s.db"
    with serve(brain="scripted") as s:
        s.state.poison = float("nan")
        res = subprocess.run([sys.executable, "-m", "studio.cli", "reer", "run", "--input", str(src), "--out",
                              str(tmp_path / "out.jsonl"), "--db", str(db), "--model", s.spec, "--max-steps", "2",
                              "--candidates", "2"], cwd=ROOT, capture_output=True,
                             text=True, timeout=300)
    assert res.returncode != 0 and "sent the log-prob nan" in res.stderr and s.url in res.stderr, res.stderr
    with sqlite3.connect(db) as con:
        kinds = {k for (k,) in con.execute("SELECT kind FROM events")}
        assert not kinds & {"initial_draft", "candidate_scored", "segment_decided", "run_finished"}, kinds
        assert con.execute("SELECT count(*) FROM trajectories").fetchone()[0] == 0
        assert [r for (r,) in con.execute("SELECT status FROM runs")] == ["failed"]
