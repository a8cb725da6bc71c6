"""The studio's users file (studio.users) and `palimpsest users add|remove|list`: the line format, salted
scrypt hashes checked in constant time, bad lines refused naming file:line and the fix, the file written
whole with mode 0600, `app --users` / repeated `--auth` refusing bad input before anything loads, and
`by_person` running a Gradio handler as the logged-in person."""
from __future__ import annotations

import io
import os
import stat

import pytest

from core.data import curation
from core.store import open_store
from studio import users as U
from studio.cli.main import main


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    """Small scrypt costs: the format and checks are the same, the tests stay fast."""
    monkeypatch.setattr(U, "COST_N", 2 ** 4)


def cli(capsys, monkeypatch, *args, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- hashing and the file ---------------------------------------------------------------------

def test_hashes_are_salted_per_user_and_check_only_the_right_password(tmp_path):
    a, b = U.hash_password("correct horse"), U.hash_password("correct horse")
    assert a.salt != b.salt and a.key != b.key  # the same password, two different lines
    assert U.verify("correct horse", a) and not U.verify("correct hors", a) and not U.verify("", a)
    assert U.parse_hash(a.line(), "x") == a  # the line reads back exactly
    path = tmp_path / "users"
    assert U.add_user(path, "ada", "correct horse") is True
    assert U.add_user(path, "bo", "battery staple") is True
    text = path.read_text()
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert [l.split("\t")[0] for l in lines] == ["ada", "bo"]
    assert all(l.split("\t")[1].startswith("scrypt$16$8$1$") for l in lines)
    assert "correct horse" not in text and "battery" not in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["users"]  # no temporary file left behind
    logins = U.Logins.load(path)
    assert logins("ada", "correct horse") and logins("bo", "battery staple")
    assert not logins("ada", "battery staple") and not logins("nobody", "correct horse") and not logins("", "")
    assert logins(" ada ", "correct horse")  # Gradio strips the typed name; so do we
    # a new password for an existing name replaces the old one
    assert U.add_user(path, "ada", "another password") is False
    logins = U.Logins.load(path)
    assert logins("ada", "another password") and not logins("ada", "correct horse")


def test_old_lines_keep_their_own_costs(tmp_path, monkeypatch):
    path = tmp_path / "users"
    U.add_user(path, "ada", "correct horse")  # N=16 (the fixture)
    monkeypatch.setattr(U, "COST_N", 2 ** 5)
    U.add_user(path, "bo", "battery staple")  # N=32
    costs = {l.split("\t")[0]: l.split("$")[1] for l in path.read_text().splitlines() if "\t" in l}
    assert costs == {"ada": "16", "bo": "32"}
    logins = U.Logins.load(path)
    assert logins("ada", "correct horse") and logins("bo", "battery staple")


@pytest.mark.parametrize("line, says", [
    ("ada scrypt$16$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44, "expected NAME<TAB>HASH"),
    ("model:judge\t{h}", "kept for model judges"),
    ("\t{h}", "give a name"),
    ("ada\tsha1$abc", "is not scrypt$N$R$P$SALT$HASH"),
    ("ada\tscrypt$16$8$1$not base64!$xx", "cannot be read"),
    ("ada\tscrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44, "out of range"),
    ("ada\tscrypt$16$8$1$AAAA$" + "A" * 44, "too short"),
    ("ada\t{h}\t{h}", "is unknown; the only role is"),  # a third field is a role: only "lead"
    ("ada\t{h}\tlead\tx", "NAME<TAB>HASH or"),
])
def test_a_bad_line_is_refused_naming_file_line_and_fix(tmp_path, line, says):
    good = U.hash_password("correct horse").line()
    path = tmp_path / "users"
    path.write_text(f"# a comment\n\nbo\t{good}\n{line.format(h=good)}\n", encoding="utf-8")
    with pytest.raises(U.UsersFileError) as exc:
        U.read_users(path)
    msg = str(exc.value)
    assert f"{path}:4" in msg and says in msg, msg
    assert "\n" not in msg


def test_a_name_given_twice_and_missing_files_are_refused(tmp_path):
    good = U.hash_password("correct horse").line()
    path = tmp_path / "users"
    path.write_text(f"ada\t{good}\nada\t{good}\n", encoding="utf-8")
    with pytest.raises(U.UsersFileError, match=r"users:2: 'ada' is given twice"):
        U.read_users(path)
    with pytest.raises(U.UsersFileError, match="no such users file; make it with `palimpsest users add"):
        U.read_users(tmp_path / "absent")
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(U.UsersFileError, match="not UTF-8"):
        U.read_users(path)


def test_auth_pairs_join_the_file_and_a_name_in_both_is_refused(tmp_path):
    path = tmp_path / "users"
    U.add_user(path, "ada", "correct horse")
    logins = U.Logins.load(path, ["bo:pass:with:colons"])
    assert logins.names() == ["ada", "bo"] and logins("bo", "pass:with:colons")
    with pytest.raises(U.UsersFileError, match="given twice"):
        U.Logins.load(path, ["ada:x"])
    for bad in ("nocolon", "user:", ":pass"):
        with pytest.raises(U.UsersFileError, match="--auth must look like USER:PASSWORD"):
            U.Logins.load(None, [bad])
    with pytest.raises(U.UsersFileError, match="--auth user: .* is not a name"):
        U.Logins.load(None, ["a\x07b:secret"])


# ---- the CLI ------------------------------------------------------------------------------------

def test_users_cli_add_list_remove_with_password_stdin(tmp_path, capsys, monkeypatch):
    f = str(tmp_path / "conf" / "users")  # the folder is made
    code, _, err = cli(capsys, monkeypatch, "users", "add", "ada", "--file", f, "--password-stdin",
                       stdin="correct horse\n")
    assert code == 0 and "added ada" in err
    assert cli(capsys, monkeypatch, "users", "add", "bo", "--file", f, "--password-stdin", stdin="battery staple")[0] == 0
    code, out, _ = cli(capsys, monkeypatch, "users", "list", "--file", f)
    assert code == 0 and out.split() == ["ada", "bo"]
    assert U.Logins.load(f)("ada", "correct horse")  # the newline ends the password; it is not part of it
    code, _, err = cli(capsys, monkeypatch, "users", "add", "cy", "--file", f, "--password-stdin", stdin="short\n")
    assert code == 2 and "too short" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, monkeypatch, "users", "add", "model:x", "--file", f, "--password-stdin",
                       stdin="correct horse\n")
    assert code == 2 and "kept for model judges" in err
    code, _, err = cli(capsys, monkeypatch, "users", "remove", "ada", "--file", f)
    assert code == 0 and "removed ada" in err
    code, _, err = cli(capsys, monkeypatch, "users", "remove", "ada", "--file", f)
    assert code == 2 and "no user 'ada'" in err
    assert cli(capsys, monkeypatch, "users", "list", "--file", f)[1].split() == ["bo"]
    # no password on the command line: there is no flag for one
    code, _, err = cli(capsys, monkeypatch, "users", "add", "dee", "--password", "x", "--file", f)
    assert code == 2 and "unrecognized arguments" in err
    # no terminal and no --password-stdin: told how, nothing written
    code, _, err = cli(capsys, monkeypatch, "users", "add", "dee", "--file", f, stdin="")
    assert code == 2 and "--password-stdin" in err


def test_app_refuses_a_bad_users_file_before_loading_anything(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "users"
    bad.write_text("ada no tab here\n", encoding="utf-8")
    code, _, err = cli(capsys, monkeypatch, "app", "--users", str(bad), "--db", str(tmp_path / "s.db"))
    assert code == 2 and f"{bad}:1: expected NAME<TAB>HASH" in err
    monkeypatch.setenv("PALIMPSEST_USERS", str(bad))
    code, _, err = cli(capsys, monkeypatch, "app", "--db", str(tmp_path / "s.db"))
    assert code == 2 and f"{bad}:1" in err
    assert not (tmp_path / "s.db").exists()  # refused before the store was opened


# ---- running a handler as the logged-in person ---------------------------------------------------

class FakeRequest:
    def __init__(self, username):
        self.username = username


def test_by_person_records_the_request_user_and_keeps_the_handler_signature(tmp_path):
    import inspect

    from gradio.context import LocalContext
    from library_fixtures import REER_ITEMS, add_reer

    from core.annotators import os_user

    store = open_store(tmp_path / "s.db")
    q, thinking, answer = REER_ITEMS[0]
    tid = add_reer(store, q, thinking, answer)

    def rate(traj_id, value, *filters_):
        curation.rate(store, traj_id, value)

    handler = U.by_person(rate)
    assert list(inspect.signature(handler).parameters) == ["traj_id", "value", "filters_"]  # Gradio sees fn's inputs
    for who, value in (("ada", 4), ("bo", 5)):  # Gradio sets the request it serves around each event
        token = LocalContext.request.set(FakeRequest(who))
        try:
            handler(tid, value, "any", "all")
        finally:
            LocalContext.request.reset(token)
    handler(tid, 1)  # outside a request: the OS user
    acts = curation.history(store, tid)
    assert [(a["value"], a["annotator"]) for a in acts[-3:]] == [(4, "ada"), (5, "bo"), (1, os_user())]
    store.close()


def test_by_person_holds_the_person_through_a_streaming_handler():
    import inspect

    from gradio.context import LocalContext

    from core.annotators import current

    def stream(n):
        for _ in range(n):
            yield current()

    handler = U.by_person(stream)
    assert inspect.isgeneratorfunction(handler)  # Gradio streams it, as it would the bare function
    token = LocalContext.request.set(FakeRequest("cy"))
    try:
        assert list(handler(3)) == ["cy", "cy", "cy"]
    finally:
        LocalContext.request.reset(token)
