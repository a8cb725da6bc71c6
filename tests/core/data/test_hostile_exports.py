"""Hostile exports: an export never destroys data. Files a user added to an export folder are
refused by name and kept; a SIGKILL in the middle of writing 20,000 records, a full disk (simulated,
and a real small tmpfs where this process may mount one) and a read-only folder leave the earlier
export byte for byte, with a one-line error, and the next export works; a symlink as the folder is
refused; the Export page shows the error as a message. Stores are seeded directly
(tests/library_fixtures.py); no model runs."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from library_fixtures import add_r2, filled_store
from needs import ROOT, can_mount_tmpfs

from core import export as ex
from core import export_swap
from core.export import MANIFEST, ExportError, ExportFailed, export
from core.store import open_store


@pytest.fixture
def filled(tmp_path):
    s = open_store(tmp_path / "lib.db")
    filled_store(s)  # 3 REER (2 accepted) + 1 accepted R2
    yield s
    s.close()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative name -> sha256)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".palimpsest-" in p.name)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- files a user added ------------------------------------------------------------------------

def test_files_a_user_added_are_refused_by_name_and_never_deleted(filled, tmp_path):
    out = tmp_path / "ex"
    export(filled, "chat", out, status="any")
    (out / "train.sh").write_text("accelerate launch train.py\n")
    (out / "notes").mkdir()
    (out / "notes" / "plan.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(ExportError) as err:
        export(filled, "chat", out)
    msg = str(err.value)
    assert "train.sh" in msg and "notes" in msg and "never deleted" in msg and "\n" not in msg
    assert snapshot(out) == before  # the earlier export and the user's files, untouched


def test_an_export_replaces_its_own_folder_whole_and_leaves_nothing_beside_it(filled, tmp_path):
    out = tmp_path / "ex"
    first = export(filled, "sharegpt", out, status="any")
    assert first.count == 4 and json.loads((out / MANIFEST).read_text())["files"] == sorted(
        ["README.md", "data.json", "dataset_info.json", MANIFEST])
    again = export(filled, "chat", out)  # another format: the sharegpt files go, the chat ones come
    assert again.count == 3 and sorted(os.listdir(out)) == sorted(["README.md", "train.jsonl", MANIFEST])
    assert len((out / "train.jsonl").read_text().splitlines()) == 3
    assert leftovers(tmp_path) == []


def test_an_export_made_before_manifests_is_still_recognised_by_its_card(filled, tmp_path):
    out = tmp_path / "ex"
    export(filled, "alpaca", out, status="any")
    (out / MANIFEST).unlink()  # as an export of an earlier version left it: data, dataset_info, card
    assert export(filled, "chat", out).count == 3
    (out / MANIFEST).unlink()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="keep.txt"):
        export(filled, "chat", out)
    assert (out / "keep.txt").read_text() == "x"


def test_a_symlink_as_the_folder_is_refused_in_one_line(filled, tmp_path):
    real = tmp_path / "real"
    export(filled, "chat", real)
    before = snapshot(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ExportError) as err:
        export(filled, "chat", link, status="any")
    assert "symbolic link" in str(err.value) and "\n" not in str(err.value)
    assert snapshot(real) == before and link.is_symlink()


def test_without_an_atomic_exchange_the_rename_aside_path_keeps_the_same_promise(filled, tmp_path, monkeypatch):
    monkeypatch.setattr(export_swap, "exchange", lambda a, b: False)
    out = tmp_path / "ex"
    export(filled, "chat", out, status="any")
    assert export(filled, "chat", out).count == 3
    assert len((out / "train.jsonl").read_text().splitlines()) == 3 and leftovers(tmp_path) == []


def test_an_export_killed_between_its_two_renames_is_put_back(filled, tmp_path):
    out = tmp_path / "ex"
    export(filled, "chat", out, status="any")
    before = snapshot(out)
    aside = tmp_path / f".ex{ex.ASIDE}{dead_pid()}-abcd1234"  # the old folder set aside; the new never moved in
    os.rename(out, aside)
    (tmp_path / f".ex{ex.PARTIAL}{dead_pid()}-x").mkdir()  # and a half-written temporary folder
    with pytest.raises(ExportError, match="nothing to export"):
        export(filled, "chat", out, status="rejected")
    assert snapshot(out) == before and leftovers(tmp_path) == []


# ---- kill mid-write ---------------------------------------------------------------------------

KILLED = textwrap.dedent("""
    import sys, time
    from core import export as ex
    from core.store import open_store

    class Slow(list):  # the real writer runs; it is held still after 788 records
        def __iter__(self):
            for i, row in enumerate(list.__iter__(self)):
                if i == 788:
                    print("mid", flush=True)
                    time.sleep(120)
                yield row

    real = ex._rows
    ex._rows = lambda *args: (lambda r: (Slow(r[0]), r[1]))(real(*args))
    store = open_store(sys.argv[1])
    ex.export(store, "dpo", sys.argv[2], status="any")
""")


def r2_with_rounds(store, n_traj: int, rounds: int) -> None:
    """R2 trajectories of `rounds` improving rounds each: n_traj * rounds dpo records."""
    for t in range(n_traj):
        tid = add_r2(store, f"Write about harbour {t}.")
        row = store.get_trajectory(tid)
        d = row["details"]
        d["rounds"] = [{"round": i + 1, "draft": f"draft {t}.{i}", "revision": f"revision {t}.{i} is better",
                        "reward": {"improvement": 1.0, "total": 1.0}} for i in range(rounds)]
        store.db["trajectories"].update(tid, {"details": json.dumps(d)})


def test_a_kill_in_the_middle_of_writing_20000_records_keeps_the_earlier_export(tmp_path):
    db, out = tmp_path / "big.db", tmp_path / "ex"
    with open_store(db) as s:
        filled_store(s)
        export(s, "dpo", out, status="any")  # the earlier, good export: 1 pair
        before = snapshot(out)
        r2_with_rounds(s, 20, 1000)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(db), str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mid", proc.stderr.read()
        partial = [p for p in tmp_path.iterdir() if ex.PARTIAL in p.name]
        assert len(partial) == 1 and (partial[0] / "train.jsonl").exists()  # it was writing, beside the folder
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert snapshot(out) == before  # the earlier export, byte for byte
    with open_store(db) as s:
        report = export(s, "dpo", out, status="any")  # not refused
    assert report.count == 20001 and len((out / "train.jsonl").read_text().splitlines()) == 20001
    assert leftovers(tmp_path) == []  # the killed export's temporary folder is gone


# ---- disk full, read-only ---------------------------------------------------------------------

class FullDisk:
    """A file that takes `room` bytes and then fails as a full disk does (ENOSPC)."""

    def __init__(self, path, room: int):
        self.f, self.room = open(path, "w", encoding="utf-8"), room

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self.f.write(text[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)
        self.room -= len(text)
        return self.f.write(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_gives_one_line_and_keeps_the_earlier_export(filled, tmp_path, monkeypatch):
    out = tmp_path / "ex"
    export(filled, "chat", out)
    before = snapshot(out)
    monkeypatch.setattr(ex, "open", lambda path, *a, **k: FullDisk(path, 300), raising=False)
    with pytest.raises(ExportFailed) as err:
        export(filled, "chat", out, status="any")
    msg = str(err.value)
    assert "disk is full" in msg and "earlier export there is unchanged" in msg and "\n" not in msg
    assert snapshot(out) == before and leftovers(tmp_path) == []
    monkeypatch.undo()
    assert export(filled, "chat", out, status="any").count == 4  # space again: the next export works


def test_the_cli_and_the_export_page_say_a_full_disk_in_one_line(filled, tmp_path, monkeypatch, capsys):
    from studio.cli.main import main
    from studio.pages.export import run_export

    monkeypatch.setattr(ex, "open", lambda path, *a, **k: FullDisk(path, 10), raising=False)
    code = main(["export", "--format", "chat", "--out", str(tmp_path / "cli"), "--db", str(filled.path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "disk is full" in err and "Traceback" not in err
    report, paths, message = run_export(filled, tmp_path / "studio", "chat", "accepted", "all")
    assert report is None and paths == [] and "disk is full" in message and "nothing was written" in message
    assert not (tmp_path / "cli").exists() and list((tmp_path / "studio").iterdir()) == []


TMPFS = textwrap.dedent("""
    set -u
    mount -t tmpfs -o size=256k tmpfs "$MNT"
    cli() { "$PY" -m studio.cli export --format chat --db "$DB" --out "$MNT/ex" "$@"; echo "rc=$?"; }
    cli --status accepted > /dev/null
    sha256sum "$MNT/ex/train.jsonl"
    cli --status any 2>&1
    sha256sum "$MNT/ex/train.jsonl"
    ls -a "$MNT" | tr '\\n' ' '; echo
    mount -o remount,ro "$MNT"
    cli --status accepted 2>&1
    sha256sum "$MNT/ex/train.jsonl"
""")


@pytest.mark.skipif(bool(can_mount_tmpfs()), reason=can_mount_tmpfs() or "tmpfs available")
def test_a_real_full_tmpfs_and_a_read_only_one(tmp_path):
    """A real 256 KiB tmpfs: the first export fits; one that does not fit fails in one line with
    exit 2 and leaves the first byte for byte; remounted read-only, the same."""
    db = tmp_path / "lib.db"
    with open_store(db) as s:
        filled_store(s)
        big = "A long, long answer that fills the disk. " * 2000  # ~80 KB per record
        for i in range(6):
            tid = add_r2(s, f"Write a very long piece number {i}.")
            s.db["trajectories"].update(tid, {"answer": big + str(i)})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "MNT": str(mnt), "DB": str(db), "PY": sys.executable}
    res = subprocess.run(["unshare", "-rm", "sh", "-c", TMPFS], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == 8, res.stdout + res.stderr
    good = lines[0].split()[0]
    assert "disk is full" in lines[1] and "earlier export there is unchanged" in lines[1] and lines[2] == "rc=2"
    assert lines[3].split()[0] == good  # the first export survived the full disk
    assert lines[4].split() == [".", "..", "ex"]  # no temporary folder left behind
    assert "read-only" in lines[5] and lines[6] == "rc=2" and lines[7].split()[0] == good


def test_a_second_export_into_a_folder_being_written_is_refused(filled, tmp_path, monkeypatch):
    """Before: two exports in different formats to one folder at once both exited 0 and were both
    recorded in the store, but only one was on disk."""
    import threading

    out = tmp_path / "one-folder"
    entered, go_on = threading.Event(), threading.Event()
    real_write = ex._write

    def slow_write(fmt, tmp, rows):  # the first export holds the folder while the second tries
        entered.set()
        go_on.wait(30)
        return real_write(fmt, tmp, rows)
    monkeypatch.setattr(ex, "_write", slow_write)
    done: list = []
    first = threading.Thread(target=lambda: done.append(export(filled, "chat", out)))
    first.start()
    assert entered.wait(30)
    monkeypatch.setattr(ex, "_write", real_write)
    with pytest.raises(ExportError, match=rf"--out {out}: another export is writing there now \(PID {os.getpid()}\)"):
        export(filled, "sharegpt", out)
    go_on.set()
    first.join(30)
    assert done and done[0].format == "chat"
    assert [e["format"] for e in ex.list_exports(filled)] == ["chat"]  # the refused one is not recorded
    assert json.loads((out / MANIFEST).read_text())["format"] == "chat"
    assert export(filled, "sharegpt", out).format == "sharegpt"  # once the first is done, the folder is free
