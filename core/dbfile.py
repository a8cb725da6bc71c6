"""The SQLite file under the store (core/store.py): opening it safely and writing to it from
several processes. Knows: WAL and the busy timeout ($PALIMPSEST_BUSY_TIMEOUT seconds, default 10);
a write transaction that takes the write lock up front, polling every few milliseconds so that it
gets in between a long import's batches, and past the timeout raises `StoreBusy` with one line
saying that another process is writing and what to do; the migrations of core.schema, applied in
order and recorded in `_migrations`. Does not know the tables' meaning: that is the store's.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator


def _import_sqlite_utils():
    """sqlite_utils, without the pandas and numpy it imports when they are installed (about 3 s of a
    read-only command's start on a busy machine; they only map pandas/numpy column types, which the
    store never inserts). Modules another import has loaded already are used as they are."""
    blocked = [m for m in ("pandas", "numpy") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  (import of it raises ImportError)
    try:
        import sqlite_utils
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

from core.schema import MIGRATIONS  # noqa: E402

BUSY_TIMEOUT_MS = 10_000  # the default wait for another process's write lock; $PALIMPSEST_BUSY_TIMEOUT (s) overrides
BUSY_ENV = "PALIMPSEST_BUSY_TIMEOUT"
LOCK_POLL_S = 0.005  # how often a waiting writer retries the write lock (SQLite's own wait backs off to 100 ms)


class StoreError(Exception):
    """The store cannot do what was asked; the message names the table, the id and the fix."""


class StoreBusy(StoreError, sqlite3.OperationalError):
    """Another process held the store's write lock for longer than the busy timeout."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def busy_timeout_s() -> float:
    """How long a writer waits for another process's write lock: $PALIMPSEST_BUSY_TIMEOUT seconds,
    else BUSY_TIMEOUT_MS. StoreError naming the variable when it is not a positive number."""
    raw = os.environ.get(BUSY_ENV)
    if not raw:
        return BUSY_TIMEOUT_MS / 1000
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StoreError(f"{BUSY_ENV}={raw!r}: give the wait for a busy store in seconds, above 0, e.g. 30")
    return value


def is_locked(error: BaseException) -> bool:
    """True for SQLite's "database is locked" / "busy": another connection holds the write lock."""
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


def busy_message(path: Any, waited_s: float) -> str:
    """The one line for a store whose write lock stayed taken: who, what to do, which setting."""
    return (f"the store {path or '(in memory)'} is busy: another process (an import, a run or the studio) has "
            f"been writing to it for over {waited_s:g} s; retry when it has finished, or wait longer with "
            f"{BUSY_ENV}=SECONDS (now {busy_timeout_s():g})")


def begin_immediate(db: sqlite_utils.Database, path: Any = None) -> None:
    """BEGIN IMMEDIATE, retried every LOCK_POLL_S until the busy timeout: SQLite's own busy wait
    sleeps up to 100 ms between tries and so almost never lands in the short gap between two
    batches of a long import. StoreBusy (naming the path and the setting) when the wait runs out."""
    timeout = busy_timeout_s()
    deadline = time.monotonic() + timeout
    conn = db.conn
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if not is_locked(e):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusy(busy_message(path, timeout)) from e
            time.sleep(LOCK_POLL_S)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


@contextlib.contextmanager
def immediate(db: sqlite_utils.Database, path: Any = None) -> Iterator[None]:
    """A write transaction that takes the write lock up front (no deadlock on upgrade); inside
    an open transaction it simply joins it."""
    if db.conn.in_transaction:
        yield
        return
    begin_immediate(db, path)
    try:
        yield
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    try:
        db.conn.execute("COMMIT")
    except sqlite3.OperationalError as e:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        if is_locked(e):
            raise StoreBusy(busy_message(path, busy_timeout_s())) from e
        raise


def migrate(db: sqlite_utils.Database, migrations: list[Callable] = MIGRATIONS) -> list[str]:
    """Apply the migrations not yet recorded in `_migrations`, in order; returns their names.

    Reads first: when every migration is recorded (the usual open), no write lock is taken, so a
    read-only command opens a store that another process is writing to."""
    if db["_migrations"].exists():
        done = {r["name"] for r in db.query("SELECT name FROM _migrations")}
        if all(fn.__name__ in done for fn in migrations):
            return []
    db["_migrations"].create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
    applied = []
    for fn in migrations:
        with immediate(db):  # re-checked under the write lock: two processes may open at once
            if db["_migrations"].count_where("name = ?", [fn.__name__]):
                continue
            fn(db)
            db["_migrations"].insert({"name": fn.__name__, "applied_at": now()})
        applied.append(fn.__name__)
    return applied


def schema_version(db: sqlite_utils.Database) -> int:
    return db["_migrations"].count if db["_migrations"].exists() else 0


def prepare(db: sqlite_utils.Database, memory: bool) -> None:
    """WAL and migrations, retried while another connection opens the same new file: switching the
    journal mode and the first schema writes can fail at once with "locked" (no busy wait), which
    made two processes starting on one fresh store fail about half the time."""
    deadline = time.monotonic() + busy_timeout_s()
    while True:
        try:
            if not memory:
                db.enable_wal()
                db.execute("PRAGMA synchronous = NORMAL")
            migrate(db)
            return
        except sqlite3.OperationalError as e:
            if not is_locked(e) or time.monotonic() > deadline:
                raise
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            time.sleep(0.05)
