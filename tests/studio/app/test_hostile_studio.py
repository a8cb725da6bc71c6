"""The studio's routes as a hostile user meets them: model fields that name another host, uploads
over the cap, routes without a login, `file=` paths out of bounds, an open --host without --auth.

The studio runs on the scripted model (core.models.scripted: no model load) and is reached through
gradio_client (as a script would) and plain HTTP (httpx, as an attacker would). The "other host"
is a tiny http.server on 127.0.0.1 that records every request it gets: a test that it got nothing
is a test that no prompt and no key left the studio. Cases that held before logins (login gates
the API, `file=` traversal refused) are here so they stay held.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import httpx
import pytest
from needs import ROOT
from test_model_policy import KEY, Listener
from ui_helpers import client, free_port, launched, studio_app

from core.models.shelf import ModelPolicy
from core.store import open_store

pytestmark = [pytest.mark.ui]

APP = "scripted:"
REER = [2, 1, 0.0, 100, 20, 0, True]  # candidates, steps, threshold, draft/candidate tokens, seed, cues
R2 = ["model", 1, 9, 0, False, 64, 32, 64, False, 48]  # the r2_run settings after prompt and judge


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """One studio for the module, as started by default: its own model only, a 10 KiB upload cap.
    Yields (url, store, prompt id, app)."""
    from studio.app import serve

    store = open_store(tmp_path_factory.mktemp("studio") / "studio.db")
    pid = store.add_prompt("Write a haiku about rain.", "Rain taps the roof.", id="p-rain")[0]
    app = studio_app(APP, store)
    _, url, _ = serve(app, port=free_port(), prevent_thread_lock=True, quiet=True, max_upload_mb=0.01)
    yield url.rstrip("/"), store, pid, app
    app.close()
    store.close()


@pytest.fixture
def other_host(monkeypatch):
    """A listener that is not on the studio's list, and an API key the server holds."""
    monkeypatch.setenv("PALIMPSEST_API_KEY", KEY)
    srv = Listener()
    yield srv
    srv.close()


def _refused(call) -> str:
    """The text a refused call gives: its error (Gradio refused the value) or its status output."""
    try:
        out = call()
    except Exception as exc:  # noqa: BLE001  (gradio_client raises AppError with the server's message)
        return str(exc)
    return json.dumps(out)


def _model_fields(app) -> dict[str, dict]:
    cfg = app.get_config_file()
    return {c["props"]["elem_id"]: c for c in cfg["components"]
            if c["props"].get("elem_id") in ("reer-model", "r2-judge-model", "train-model")}


# ---- model fields: nothing leaves for a host the starter did not name ------------------------------

def test_crafted_model_specs_never_reach_another_host(studio, other_host, tmp_path):
    """The REER model, the R2 judge and the Train model, each sent another host's URL through the
    API: refused, no run recorded, and the listener heard nothing (before the fix, REER recorded a
    run and its thread sent the prompt and the key to the listener, and the R2 judge was loaded at
    once). The fields are dropdowns of the app's model only."""
    url, store, pid, app = studio
    api = client(url + "/")
    reer = _refused(lambda: api.predict(pid, other_host.spec, *REER, api_name="/reer_run"))
    r2 = _refused(lambda: api.predict(pid, other_host.spec, *R2, api_name="/r2_run"))
    train = _refused(lambda: api.predict("x.jsonl", other_host.spec, 2, 0, False, 0.34, str(tmp_path / "o"),
                                         api_name="/train_run"))
    for text in (reer, r2, train):
        assert other_host.spec in text and ("not in the list of choices" in text or "not allowed" in text), text
    assert store.list_runs() == [] and store.list_train_runs() == []
    assert other_host.seen == []
    fields = _model_fields(app)
    assert set(fields) == {"reer-model", "r2-judge-model", "train-model"}
    for elem_id, c in fields.items():
        assert c["type"] == "dropdown" and c["props"]["allow_custom_value"] is False, elem_id
        assert len(c["props"]["choices"]) == 1, (elem_id, c["props"]["choices"])


def test_with_patterns_the_server_refuses_a_typed_spec_by_name(tmp_path, other_host):
    """A pattern makes the fields take typed text and lists the extra --model specs; the server
    still checks each spec (our message, naming the fix), and a spec that matches runs."""
    store = open_store(tmp_path / "studio.db")
    pid = store.add_prompt("Write a haiku about rain.", "Rain taps the roof.", id="p-rain")[0]
    app = studio_app(APP, store, policy=ModelPolicy((APP, "scripted:seed=2"), patterns=("scripted:seed=*",)))
    for elem_id, c in _model_fields(app).items():
        values = [v for _, v in c["props"]["choices"]]
        assert c["props"]["allow_custom_value"] is True and "scripted:seed=2" in values and len(values) == 2, elem_id
    with launched(app) as url:
        api = client(url)
        _, status, *_ = api.predict(pid, other_host.spec, *REER, api_name="/reer_run")
        assert "is not allowed in this studio" in status and "--allow-model PATTERN" in status
        out = api.predict(pid, other_host.spec, *R2, api_name="/r2_run")
        assert "is not allowed in this studio" in out[1]
        assert store.list_runs() == [] and other_host.seen == []
        _, status, *_ = api.predict(pid, "scripted:seed=3", *REER, api_name="/reer_run")
        assert "not allowed" not in status and [r["model"] for r in store.list_runs()] == ["scripted:seed=3"]
    store.close()


# ---- uploads ---------------------------------------------------------------------------------------

def test_an_upload_over_the_cap_is_refused(studio):
    upload = studio[0] + "/gradio_api/upload"
    big = httpx.post(upload, files={"files": ("big.jsonl", b"x" * 20_000)}, timeout=30)
    assert big.status_code == 413 and "maximum allowed size" in big.text
    small = httpx.post(upload, files={"files": ("small.jsonl", b'{"query": "q", "reference": "r"}\n')}, timeout=30)
    assert small.status_code == 200 and small.json()[0].endswith("small.jsonl")


def test_the_upload_cap_is_a_checked_setting():
    from studio.app import DEFAULT_MAX_UPLOAD_MB, max_file_size
    from studio.cli.main import build_parser, main

    assert max_file_size(DEFAULT_MAX_UPLOAD_MB) == int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    with pytest.raises(ValueError, match="above 0"):
        max_file_size(0)
    assert main(["app", "--max-upload-mb", "0"]) == 2
    app_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["app"]
    cap = next(a for a in app_parser._actions if a.dest == "max_upload_mb")
    assert f"default {DEFAULT_MAX_UPLOAD_MB:g})" in cap.help  # the help tells the real default


# ---- login and files -------------------------------------------------------------------------------

def _traversal(store, other_host) -> list[str]:
    return ["/gradio_api/file=/etc/passwd", f"/gradio_api/file={store.path}",  # a real file outside the app
            "/gradio_api/file=../../../../etc/passwd", "/gradio_api/file=%2e%2e/%2e%2e/etc/passwd",
            f"/gradio_api/file={other_host.base}/v1/models"]  # Gradio fetches no private address


def _refuses_files(http, paths: list[str]) -> None:
    for path in paths:
        r = http.get(path)
        assert r.status_code in (400, 403, 404) and "root:" not in r.text, (path, r.status_code)


def test_without_login_the_api_answers_and_file_paths_stay_inside(studio, other_host):
    url, store, _, _ = studio
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/gradio_api/info").status_code == 200
        _refuses_files(http, _traversal(store, other_host))
    assert other_host.seen == []


def test_a_login_gates_every_route_that_runs_or_reads(tmp_path, other_host):
    from studio.app import serve

    store = open_store(tmp_path / "studio.db")
    app = studio_app(APP, store)
    _, url, _ = serve(app, port=free_port(), auth=("ada", "s3cret"), prevent_thread_lock=True, quiet=True)
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=30) as http:
            gated = {"info": http.get("/gradio_api/info").status_code,
                     "upload": http.post("/gradio_api/upload", files={"files": ("a.txt", b"a")}).status_code,
                     "queue": http.post("/gradio_api/queue/join", json={}).status_code,
                     "call": http.post("/gradio_api/call/library_search",
                                       json={"data": ["", "all categories"]}).status_code,
                     "file": http.get("/gradio_api/file=/etc/passwd").status_code}
            assert set(gated.values()) == {401}, gated
            assert http.post("/login", data={"username": "ada", "password": "wrong"}).status_code in (400, 401)
            assert http.get("/gradio_api/info").status_code == 401
            assert http.post("/login", data={"username": "ada", "password": "s3cret"}).status_code == 200
            assert http.get("/gradio_api/info").status_code == 200
            _refuses_files(http, _traversal(store, other_host))
    finally:
        app.close()
        store.close()
    assert other_host.seen == []


# ---- start-up warnings -----------------------------------------------------------------------------

def test_start_warnings_name_an_open_host_without_login_and_free_model_text():
    from studio.app import start_warnings

    plain = ModelPolicy((APP,))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert start_warnings(host, None, plain) == [], host
    assert start_warnings("0.0.0.0", ("a", "b"), plain) == []
    (open_,) = start_warnings("0.0.0.0", None, plain)
    assert "--host 0.0.0.0" in open_ and "--auth USER:PASSWORD" in open_
    (free,) = start_warnings("127.0.0.1", None, ModelPolicy(("http://gpu:8000/v1#m",), allow_any=True))
    assert "--allow-any-model" in free and "gpu:8000" in free


def test_app_on_an_open_host_without_login_warns_on_start(tmp_path):
    """`palimpsest app --host 0.0.0.0` (no --auth) prints the warning before it serves."""
    port = free_port()
    env = {**os.environ, "PALIMPSEST_AUTH": ""}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "app", "--host", "0.0.0.0", "--port", str(port),
                             "--model", APP, "--allow-any-model", "--db", str(tmp_path / "s.db")],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    guard = threading.Timer(120, proc.kill)  # a start that hangs ends the read below (EOF)
    guard.start()
    try:
        for line in proc.stderr:
            lines.append(line)
            if "demo mode" in line:  # logged after the start warnings, once the model is loaded
                break
    finally:
        guard.cancel()
        proc.terminate()
        proc.wait(timeout=30)
    text = "".join(lines)
    assert "--host 0.0.0.0 serves the studio beyond this machine without a login" in text, text
    assert "--allow-any-model: studio users may load any model spec" in text, text
