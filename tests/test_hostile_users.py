"""Hostile input to the studio's logins (studio.users): a users file whose scrypt costs would eat memory
or time, an oversize or multi-line password, a login name no annotator may have; each is refused
naming the place, and a login check never hashes an oversize password."""
from __future__ import annotations

import pytest

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
