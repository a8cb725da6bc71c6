"""Which models a studio may load, and where the API key may go (core.models.shelf.ModelPolicy,
ModelChoice; core.models.server's key handling), checked against real listeners on 127.0.0.1.

Each listener is a tiny http.server that records every request's path and headers and answers
like an OpenAI-compatible server (GET /v1/models, POST /v1/chat/completions), or redirects
elsewhere. Two listeners on two ports are two hosts as far as the key is concerned ((host, port)
pairs). Nothing here loads a real model.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.models.lm import GenerationConfig
from core.models.urls import server_host
from core.models.scripted import ScriptedLM
from core.models.server import BadServerReply
from core.models.shelf import ModelChoice, ModelNotAllowed, ModelPolicy, ModelShelf

KEY = "sk-test-do-not-leak"


class Listener:
    """An OpenAI-compatible double on 127.0.0.1 that records (method, path, Authorization)."""

    def __init__(self, redirect_to: str | None = None, status: int = 200):
        self.seen: list[tuple[str, str, str | None]] = []
        self.redirect_to = redirect_to  # answer every GET with 302 to this base URL
        self.status = status  # 401: refuse like a server that wants a key
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, body: dict):
                if outer.status != 200:
                    self.send_response(outer.status)
                    data = b'{"error": {"message": "bad key"}}'
                else:
                    self.send_response(200)
                    data = json.dumps(body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.seen.append(("GET", self.path, self.headers.get("Authorization")))
                if outer.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._reply({"data": [{"id": "m", "max_model_len": 2048}]})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                outer.seen.append(("POST", self.path, self.headers.get("Authorization")))
                self._reply({"choices": [{"index": 0, "message": {"content": "hello"}, "finish_reason": "stop"}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.spec = f"{self.base}/v1#m"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self) -> set:
        return {auth for _, _, auth in self.seen}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listeners():
    made = []

    def make(**kw) -> Listener:
        made.append(Listener(**kw))
        return made[-1]

    yield make
    for x in made:
        x.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("PALIMPSEST_API_KEY", KEY)
    monkeypatch.delenv("PALIMPSEST_SERVER_TIMEOUT", raising=False)


def _chat(lm) -> str:
    return lm.generate([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=4))[0]


# ---- the policy -----------------------------------------------------------------------------------

def test_only_listed_specs_and_matching_patterns_are_allowed():
    policy = ModelPolicy(("scripted:app", " smollm2-135m "), patterns=("http://gpu1:8000/v1#*", "org/*"))
    assert policy.default == "scripted:app" and policy.specs == ("scripted:app", "smollm2-135m")
    assert policy.allows("") and policy.allows("smollm2-135m") and policy.allows("org/Model-7B")
    assert policy.allows("http://gpu1:8000/v1#Qwen/Qwen2.5-7B")
    for bad in ("/etc", "http://127.0.0.1:9/v1", "http://gpu1:8000@evil.example/v1#m", "other/Model",
                "scripted:script=/etc/passwd"):
        assert not policy.allows(bad), bad
    with pytest.raises(ModelNotAllowed, match=r"'/etc' is not allowed.*--allow-model PATTERN"):
        policy.check("/etc")
    assert policy.check(" ") == "scripted:app" and policy.check("org/x") == "org/x"
    assert ModelPolicy(("a",), allow_any=True).allows("http://anywhere:1/v1")


def test_key_hosts_are_only_the_servers_named_literally():
    policy = ModelPolicy(("http://GPU0:8000/v1#m", "https://api.example/v1", "scripted:"),
                         patterns=("http://gpu1:9000/v1#*", "http://*:8000/v1#*", "http*://gpu2/v1", "*"),
                         allow_any=True)
    assert policy.key_hosts == {("gpu0", 8000), ("api.example", 443), ("gpu1", 9000)}
    assert server_host("openai:http://h:81/v1#x") == ("h", 81) and server_host("org/name") is None
    assert server_host("http://h:notaport/v1") is None


def test_model_choice_refuses_before_loading_and_keeps_the_app_model_first():
    loads = []

    def load(spec, dtype="float32", device=None):
        loads.append(spec)
        return ScriptedLM(name=spec)

    choice = ModelChoice(ModelShelf(load=load), "scripted:app", ModelPolicy(("scripted:judge",), ("scripted:x*",)))
    assert choice.policy.specs == ("scripted:app", "scripted:judge")  # the app's model leads
    assert choice.choices() == [("scripted:app (the app's model)", ""), ("scripted:judge", "scripted:judge")]
    assert choice.lm("").name == "scripted:app" and choice.lm("scripted:x1").name == "scripted:x1"
    with pytest.raises(ModelNotAllowed):
        choice.lm("scripted:other")
    with pytest.raises(ModelNotAllowed):
        choice.spec("/no/such/folder")
    assert loads == ["scripted:app", "scripted:x1"]  # refused specs never reached the loader
    assert not ModelChoice(ModelShelf(load=load), "scripted:app").policy.allows("scripted:judge")


def test_every_model_the_studio_loads_sits_on_the_bounded_shelf():
    shelf = ModelShelf(capacity=2, load=lambda spec, dtype="float32", device=None: ScriptedLM(name=spec))
    choice = ModelChoice(shelf, "scripted:app", ModelPolicy(("scripted:app",), ("scripted:*",)))
    for i in range(5):
        choice.lm(f"scripted:{i}")
    assert shelf.loaded() == ["scripted:3", "scripted:4"] and shelf.loads == 5


# ---- the key, on the wire -------------------------------------------------------------------------

def test_the_key_reaches_a_named_server_and_never_another(listeners):
    named, other = listeners(), listeners()
    choice = ModelChoice(ModelShelf(), named.spec, ModelPolicy((named.spec,), allow_any=True))
    assert _chat(choice.lm("")) == "hello"
    work = lambda srv: [p for _, p, _ in srv.seen if p in ("/v1/models", "/v1/chat/completions")]  # noqa: E731
    assert named.keys() == {f"Bearer {KEY}"} and work(named) == ["/v1/models", "/v1/chat/completions"]
    assert _chat(choice.lm(other.spec)) == "hello"  # allowed (allow_any), but without the key (probes too)
    assert work(other) == ["/v1/models", "/v1/chat/completions"] and other.keys() == {None}


def test_a_server_allowed_only_by_a_wildcard_host_gets_no_key(listeners):
    srv = listeners()
    choice = ModelChoice(ModelShelf(), "scripted:", ModelPolicy(("scripted:",), ("http://127.0.0.1:*",)))
    assert _chat(choice.lm(srv.spec)) == "hello" and srv.keys() == {None}
    literal = ModelChoice(ModelShelf(), "scripted:", ModelPolicy(("scripted:",), (f"{srv.base}/v1#*",)))
    _chat(literal.lm(srv.spec))
    assert f"Bearer {KEY}" in srv.keys()


def test_a_refused_spec_sends_nothing_at_all(listeners):
    srv = listeners()
    choice = ModelChoice(ModelShelf(), "scripted:")
    with pytest.raises(ModelNotAllowed):
        choice.lm(srv.spec)
    assert srv.seen == []


def test_a_redirect_never_carries_the_key(listeners):
    target = listeners()
    bouncer = listeners(redirect_to=target.base)
    choice = ModelChoice(ModelShelf(), bouncer.spec)  # the bouncer is named, so it is sent the key
    choice.get_lm()  # GET /v1/models is answered with 302 to the target, which lists the model
    assert bouncer.keys() == {f"Bearer {KEY}"}
    assert target.seen and target.keys() == {None}


def test_a_server_refusing_a_withheld_key_says_why(listeners):
    srv = listeners(status=401)
    choice = ModelChoice(ModelShelf(), "scripted:", ModelPolicy(("scripted:",), allow_any=True))
    with pytest.raises(BadServerReply, match="the API key was not sent to it.*--allow-model"):
        choice.lm(srv.spec)
    assert srv.keys() == {None}


def test_one_apps_keyed_model_is_not_handed_to_an_app_without_that_host(listeners):
    srv = listeners()
    shelf = ModelShelf()
    keyed = ModelChoice(shelf, srv.spec)
    unkeyed = ModelChoice(shelf, "scripted:", ModelPolicy(("scripted:",), allow_any=True))
    assert keyed.lm(srv.spec) is not unkeyed.lm(srv.spec)
    srv.seen.clear()
    _chat(unkeyed.lm(srv.spec))
    assert srv.keys() == {None}
