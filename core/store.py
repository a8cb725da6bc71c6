"""The SQLite store (through sqlite-utils): the single source of truth for prompts, runs, their
events and the trajectories they produce.

Knows: the tables' meaning (the file, its locking and the migrations of core.schema, applied on
open, are core.dbfile's); that a prompt
is stored once per content (sha256 of its whitespace-normalised query and reference); that
every event is appended in its own committed transaction (a kill at any moment loses nothing
already appended), numbered 1, 2, 3... per run, and moves its run's status; how to rebuild
events (core.events.from_dict) for a resume or a second browser tab polling for news. JSON
columns (rubric, settings, payload, filters, tags) are encoded and decoded here.
The tables of annotators and judging queues (migrations m008-m010) are declared in core.schema
with the others (their JSON columns are decoded here too); core.judging reads and writes them.

Does not know: how runs are executed, scored or filtered (core.reer.search, core.r2.loop, core.quality),
nor file formats (core.data.imports). Files use WAL (synchronous=NORMAL: a killed process loses nothing
committed; a power cut may lose the last moments), so other processes read while one writes;
one Store may be shared between threads (a lock serialises its connection). A writer waits for
another's write lock up to the busy timeout ($PALIMPSEST_BUSY_TIMEOUT seconds, default 10),
polling every few milliseconds so that it gets in between a long import's batches; past it the
write raises `StoreBusy`, whose message says that another process is writing and to retry.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any, Iterator

from core.dbfile import (  # the file, its locking and migrations; StoreError, now, migrate: the store's API
    StoreBusy,
    StoreError,
    busy_message,
    busy_timeout_s,
    immediate,
    is_locked,
    migrate,
    now,
    prepare,
    schema_version,
    sqlite_utils,
)
from core.events import EVENT_TYPES, Event, from_dict
from core.schema import JUDGING_JSON_COLUMNS as JUDGING_JSON
from core.schema import MIGRATIONS  # noqa: F401  (the one list, core.schema)

RUN_KINDS = ("reer", "r2", "import")  # import: a finished trajectory read from a file (core.data.imports)
RUN_STATUSES = ("running", "paused", "finished", "stopped", "failed")
TRAJECTORY_STATUSES = ("pending", "accepted", "rejected")
JSON_COLUMNS = {"prompts": ("rubric",), "runs": ("settings",), "trajectories": ("filters", "tags", "details"),
                "exports": ("skipped", "stats", "settings"), "train_runs": ("config",), **JUDGING_JSON}
FIXES = {"prompts": "add it with add_prompt (or `palimpsest import`)", "exports": "see `palimpsest export`",
         "runs": "create it with create_run", "trajectories": "save one with save_trajectory",
         "train_runs": "start one with `palimpsest train` (core.train.trainer.train_job)"}


class NotFound(StoreError, LookupError):
    """No row has the id asked for."""


class BadValue(StoreError, ValueError):
    """A value the schema does not allow (unknown kind or status, wrong type, empty text)."""


def content_hash(query: str, reference: str) -> str:
    """sha256 of the query and reference, NFC-normalised with whitespace runs collapsed."""
    norm = lambda s: " ".join(unicodedata.normalize("NFC", s).split())  # noqa: E731
    return hashlib.sha256(f"{norm(query)}\x1f{norm(reference)}".encode()).hexdigest()


def settings_key(settings: dict) -> str:
    """A short stable key of a run's settings, to find runs made with the same ones."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


_settings_key = settings_key  # Store.finished_run_for's parameter shadows the name


def open_store(path: str | Path | None = None) -> "Store":
    """Open (creating dirs, file and schema as needed) the store at `path`; None or ":memory:" for
    an in-memory one. Files get WAL, the busy timeout (busy_timeout_s) and foreign keys."""
    memory = path is None or str(path) == ":memory:"
    try:
        timeout = busy_timeout_s()
        if memory:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
        else:
            path = Path(path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        db = sqlite_utils.Database(conn)
        db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        prepare(db, memory)
    except StoreError:
        raise
    except sqlite3.OperationalError as e:
        if is_locked(e):
            raise StoreBusy(busy_message(path, timeout) + " (the store was being created or upgraded)") from e
        raise StoreError(f"cannot open the store {path}: {e}; pass --db with a writable SQLite file") from e
    except (sqlite3.Error, OSError) as e:
        raise StoreError(f"cannot open the store {path}: {e}; pass --db with a writable SQLite file") from e
    return Store(db, None if memory else path)


def _status_after(event: Event) -> tuple[str, str | None]:
    """The run's (status, finish_reason) once `event` is appended."""
    if event.kind in ("run_finished", "r2_finished"):
        return ("stopped" if event.reason == "stopped" else "finished"), event.reason
    if event.kind == "run_error" and event.fatal:
        return "failed", "error"
    return ("paused" if event.kind == "run_paused" else "running"), None


def _prompt_filter(search: str | None, category: str | None) -> tuple[str, list]:
    """The WHERE clause (with its arguments) of a prompt listing (Store.prompt_summaries)."""
    clauses, args = [], []
    if search:
        like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(" + " OR ".join(f"[{c}] LIKE ? ESCAPE '\\'" for c in ("id", "query", "reference", "category"))
                       + ")")
        args += [like] * 4
    if category is not None:
        clauses.append("coalesce(category, '') = ?")
        args.append(category)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _choice(table: str, field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadValue(f"{table}.{field}: {value!r} is not allowed; use one of {', '.join(allowed)}")


class Store:
    """A handle on one database. `db` is the sqlite_utils.Database, for ad-hoc queries."""

    def __init__(self, db: sqlite_utils.Database, path: Path | None = None):
        self.db, self.path, self._lock = db, path, threading.RLock()

    def close(self) -> None:
        """Close the connection once no store call is running: closing it under a query of another
        thread crashed the process (a segfault in sqlite3), e.g. a run thread outliving its app."""
        with self._lock:
            self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; store calls inside it join it (e.g. an import of many prompts:
        one commit instead of one each). Keep event appends out of it: they commit one by one."""
        with self._lock, immediate(self.db, self.path):
            yield

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Several reads as one: no other thread's store call runs on this connection in between
        (a module keeping its own tables, e.g. core.judging, reads `self.db` inside it)."""
        with self._lock:
            yield

    def _decode(self, table: str, row: dict) -> dict:
        for col in JSON_COLUMNS.get(table, ()):
            if isinstance(row.get(col), str):
                row[col] = json.loads(row[col])
        return row

    def _get(self, table: str, id: Any) -> dict:
        with self._lock:
            row = next(self.db.query(f"SELECT * FROM [{table}] WHERE id = ?", [id]), None)
        if row is None:
            raise NotFound(f"{table}: no row with id {id!r}; {FIXES[table]}")
        return self._decode(table, row)

    def _select(self, table: str, where: dict[str, Any], order: str, search: str | None = None,
                search_cols: tuple[str, ...] = (), limit: int | None = None) -> list[dict]:
        clauses = [f"[{k}] = ?" for k, v in where.items() if v is not None]
        args: list[Any] = [v for v in where.values() if v is not None]
        if search:
            clauses.append("(" + " OR ".join(f"[{c}] LIKE ?" for c in search_cols) + ")")
            args += [f"%{search}%"] * len(search_cols)
        sql = f"SELECT * FROM [{table}]" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += f" ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit is not None else "")
        with self._lock:
            return [self._decode(table, r) for r in self.db.query(sql, args)]

    # prompts
    def add_prompt(self, query: str, reference: str, id: str | None = None, category: str | None = None,
                   rubric: list[str] | None = None, source: str | None = None) -> tuple[str, bool]:
        """Store a prompt once per content: (its id, True) or (the existing id, False)."""
        for field, value in (("query", query), ("reference", reference)):
            if not isinstance(value, str) or not value.strip():
                raise BadValue(f"prompts.{field}: must be a non-empty string, got {value!r}")
        if rubric is not None and not (isinstance(rubric, list) and all(isinstance(c, str) for c in rubric)):
            raise BadValue(f"prompts.rubric: must be a list of criteria (strings), got {rubric!r}")
        h = content_hash(query, reference)
        with self.transaction():
            row = next(self.db.query("SELECT id FROM prompts WHERE content_hash = ?", [h]), None)
            if row:
                return row["id"], False
            id = id or h[:16]
            if self.db["prompts"].count_where("id = ?", [id]):
                raise BadValue(f"prompts: id {id!r} already holds a different query/reference; "
                               "pass another id or none")
            self.db["prompts"].insert({"id": id, "query": query, "reference": reference, "category": category,
                                       "rubric": json.dumps(rubric) if rubric is not None else None,
                                       "source": source, "content_hash": h, "created_at": now()})
        return id, True

    def get_prompt(self, id: str) -> dict:
        return self._get("prompts", id)

    def list_prompts(self, search: str | None = None, limit: int | None = None) -> list[dict]:
        """Prompts in the order they were added; `search` matches id, query, reference or category."""
        cols = ("id", "query", "reference", "category")
        return self._select("prompts", {}, "created_at, rowid", search, cols, limit)

    # prompt listings that never read the texts into Python (the studio's Library table and menus)
    def prompt_summaries(self, search: str | None = None, category: str | None = None, limit: int = 50,
                         offset: int = 0, head_chars: int = 300) -> tuple[list[dict], int]:
        """(one page of prompts in the order they were added, how many match). Each row holds `id`,
        `category`, `query_head` (the query's first `head_chars` characters) and `reference_words`
        (whitespace-separated words, counted by SQLite), never the texts. `search` is a substring
        (SQL LIKE: case-insensitive for ASCII; % and _ match themselves) of the id, query, reference or
        category; `category` "" matches prompts without one, None every prompt."""
        where, args = _prompt_filter(search, category)
        words = "reference"
        for a, b in (("char(13)", "' '"), ("char(10)", "' '"), ("char(9)", "' '")):
            words = f"replace({words}, {a}, {b})"
        words = f"trim({words})"
        for _ in range(4):  # runs of up to 16 blanks become one
            words = f"replace({words}, '  ', ' ')"
        sql = (f"WITH page AS (SELECT rowid AS rid FROM prompts{where} ORDER BY created_at, rowid LIMIT ? OFFSET ?), "
               f"shown AS (SELECT p.rowid AS rid, p.id, p.category, p.created_at, substr(p.query, 1, ?) AS query_head, "
               f"{words} AS flat FROM page JOIN prompts p ON p.rowid = page.rid) "
               "SELECT id, category, query_head, CASE WHEN flat = '' THEN 0 "
               "ELSE length(flat) - length(replace(flat, ' ', '')) + 1 END AS reference_words "
               "FROM shown ORDER BY created_at, rid")
        with self._lock:
            total = self.db.execute(f"SELECT count(*) FROM prompts{where}", args).fetchone()[0]
            rows = list(self.db.query(sql, [*args, int(limit), int(offset), int(head_chars)]))
        return rows, total

    def prompt_titles(self, head_chars: int = 200) -> list[dict]:
        """Every prompt's `id`, `category` and `query_head` (first `head_chars` characters of the
        query), in the order they were added: what a menu of prompts shows, without the texts."""
        sql = "SELECT id, category, substr(query, 1, ?) AS query_head FROM prompts ORDER BY created_at, rowid"
        with self._lock:
            return list(self.db.query(sql, [int(head_chars)]))

    def prompt_categories(self) -> list[str]:
        """The categories the prompts use, sorted (prompts without one are not counted)."""
        sql = "SELECT DISTINCT category FROM prompts WHERE coalesce(category, '') != '' ORDER BY category"
        with self._lock:
            return [r["category"] for r in self.db.query(sql)]

    # runs and their events
    def create_run(self, kind: str, prompt_id: str, settings: dict, model: str,
                   run_id: str | None = None) -> str:
        """A new run (status running) of `prompt_id`; returns its id (a uuid4 hex unless given)."""
        _choice("runs", "kind", kind, RUN_KINDS)
        if not isinstance(settings, dict):
            raise BadValue(f"runs.settings: must be a dict (dataclasses.asdict of the settings), "
                           f"got {type(settings).__name__}")
        self.get_prompt(prompt_id)
        run_id = run_id or uuid.uuid4().hex
        with self.transaction():
            if self.db["runs"].count_where("id = ?", [run_id]):
                raise BadValue(f"runs: id {run_id!r} exists already; leave run_id empty for a fresh one")
            t = now()
            self.db["runs"].insert({
                "id": run_id, "kind": kind, "prompt_id": prompt_id, "status": "running", "model": model,
                "settings": json.dumps(settings, sort_keys=True, default=str),
                "settings_key": settings_key(settings), "finish_reason": None, "created_at": t, "updated_at": t})
        return run_id

    def append_event(self, event: Event) -> int:
        """Save `event` now, in its own committed transaction; returns its seq (1, 2, ... per run)."""
        if not isinstance(event, Event) or EVENT_TYPES.get(event.kind) is not type(event):
            raise BadValue(f"events: {event!r} is not a registered event; build one from core.events")
        try:
            payload = json.dumps(event.to_dict(), ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise BadValue(f"events: {event.kind} of run {event.run_id!r} holds a value JSON cannot store: "
                           f"{e}; pass plain dicts, lists, strings and numbers") from e
        status, reason = _status_after(event)
        with self.transaction():  # plain SQL: four statements (sqlite-utils' insert re-reads the schema each time)
            if self.db.execute("SELECT 1 FROM runs WHERE id = ?", [event.run_id]).fetchone() is None:
                raise NotFound(f"runs: no row with id {event.run_id!r}; {FIXES['runs']} first")
            seq = self.last_seq(event.run_id) + 1
            t = now()
            self.db.execute("INSERT INTO events (run_id, seq, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                            [event.run_id, seq, event.kind, payload, t])
            self.db.execute("UPDATE runs SET status = ?, finish_reason = ?, updated_at = ? WHERE id = ?",
                            [status, reason, t, event.run_id])
        return seq

    def last_seq(self, run_id: str) -> int:
        """The seq of the run's last event (0 when it has none)."""
        with self._lock:
            sql = "SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?"
            return self.db.execute(sql, [run_id]).fetchone()[0]

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events with seq > after_seq, in order (after_seq = how many the caller has)."""
        self.get_run(run_id)
        with self._lock:
            sql = "SELECT seq, payload FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
            rows = list(self.db.query(sql, [run_id, after_seq]))
        out = []
        for r in rows:
            try:
                out.append(from_dict(json.loads(r["payload"])))
            except (TypeError, ValueError) as e:
                raise StoreError(f"events: run {run_id!r} seq {r['seq']} cannot be rebuilt ({e}); "
                                 "it was written by another version of Palimpsest") from e
        return out

    def get_run(self, run_id: str) -> dict:
        return self._get("runs", run_id)

    def list_runs(self, kind: str | None = None, status: str | None = None,
                  prompt_id: str | None = None) -> list[dict]:
        """Runs, newest first, optionally of one kind, status and prompt."""
        if kind is not None:
            _choice("runs", "kind", kind, RUN_KINDS)
        if status is not None:
            _choice("runs", "status", status, RUN_STATUSES)
        where = {"kind": kind, "status": status, "prompt_id": prompt_id}
        return self._select("runs", where, "created_at DESC, rowid DESC")

    def finished_run_for(self, prompt_id: str, kind: str,
                         settings_key: str | dict | None = None) -> dict | None:
        """The newest finished run of this prompt and kind (and settings, a key or a dict), if any."""
        if isinstance(settings_key, dict):
            settings_key = _settings_key(settings_key)
        where = {"prompt_id": prompt_id, "kind": kind, "status": "finished", "settings_key": settings_key}
        rows = self._select("runs", where, "created_at DESC, rowid DESC", limit=1)
        return rows[0] if rows else None

    # trajectories
    def save_trajectory(self, run_id: str, thinking: str, answer: str, initial_score: float | None = None,
                        final_score: float | None = None, initial_ppl: float | None = None,
                        final_ppl: float | None = None, filters: dict | None = None,
                        details: dict | None = None) -> int:
        """Insert or replace the run's trajectory (its review status, rating, tags and notes are kept)."""
        run = self.get_run(run_id)
        t = now()
        row = {"run_id": run_id, "prompt_id": run["prompt_id"], "kind": run["kind"], "thinking": thinking,
               "answer": answer, "initial_score": initial_score, "final_score": final_score,
               "initial_ppl": initial_ppl, "final_ppl": final_ppl,
               "filters": json.dumps(filters) if filters is not None else None,
               "details": json.dumps(details) if details is not None else None,
               "created_at": t, "updated_at": t}
        cols = ", ".join(row)
        update = ", ".join(f"{c} = excluded.{c}" for c in row if c not in ("run_id", "created_at"))
        with self.transaction():
            self.db.execute(f"INSERT INTO trajectories ({cols}) VALUES ({', '.join('?' * len(row))}) "
                            f"ON CONFLICT(run_id) DO UPDATE SET {update}", list(row.values()))
            return self.db.execute("SELECT id FROM trajectories WHERE run_id = ?", [run_id]).fetchone()[0]

    def get_trajectory(self, traj_id: int) -> dict:
        return self._get("trajectories", traj_id)

    def trajectory_for_run(self, run_id: str) -> dict | None:
        rows = self._select("trajectories", {"run_id": run_id}, "id")
        return rows[0] if rows else None

    def list_trajectories(self, status: str | None = None, kind: str | None = None,
                          prompt_id: str | None = None) -> list[dict]:
        if status is not None:
            _choice("trajectories", "status", status, TRAJECTORY_STATUSES)
        return self._select("trajectories", {"status": status, "kind": kind, "prompt_id": prompt_id}, "id")

    def run_stats(self, prompt_ids: list[str]) -> dict[str, tuple[int, float | None]]:
        """prompt id -> (its REER/R2 runs, the lowest final perplexity of their trajectories, or
        None) for the prompts that have runs (imported trajectories are not runs here)."""
        if not prompt_ids:
            return {}
        marks = ",".join("?" * len(prompt_ids))
        with self._lock:
            rows = list(self.db.query("SELECT r.prompt_id, count(*) n, min(t.final_ppl) best FROM runs r LEFT JOIN "
                                      "trajectories t ON t.run_id = r.id WHERE r.kind != 'import' AND r.prompt_id "
                                      f"IN ({marks}) GROUP BY r.prompt_id", list(prompt_ids)))
        return {r["prompt_id"]: (r["n"], r["best"]) for r in rows}

    def list_exports(self) -> list[dict]:
        """Every export recorded (core.export), newest first."""
        return self._select("exports", {}, "id DESC")

    def set_status(self, traj_id: int, status: str) -> None:
        _choice("trajectories", "status", status, TRAJECTORY_STATUSES)
        self.update_trajectory(traj_id, {"status": status})

    def annotate(self, traj_id: int, rating: int | None = None, tags: list[str] | None = None,
                 notes: str | None = None) -> None:
        """Set the given review fields of a trajectory (None leaves a field as it is)."""
        if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int)):
            raise BadValue(f"trajectories.rating: must be an integer, got {rating!r}")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(x, str) for x in tags)):
            raise BadValue(f"trajectories.tags: must be a list of strings, got {tags!r}")
        values = {"rating": rating, "tags": json.dumps(tags) if tags is not None else None, "notes": notes}
        self.update_trajectory(traj_id, {k: v for k, v in values.items() if v is not None})

    def update_trajectory(self, traj_id: int, values: dict) -> None:
        """Set these columns of a trajectory, as given (JSON columns already encoded; {} only marks
        it updated), and its updated_at; NotFound when there is none."""
        with self.transaction():
            self.get_trajectory(traj_id)
            self.db["trajectories"].update(traj_id, {**values, "updated_at": now()})


    def update_prompt(self, id: str, query: str, reference: str, category: str | None = None) -> None:
        """Change a prompt's texts and category in place (its content hash follows). Refused when
        another prompt already holds that content, or when runs were made of this one (their
        events would no longer match it: add the edit as a new prompt instead)."""
        for field, value in (("query", query), ("reference", reference)):
            if not isinstance(value, str) or not value.strip():
                raise BadValue(f"prompts.{field}: must be a non-empty string, got {value!r}")
        h = content_hash(query, reference)
        with self.transaction():
            self.get_prompt(id)
            other = next(self.db.query("SELECT id FROM prompts WHERE content_hash = ? AND id != ?", [h, id]), None)
            if other:
                raise BadValue(f"prompts: prompt {other['id']!r} already holds this query and reference")
            if self.db["runs"].count_where("prompt_id = ?", [id]):
                raise BadValue(f"prompts: {id!r} has runs; add the edited text as a new prompt instead")
            self.db["prompts"].update(id, {"query": query, "reference": reference, "category": category,
                                           "content_hash": h})

    # run lease (migration m007_run_lease): one process drives a run at a time
    def claim_run(self, run_id: str, owner: str, ttl_s: float, takeover_from: str | None = None) -> bool:
        """Take the run's lease for `ttl_s` seconds: True when it was free, expired, already ours or
        held by `takeover_from` (a holder the caller knows is dead); False when another owner holds it."""
        if not owner or not ttl_s or ttl_s <= 0:
            raise BadValue(f"runs.lease: owner must be non-empty and ttl_s positive, got {owner!r}, {ttl_s!r}")
        t = time.time()
        with self.transaction():
            self.get_run(run_id)
            cur = self.db.execute(
                "UPDATE runs SET lease_owner = ?, lease_until = ? WHERE id = ? AND (lease_owner IS NULL "
                "OR lease_until IS NULL OR lease_until < ? OR lease_owner = ? OR lease_owner = ?)",
                [owner, t + ttl_s, run_id, t, owner, takeover_from or owner])
            return cur.rowcount == 1

    def renew_run(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Extend our lease to `ttl_s` from now; False when it is no longer ours (taken over)."""
        with self.transaction():
            cur = self.db.execute("UPDATE runs SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                                  [time.time() + ttl_s, run_id, owner])
            return cur.rowcount == 1

    def release_run(self, run_id: str, owner: str) -> bool:
        """Give the lease back (only its owner can); True when we held it."""
        with self.transaction():
            cur = self.db.execute("UPDATE runs SET lease_owner = NULL, lease_until = NULL "
                                  "WHERE id = ? AND lease_owner = ?", [run_id, owner])
            return cur.rowcount == 1

    def run_lease(self, run_id: str) -> dict | None:
        """{"owner", "until" (unix time), "expired"} of the run's lease; None when nobody holds it."""
        run = self.get_run(run_id)
        if not run.get("lease_owner"):
            return None
        until = run.get("lease_until") or 0.0
        return {"owner": run["lease_owner"], "until": until, "expired": until < time.time()}


    # training runs (core.train.trainer): their own tables, migration m006_training
    def create_train_run(self, config: dict, model: str, data: str, out_dir: str, run_id: str | None = None) -> str:
        """A new training run (status running); returns its id (a uuid4 hex unless given)."""
        if not isinstance(config, dict):
            raise BadValue(f"train_runs.config: must be a dict (TrainConfig.as_dict()), got {type(config).__name__}")
        run_id = run_id or uuid.uuid4().hex
        with self.transaction():
            if self.db["train_runs"].count_where("id = ?", [run_id]):
                raise BadValue(f"train_runs: id {run_id!r} exists already; leave run_id empty for a fresh one")
            t = now()
            self.db["train_runs"].insert({"id": run_id, "status": "running", "model": model, "data": data,
                                          "out_dir": out_dir, "config": json.dumps(config, sort_keys=True, default=str),
                                          "finish_reason": None, "created_at": t, "updated_at": t})
        return run_id

    def append_train_event(self, event: Event) -> int:
        """Save a training event now, in its own committed transaction; returns its seq (1, 2, ... per run).
        train_finished moves the run to finished (or stopped), a fatal run_error to failed, others to running."""
        if not isinstance(event, Event) or EVENT_TYPES.get(event.kind) is not type(event):
            raise BadValue(f"train_events: {event!r} is not a registered event; build one from core.events")
        payload = json.dumps(event.to_dict(), ensure_ascii=False)
        if event.kind == "train_finished":
            status, reason = ("stopped" if event.reason == "stopped" else "finished"), event.reason
        elif event.kind == "run_error" and event.fatal:
            status, reason = "failed", "error"
        else:
            status, reason = "running", None
        with self.transaction():
            if not self.db["train_runs"].count_where("id = ?", [event.run_id]):
                raise NotFound(f"train_runs: no row with id {event.run_id!r}; {FIXES['train_runs']}")
            seq = self.db.execute("SELECT coalesce(max(seq), 0) FROM train_events WHERE run_id = ?",
                                  [event.run_id]).fetchone()[0] + 1
            t = now()
            self.db["train_events"].insert({"run_id": event.run_id, "seq": seq, "kind": event.kind,
                                            "step": getattr(event, "step", None), "payload": payload,
                                            "created_at": t})
            self.db.execute("UPDATE train_runs SET status = ?, finish_reason = ?, updated_at = ? WHERE id = ?",
                            [status, reason, t, event.run_id])
        return seq

    def train_events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The training run's events with seq > after_seq, in order."""
        self.get_train_run(run_id)
        with self._lock:
            rows = list(self.db.query("SELECT payload FROM train_events WHERE run_id = ? AND seq > ? ORDER BY seq",
                                      [run_id, after_seq]))
        return [from_dict(json.loads(r["payload"])) for r in rows]

    def train_loss(self, run_id: str) -> list[tuple[int, float]]:
        """(step, loss) of every progress event of a training run, in order: what a live plot draws."""
        with self._lock:
            rows = self.db.execute("SELECT step, json_extract(payload, '$.loss') FROM train_events "
                                   "WHERE run_id = ? AND kind = 'train_progress' ORDER BY seq", [run_id]).fetchall()
        return [(int(s), float(v)) for s, v in rows]

    def get_train_run(self, run_id: str) -> dict:
        return self._get("train_runs", run_id)

    def list_train_runs(self, status: str | None = None, out_dir: str | None = None) -> list[dict]:
        """Training runs, newest first, optionally of one status and output folder."""
        if status is not None:
            _choice("train_runs", "status", status, RUN_STATUSES)
        return self._select("train_runs", {"status": status, "out_dir": out_dir}, "created_at DESC, rowid DESC")


class LeaseHeld(StoreError):
    """Another owner holds a live lease on the run."""
