"""Hostile input to the studio's logins (studio.users): a users file whose scrypt costs would eat memory
or time, an oversize or multi-line password, a login name no annotator may have; each is refused
naming the place, and a login check never hashes an oversize password."""
from __future__ import annotations

import pytest
from needs import ROOT

from studio import users as U


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    monkeypatch.setattr(U, "COST_N", 2 ** 4)


@pytest.mark.parametrize("costs", ["1048576$32$1", "2097152$8$1", "16384$8$64", "16384$0$1", "0$8$1"])
def test_costs_that_would_eat_memory_or_time_are_refused_at_read(tmp_path, costs):
    path = tmp_path / "users"
    path.write_text(f"ada\tscrypt${costs}$AAAAAAAAAAAAAAAAAAAAAA==${'A' * 44}\n", encoding="utf-8")
    with pytest.raises(U.UsersFileError, match=rf"{path}:1: scrypt costs .* out of range"):
        U.read_users(path)


def test_oversize_and_multiline_passwords(tmp_path, monkeypatch):
    path = tmp_path / "users"
    for bad in ("x" * (U.MAX_PASSWORD + 1), "two\nlines here", "short"):
        with pytest.raises(U.UsersFileError, match="password"):
            U.add_user(path, "ada", bad)
    assert not path.exists()  # nothing written
    U.add_user(path, "ada", "correct horse")
    logins = U.Logins.load(path)
    derived = []
    monkeypatch.setattr(U, "_derive", lambda *a, **k: derived.append(a) or b"")
    assert not logins("ada", "y" * 10_000_000)  # refused before any hashing
    assert derived == []


@pytest.mark.parametrize("name, says", [("model:gpt", "kept for model judges"), ("a\x1bb", "is not a name"),
                                        ("x" * 81, "is not a name"), ("   ", "give a name")])
def test_names_no_annotator_may_have_are_refused(tmp_path, name, says):
    with pytest.raises(U.UsersFileError, match=says):
        U.add_user(tmp_path / "users", name, "correct horse")
    if ":" not in name:  # --auth splits at the first colon: "model:gpt:pw" is user "model"
        with pytest.raises(U.UsersFileError):
            U.Logins.load(None, [f"{name}:correct horse"])


# ---- logins fail closed ------------------------------------------------------------------

def test_a_users_file_with_no_user_refuses_to_start(tmp_path):
    """Before: `app --users EMPTY` served the studio with no login at all, silently."""
    path = tmp_path / "users"
    path.write_text("# only a comment\n\n", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(U.UsersFileError, match=rf"{path}: the users file has no user.*palimpsest users add NAME"):
        U.Logins.load(path)


def test_app_with_an_empty_users_file_exits_with_one_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "users"
    path.write_text("", encoding="utf-8")
    path.chmod(0o600)
    res = subprocess.run([sys.executable, "-m", "studio.cli", "app", "--users", str(path), "--port", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "has no user" in res.stderr and str(path) in res.stderr, res.stderr


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_users_file_others_may_write_is_refused(tmp_path, mode):
    """Before: a 0666 users file started without a word."""
    path = tmp_path / "users"
    U.add_user(path, "ada", "correct horse")
    path.chmod(mode)
    with pytest.raises(U.UsersFileError, match=rf"may be written by .*chmod 600 {path}"):
        U.Logins.load(path)


def test_a_users_file_anyone_may_read_is_served_with_a_warning(tmp_path, caplog):
    path = tmp_path / "users"
    U.add_user(path, "ada", "correct horse")
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        assert U.Logins.load(path).names() == ["ada"]
    assert "may be read by every user" in caplog.text and "chmod 600" in caplog.text


def test_throttle_delays_grow_and_expire():
    now = [0.0]
    t = U.Throttle(clock=lambda: now[0])
    for _ in range(U.NAME_FREE - 1):
        t.failed("ada", "1.2.3.4")
    assert t.wait_left("ada", "1.2.3.4") == 0  # the first few go undelayed
    waits = []
    for _ in range(4):
        t.failed("ada", "1.2.3.4")
        waits.append(t.wait_left("ada", "5.6.7.8"))  # the name is held from any address
    assert waits == [1, 2, 4, 8]
    assert t.wait_left("bo", "5.6.7.8") == 0  # another name from another address: free
    now[0] += 8
    assert t.wait_left("ada", "5.6.7.8") == 0
    t.succeeded("ada")
    t.failed("ada", "5.6.7.8")
    assert t.wait_left("ada", "9.9.9.9") == 0  # a right password reset the name's count


@pytest.mark.ui
def test_fifty_wrong_logins_are_throttled_while_another_user_logs_in(tmp_path, caplog, monkeypatch):
    """Before: 140 wrong passwords at ~6/s, none throttled or logged; the right one worked at once after.
    The studio's own /login route, driven over HTTP: the attacker from 127.0.0.1, the others from 127.0.0.2."""
    import httpx
    from ui_helpers import free_port, studio_app

    from core.store import open_store
    from studio.app import serve

    path = tmp_path / "users"
    U.add_user(path, "ada", "correct horse")
    U.add_user(path, "bo", "battery staple")
    logins = U.Logins.load(path)
    checked = []
    real = U._derive
    monkeypatch.setattr(U, "_derive", lambda *a, **k: checked.append(a[0]) or real(*a, **k))
    store = open_store(tmp_path / "studio.db")
    app = studio_app("scripted:", store)
    _, url, _ = serve(app, port=free_port(), auth=logins, prevent_thread_lock=True, quiet=True)
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    try:
        with caplog.at_level("WARNING", logger="studio.users"), \
                httpx.Client(base_url=url.rstrip("/"), timeout=30) as attacker, \
                httpx.Client(base_url=url.rstrip("/"), timeout=30, transport=elsewhere) as other:
            codes = [attacker.post("/login", data={"username": "ada", "password": f"guess {i}"}).status_code
                     for i in range(50)]
            assert set(codes) == {400}
            assert len([p for p in checked if p.startswith("guess")]) < 12  # most were refused unchecked
            # the right password of the name under attack waits out its delay, from anywhere
            assert other.post("/login", data={"username": "ada", "password": "correct horse"}).status_code == 400
            # another person logs in at once, and uses the studio
            assert other.post("/login", data={"username": "bo", "password": "battery staple"}).status_code == 200
            assert other.get("/gradio_api/info").status_code == 200
        assert caplog.text.count("failed login for 'ada' from 127.0.0.1") >= U.NAME_FREE
        assert "login for 'ada' from 127.0.0.1 refused without a check" in caplog.text
    finally:
        app.close()
        store.close()


# ---- names that look alike are one person ------------------------------------------------

def test_names_are_nfc_and_look_alikes_and_unknown_are_refused(tmp_path):
    """Before: `e\\u0301ve` and `\\u00e9ve` were two people who look identical, Cyrillic look-alikes passed,
    and "unknown" collided with the label of rows without an annotator."""
    from core.annotators import BadAnnotator, clean

    path = tmp_path / "users"
    assert U.add_user(path, "e\u0301ve", "correct horse")
    assert not U.add_user(path, "\u00e9ve", "battery staple")  # the same person: a new password, not a new user
    assert list(U.read_users(path)) == ["\u00e9ve"]
    assert U.Logins.load(path)("e\u0301ve", "battery staple")  # typed either way, she logs in
    for name, says in [("\u0430da", "mixes scripts"), ("\u0430\u0441\u0435", "look like the Latin name 'ace'"),
                       ("\uff41\uff44\uff41", "compatibility characters"), ("Unknown", "kept for rows saved without"),
                       ("unknown", "kept for rows saved without")]:
        with pytest.raises(BadAnnotator, match=says):
            clean(name)
        with pytest.raises(U.UsersFileError, match=says):
            U.add_user(path, name, "correct horse")
    for fine in ("Иван", "山田はな", "José García", "O'Brien-Smith 2", "Σωκράτης"):
        assert clean(fine) == fine
