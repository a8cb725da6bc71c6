"""Reading input files within limits, a bounded piece at a time: the byte level under
core.data.records.

Knows: the input limits (`Limits`, from $PALIMPSEST_MAX_RECORD_MB and $PALIMPSEST_MAX_FILE_MB;
a file over the file limit is refused before it is opened, a record over the record limit is a
Problem and only a bounded piece of it is held), strict UTF-8 (a bad byte is an InputError
naming the line and byte offset), and the raw rows of JSONL / JSON (arrays and concatenated
objects, streamed) / CSV / Parquet / datasets folders as (line, value or Problem). A JSON value
nested deeper than MAX_DEPTH (or too deep for Python's reader at all) is a Problem in its place,
and the records after it are read as usual.
Does not know: what a record means (core.data.records turns rows into Records), the store.
"""
from __future__ import annotations

import codecs
import csv
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

MB = 1 << 20
RECORD_LIMIT_ENV = "PALIMPSEST_MAX_RECORD_MB"
FILE_LIMIT_ENV = "PALIMPSEST_MAX_FILE_MB"
CHUNK = 1 << 20  # bytes read at a time where a record may be longer than a line
MAX_DEPTH = 64  # lists/objects nested deeper than this are refused (a record of ours nests 5 deep; Python's
# JSON reader raises RecursionError near 1000, and deep values break every recursive step after it)


class InputError(Exception):
    """An input file cannot be read at all (missing, not a regular file, too big, unknown type, not UTF-8)."""


@dataclass(frozen=True)
class Limits:
    """How much one input may hold. Defaults: 8 MB a record, 2048 MB a file (docs/formats.md)."""
    record_bytes: int = 8 * MB  # one record: a JSONL line, a CSV row, a JSON value, a .txt file, a Parquet row
    file_bytes: int = 2048 * MB  # one input file (in a folder: each file)

    @classmethod
    def from_env(cls) -> "Limits":
        """The limits $PALIMPSEST_MAX_RECORD_MB and $PALIMPSEST_MAX_FILE_MB set (MB = 2**20 bytes; a
        fraction is allowed), else the defaults; InputError names a variable that is not a number."""
        from core.models.env import number_from_env

        rec = number_from_env(RECORD_LIMIT_ENV, cls.record_bytes / MB, float, unit="MB", example="64",
                              error=InputError)
        fil = number_from_env(FILE_LIMIT_ENV, cls.file_bytes / MB, float, unit="MB", example="4096",
                              error=InputError)
        return cls(max(1, round(rec * MB)), max(1, round(fil * MB)))


def _mb(n: int) -> str:
    return f"{n / MB:.3g} MB"


def record_limit_text(lim: Limits, size: str) -> str:
    """The end of a too-big-record message: the size seen, the limit, the setting and the fix."""
    return (f"is {size}, over the limit of {_mb(lim.record_bytes)} a record ({RECORD_LIMIT_ENV}); "
            f"split or shorten it, or raise {RECORD_LIMIT_ENV}")


@dataclass(frozen=True)
class Problem:
    """One rejected record (or a whole unreadable file, line 0), and how to fix it."""
    path: str  # the file
    line: int  # 1-based line (row for CSV/Parquet/datasets), 0 for the whole file
    field: str  # the field at fault ("" for the whole line)
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" + (f" field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"



# ---- files: what may be opened, and how much of it is read ----------------------------------

def check_file(path: Path, lim: Limits) -> None:
    """InputError unless `path` is a regular file within the file limit (checked before opening:
    a FIFO would block, a huge file would be read for nothing)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file or folder; check the path") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); check the path and its permissions") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file"
        raise InputError(f"{path}: not a regular file but {kind}; save the data to a file and give its path")
    if st.st_size > lim.file_bytes:
        raise InputError(f"{path}: the file is {_mb(st.st_size)}, over the limit of {_mb(lim.file_bytes)} a file "
                         f"({FILE_LIMIT_ENV}); split it, or raise {FILE_LIMIT_ENV}")


def open_bounded(path: Path, lim: Limits) -> BinaryIO:
    """The file opened for binary reading, after `check_file`; OSError becomes InputError."""
    check_file(path, lim)
    try:
        return path.open("rb")
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); check its permissions") from None


def _not_utf8(path: Path, line: int, e: UnicodeDecodeError, offset: int) -> InputError:
    return InputError(f"{path}: line {line}: not UTF-8 text ({e.reason} at byte {offset}); save it as UTF-8")


@dataclass(frozen=True)
class _TooLong:
    """A line over the record limit, skipped unread: its size and its first bytes."""
    size: int  # bytes, newline included
    head: bytes  # its first bytes (to tell what it was meant to be)


def _lines(path: Path, lim: Limits) -> Iterator[tuple[int, str | _TooLong]]:
    """(1-based line, text) of each line of a file, decoded as strict UTF-8 (a BOM is dropped); a
    line over the record limit is a _TooLong, skipped a chunk at a time and never held whole.
    Bad UTF-8 raises InputError naming the line and the byte offset in the file."""
    with open_bounded(path, lim) as f:
        offset = n = 0
        while True:
            raw = f.readline(lim.record_bytes + 1)
            if not raw:
                return
            n += 1
            if len(raw) > lim.record_bytes and not raw.endswith(b"\n"):
                size, head = len(raw), raw[:64]
                del raw
                while True:  # the rest of the long line, a chunk at a time
                    more = f.readline(CHUNK)
                    size += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                offset += size
                yield n, _TooLong(size, head)
                continue
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, n, e, offset + e.start) from None
            offset += len(raw)
            yield n, text


class _Text:
    """A UTF-8 file as a sliding text buffer for the JSON document reader: the text from `pos`
    is what is left to read; `fill` reads more and drops what was read. Never holds more than
    the value being read plus a chunk."""

    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path
        self.buf, self.pos = "", 0
        self.eof = False
        self._dec = codecs.getincrementaldecoder("utf-8")("strict")
        self._read = self._newlines = 0  # bytes read, and the newlines among them (for error reports)
        self._mark, self._mark_line = 0, 1  # buf[_mark] is on line _mark_line

    def line_at(self, pos: int) -> int:
        """The 1-based line of buf[pos] (pos at or after the last position asked about)."""
        self._mark_line += self.buf.count("\n", self._mark, pos)
        self._mark = pos
        return self._mark_line

    def fill(self, size: int = 0) -> None:
        """Read about `size` (default CHUNK) more bytes (eof when there are none), dropping the text before pos."""
        if self.eof:
            return
        raw = self.f.read(size or CHUNK)
        pending = len(self._dec.getstate()[0])
        try:
            text = self._dec.decode(raw, final=not raw)
        except UnicodeDecodeError as e:
            at = e.start - pending  # e.start counts the bytes held from the last chunk too
            line = self._newlines + raw[:max(at, 0)].count(b"\n") + 1
            raise _not_utf8(self.path, line, e, self._read + at) from None
        if self._read == 0 and text.startswith("\ufeff"):
            text = text[1:]
        self._read += len(raw)
        self._newlines += raw.count(b"\n")
        self.eof = not raw
        self.line_at(self.pos)
        self.buf, self._mark, self.pos = self.buf[self.pos:] + text, 0, 0

    def skip(self, chars: str) -> bool:
        """Move pos past any of `chars`; False when the file ends first."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in chars:
                self.pos += 1
            if self.pos < len(self.buf):
                return True
            if self.eof:
                return False
            self.fill()


_DECODER = json.JSONDecoder()


class _BadValue(Exception):
    """The value at the reader's position is not valid JSON or is over the record limit (a Problem)."""


def nesting(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep lists and dicts nest in `value`, counted without recursion, stopping past `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _too_deep(path: Path, line: int, whole: str = "line") -> Problem:
    return Problem(str(path), line, "", f"the JSON value nests lists/objects more than {MAX_DEPTH} deep; "
                                        f"flatten it or remove the {whole}")


def _shaped(path: Path, line: int, value: Any) -> Any:
    """`value`, or the Problem of one nested too deep."""
    return _too_deep(path, line) if nesting(value) > MAX_DEPTH else value


def _maybe_cut(exc: json.JSONDecodeError, text: _Text) -> bool:
    """Whether a decode error may only mean the value goes on past the buffer (read more, retry)."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text.buf) - 8


def _next_value(text: _Text, lim: Limits, path: Path) -> tuple[int, Any]:
    """(line, value) of the JSON value at text.pos, reading more of the file as it needs (at most
    the record limit); a value over the limit that could be read to its end is a Problem in its
    place. _BadValue carries the Problem when the value is not valid JSON, or is too big to find
    its end: the rest of the file cannot be trusted."""
    line = text.line_at(text.pos)
    while True:
        try:
            value, end = _DECODER.raw_decode(text.buf, text.pos)
            if text.eof or end < len(text.buf) - 8:  # (a value near the buffer's end may be a cut number)
                size, text.pos = end - text.pos, end
                if size > lim.record_bytes:
                    return line, Problem(str(path), line, "", "the JSON value starting here "
                                         + record_limit_text(lim, f"{size:,} characters"))
                return line, _shaped(path, line, value)
        except RecursionError:  # too deep to find its end: nothing after it can be trusted
            raise _BadValue(Problem(str(path), line, "", f"the JSON value starting here nests too deep for the "
                                    f"reader (more than {MAX_DEPTH} levels); the rest of the file is skipped")) from None
        except json.JSONDecodeError as exc:
            if text.eof or not _maybe_cut(exc, text):
                where = text.line_at(max(exc.pos, text.pos))
                raise _BadValue(Problem(str(path), where, "", f"not valid JSON ({exc.msg}); the rest of the "
                                        f"file from line {line} is skipped")) from None
        held = len(text.buf) - text.pos
        if held > lim.record_bytes:
            raise _BadValue(Problem(str(path), line, "", "the JSON value starting here "
                                    + record_limit_text(lim, f"over {held:,} characters") + "; the rest of the file "
                                    "is skipped"))
        text.fill(max(CHUNK, held))  # doubles what is held: decoding a long value stays linear


def _json_documents(path: Path, lim: Limits) -> Iterator[tuple[int, Any]]:
    """(line, value) of a JSON array, concatenated (pretty-printed) JSON values, or both in turn,
    streamed: each value of an array is read on its own, so no more than one record is held."""
    with open_bounded(path, lim) as f:
        text = _Text(f, path)
        text.fill()
        opened = 0  # the line of the array being read (0: not inside an array)
        while True:
            if not text.skip(" \t\r\n,"):
                if opened:
                    yield opened, Problem(str(path), opened, "", "a JSON array that is never closed; add the final ]")
                return
            ch = text.buf[text.pos]
            if ch == "[" and not opened:
                opened = text.line_at(text.pos)
                text.pos += 1
                continue
            if ch == "]" and opened:
                opened = 0
                text.pos += 1
                continue
            try:
                yield _next_value(text, lim, path)
            except _BadValue as bad:
                yield bad.args[0].line, bad.args[0]
                return


def _is_object(line: str) -> bool:
    """Whether one line holds a whole JSON object (JSONL) rather than part of a pretty-printed one."""
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False
    except RecursionError:  # nested too deep to read: a line of its own all the same
        return line.lstrip().startswith("{")


def _is_jsonl(path: Path, lim: Limits) -> bool:
    """Whether a JSON file is JSON Lines: it does not open with "[" and one of its first five
    non-blank lines is a whole object (a line too long to read counts when it opens with "{")."""
    seen = 0
    for _, line in _lines(path, lim):
        if isinstance(line, _TooLong):
            head = line.head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
            if seen == 0 and head.startswith("["):
                return False
            if head.startswith("{"):
                return True
        elif line.strip():
            if seen == 0 and line.lstrip().startswith("["):
                return False
            if _is_object(line):
                return True
        else:
            continue
        seen += 1
        if seen == 5:
            return False
    return False


def json_values(path: Path, lim: Limits) -> Iterator[tuple[int, Any]]:
    """(line, value or Problem) of a JSONL file, a JSON array, or concatenated (pretty-printed) JSON objects."""
    if not _is_jsonl(path, lim):
        yield from _json_documents(path, lim)
        return
    for n, raw in _lines(path, lim):
        if isinstance(raw, _TooLong):
            yield n, Problem(str(path), n, "", "the line " + record_limit_text(lim, f"{raw.size:,} bytes"))
        elif raw.strip():
            try:
                value = json.loads(raw)
            except RecursionError:
                yield n, _too_deep(path, n)
                continue
            except json.JSONDecodeError as exc:
                yield n, Problem(str(path), n, "", f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                                   "fix or remove the line")
                continue
            yield n, _shaped(path, n, value)


class _RowTooBig(Exception):
    """A CSV row (or one of its lines) over the record limit."""


def csv_rows(path: Path, lim: Limits, keep_empty: tuple[str, ...] = ()) -> Iterator[tuple[int, Any]]:
    """(line where the row starts, row or Problem) of a CSV/TSV file; empty cells are absent (but
    for query and reference columns, so an empty one is reported as empty, not missing). A row
    over the record limit, or a line the csv module cannot parse, ends the file with a Problem."""
    held = [0]  # characters of the row being read

    def lines() -> Iterator[str]:
        for n, text in _lines(path, lim):
            if isinstance(text, _TooLong):
                raise _RowTooBig(f"line {n} " + record_limit_text(lim, f"{text.size:,} bytes"))
            held[0] += len(text)
            if held[0] > lim.record_bytes:
                raise _RowTooBig("the row " + record_limit_text(lim, f"over {held[0]:,} characters"))
            yield text

    csv.field_size_limit(max(csv.field_size_limit(), lim.record_bytes + 1))  # the row limit is the bound
    reader = csv.DictReader(lines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    start = 2
    try:
        for row in reader:
            if None in row:
                yield start, Problem(str(path), start, "", f"{len(row[None])} more value(s) than the header has "
                                                           "columns; fix the row")
            else:
                yield start, {k: v for k, v in row.items() if v != "" or k in keep_empty}
            start, held[0] = reader.line_num + 1, 0
    except _RowTooBig as e:
        yield start, Problem(str(path), start, "", f"{e}; the rest of the file is skipped")
    except csv.Error as e:
        yield start, Problem(str(path), start, "", f"not valid CSV ({e}); fix the file (the rest of it is skipped)")


def _size(value: Any) -> int:
    """Characters of the text in a decoded row (strings, and those inside lists and dicts)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + _size(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_size(v) for v in value)
    return 8


def _bounded(path: Path, n: int, row: Any, lim: Limits) -> Any:
    """The row, or the Problem when its text is over the record limit."""
    size = _size(row)
    if size > lim.record_bytes:
        return Problem(str(path), n, "", "the row " + record_limit_text(lim, f"{size:,} characters"))
    return row


def parquet_rows(path: Path, lim: Limits) -> Iterator[tuple[int, Any]]:
    """(row, value or Problem) of a Parquet file, read a few rows at a time."""
    import pyarrow.parquet as pq

    check_file(path, lim)
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=64)
        n = 0
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield n, _bounded(path, n, row, lim)
    except OSError as e:
        if isinstance(e, PermissionError):
            raise InputError(f"{path}: cannot read it ({e.strerror}); check its permissions") from None
        raise InputError(f"{path}: not a readable Parquet file ({e}); check it was written completely") from e
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputError(f"{path}: not a readable Parquet file ({e}); check it was written completely") from e


def hf_rows(path: Path, lim: Limits, folder: Path | None = None) -> Iterator[tuple[int, Any]]:
    """(row, value or Problem) of a datasets folder (`folder`: the save_to_disk folder found inside `path`)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(folder or path))
    except Exception as e:
        raise InputError(f"{path}: not a datasets folder made by save_to_disk ({e})") from e
    splits = ds.values() if isinstance(ds, DatasetDict) else [ds]
    n = 0
    for split in splits:
        assert isinstance(split, Dataset)
        for row in split:
            n += 1
            yield n, _bounded(path, n, row, lim)
