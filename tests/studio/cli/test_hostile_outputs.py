"""Hostile --out paths: every command checks its output before any work. `score --out X --input X`
(also through a symlink or a hard link), a --out that is the store, a folder given for a file, a
folder that does not exist or cannot be written (a real read-only tmpfs where this process may
mount one), a full disk (/dev/full, and a simulated one) are one line with exit status 2, and the
file they name is unchanged byte for byte. Outputs go through OUT.partial: a kill leaves OUT as it
was and keeps every finished record. `train --out` and `export --out` may not be, or (when the
folder is replaced) hold, their data or the store. The `scripted:` model scores and searches;
nothing loads weights."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from library_fixtures import filled_store
from needs import ROOT, can_mount_tmpfs

from core import outputs
from core.store import open_store
from studio.cli.main import main

ITEMS = [{"id": f"i{n}", "query": f"Write line {n} about rain.", "reference": f"Rain falls on roof {n}."}
         for n in range(8)]


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def one_line(err: str) -> bool:
    return err.count("\n") == 1 and "Traceback" not in err


def one_error(err: str) -> bool:
    """Progress lines aside ("loading model ..."), one error line and no traceback."""
    return sum(line.startswith("palimpsest ") for line in err.splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def src(tmp_path) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ITEMS), encoding="utf-8")
    return p


# ---- the input itself -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["same path", "relative path", "symlink", "hard link"])
def test_score_refuses_its_own_input_as_out_before_touching_it(src, tmp_path, capsys, monkeypatch, how):
    before = src.read_bytes()
    out = {"same path": src, "relative path": Path("in.jsonl"), "symlink": tmp_path / "link.jsonl",
           "hard link": tmp_path / "hard.jsonl"}[how]
    monkeypatch.chdir(tmp_path)
    if how == "symlink":
        out.symlink_to(src)
    elif how == "hard link":
        os.link(src, out)
    code, err = cli(capsys, "score", "--input", src, "--out", out, "--model", "scripted:")
    assert code == 2 and one_line(err) and "is the same file as --input" in err
    assert "loading model" not in err  # refused before any work
    assert src.read_bytes() == before


def test_reer_and_r2_refuse_the_input_or_the_store_as_out(src, tmp_path, capsys):
    db = tmp_path / "p.db"
    open_store(db).close()
    db_before, src_before = db.read_bytes(), src.read_bytes()
    code, err = cli(capsys, "reer", "run", "--input", src, "--out", db, "--db", db, "--model", "scripted:")
    assert code == 2 and one_line(err) and "is the same file as --db" in err
    code, err = cli(capsys, "r2", "run", "--input", src, "--out", src, "--db", db, "--writer", "scripted:")
    assert code == 2 and one_line(err) and "is the same file as --input" in err
    assert db.read_bytes() == db_before and src.read_bytes() == src_before


# ---- folders, missing folders, read-only, full disk -------------------------------------------

def test_a_folder_or_a_missing_folder_as_out_is_one_line(src, tmp_path, capsys):
    db = tmp_path / "p.db"
    for cmd in (["score", "--model", "scripted:"], ["reer", "run", "--db", db, "--model", "scripted:"],
                ["r2", "run", "--db", db, "--writer", "scripted:", "--judge", "scripted:"]):
        code, err = cli(capsys, *cmd, "--input", src, "--out", tmp_path)
        assert code == 2 and one_line(err) and "is a folder; give a file path" in err, (cmd, err)
        code, err = cli(capsys, *cmd, "--input", src, "--out", tmp_path / "nowhere" / "o.jsonl")
        assert code == 2 and one_line(err) and "does not exist; create it first" in err, (cmd, err)
    assert not db.exists()  # refused before the store was opened


def test_a_full_disk_is_one_line_and_keeps_the_earlier_output(src, tmp_path, capsys, monkeypatch):
    code, err = cli(capsys, "score", "--input", src, "--out", "/dev/full", "--model", "scripted:")
    assert code == 2 and one_error(err) and "the disk is full" in err  # a real ENOSPC, through the kernel
    out = tmp_path / "o.jsonl"
    out.write_text("the earlier scores\n")
    real_open = open

    def full(path, *a, **k):  # the partial file takes 100 bytes, then the disk is full
        f = real_open(path, *a, **k)
        written = [0]

        class Full:
            def write(self, text):
                written[0] += len(text)
                if written[0] > 100:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                return f.write(text)

            def __getattr__(self, name):
                return getattr(f, name)
        return Full()

    monkeypatch.setattr(outputs, "open", full, raising=False)
    code, err = cli(capsys, "score", "--input", src, "--out", out, "--model", "scripted:")
    assert code == 2 and one_error(err) and "the disk is full" in err and f"{out} is unchanged" in err
    assert out.read_text() == "the earlier scores\n" and not (tmp_path / "o.jsonl.partial").exists()


@pytest.mark.skipif(bool(can_mount_tmpfs()), reason=can_mount_tmpfs() or "tmpfs available")
def test_a_read_only_folder_is_one_line_for_score_reer_and_train(src, tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    script = ('mount -t tmpfs -o ro,size=64k tmpfs "$MNT"; py() { "$PY" -m studio.cli "$@" 2>&1; echo "rc=$?"; }; '
              'py score --input "$SRC" --out "$MNT/o.jsonl" --model scripted:; '
              'py reer run --input "$SRC" --out "$MNT/o.jsonl" --db "$DB" --model scripted:; '
              'py train --data "$SRC" --out "$MNT/model" --db "$DB"')
    env = {**os.environ, "MNT": str(mnt), "SRC": str(src), "DB": str(tmp_path / "p.db"), "PY": sys.executable}
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    lines = res.stdout.splitlines()
    assert lines[1::2] == ["rc=2"] * 3, res.stdout + res.stderr
    assert all("read-only" in line and "Traceback" not in line for line in lines[0::2]), res.stdout


def test_a_folder_without_write_permission_is_one_line(src, tmp_path, capsys):
    """Root writes into any folder through its CAP_DAC_OVERRIDE, so as root the command runs in a
    subprocess without that capability (util-linux's setpriv); as anyone else, in this process."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    args = ["score", "--input", src, "--out", locked / "o.jsonl", "--model", "scripted:"]
    if os.geteuid() != 0:
        code, err = cli(capsys, *args)
    else:
        caps = "-dac_override,-dac_read_search"
        res = subprocess.run(["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", sys.executable, "-m",
                              "studio.cli", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        code, err = res.returncode, res.stderr
    assert code == 2 and one_line(err) and "cannot write in" in err, err
    assert list(locked.iterdir()) == []


# ---- written through OUT.partial -------------------------------------------------------------

def test_score_replaces_out_only_when_it_is_done(src, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    out.write_text("the earlier scores\n")
    code, _ = cli(capsys, "score", "--input", src, "--out", out, "--model", "scripted:")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0 and [r["id"] for r in lines] == [r["id"] for r in ITEMS]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "o.jsonl"]  # no partial file left


def test_a_killed_reer_run_leaves_out_as_it_was_and_keeps_finished_records(src, tmp_path):
    """SIGKILL after the first record: OUT is still the earlier file, OUT.partial holds whole
    records; the rerun writes every record (the killed one's from the store)."""
    src.write_text("".join(json.dumps(r) + "\n" for r in ITEMS[:3]), encoding="utf-8")
    out, db = tmp_path / "o.jsonl", tmp_path / "p.db"
    out.write_text("the earlier records\n")
    args = [sys.executable, "-m", "studio.cli", "reer", "run", "--input", str(src), "--out", str(out), "--db", str(db),
            "--candidates", "2", "--max-steps", "1"]
    partial = tmp_path / "o.jsonl.partial"
    proc = subprocess.Popen([*args, "--model", "scripted:delay=1"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no record finished in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.read_text() == "the earlier records\n"
    kept = [json.loads(line) for line in partial.read_text().splitlines()]
    assert 1 <= len(kept) < 3 and kept[0]["id"] == "i0"
    res = subprocess.run([*args, "--model", "scripted:delay=1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["i0", "i1", "i2"]
    assert f"{len(kept)} already finished" in res.stderr and not partial.exists()


# ---- folder outputs: train, export ------------------------------------------------------------

def test_train_out_may_not_be_or_hold_its_data_or_the_store(tmp_path, capsys):
    data = tmp_path / "model" / "train.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps({"query": "q", "thinking": "t", "reference": "r"}) + "\n")
    before = data.read_bytes()
    code, err = cli(capsys, "train", "--data", data, "--out", data, "--db", tmp_path / "p.db")
    assert code == 2 and one_line(err) and "is the same file as --data" in err
    code, err = cli(capsys, "train", "--data", data, "--out", data.parent, "--overwrite", "--db", tmp_path / "p.db")
    assert code == 2 and one_line(err) and "replacing the folder would delete" in err
    assert data.read_bytes() == before and not (tmp_path / "p.db").exists()


def test_export_out_may_not_be_the_store_or_hold_it(tmp_path, capsys):
    db = tmp_path / "lib" / "lib.db"
    db.parent.mkdir()
    with open_store(db) as s:
        filled_store(s)
    before = db.read_bytes()
    code, err = cli(capsys, "export", "--format", "chat", "--out", db, "--db", db)
    assert code == 2 and one_line(err) and "is the same file as --db" in err
    code, err = cli(capsys, "export", "--format", "chat", "--out", db.parent, "--db", db)
    assert code == 2 and one_line(err) and "replacing the folder would delete" in err
    assert db.read_bytes() == before
