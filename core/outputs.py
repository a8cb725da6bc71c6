"""Output paths the commands write: checked before any work, and written so a kill loses nothing finished.

Knows: what makes an output path unusable (the input file or the store itself, through any
symlink or hard link; a folder where a file is wanted or the reverse; a folder that cannot be
written; a folder to be replaced that holds an input), how to say an OSError in one line with its
fix (disk full, read-only, permission, ...), and the one way a file output is written
(`OutputFile`): into OUT.partial beside OUT, flushed per record, then renamed over OUT when the
command ends (also on Ctrl-C or a user error), so OUT is never half-written; after a kill, OUT is as
it was and OUT.partial holds the records finished. A pipe or device (`/dev/stdout`) is written
directly. Also: fsync of a file tree and its folder, for writers that rename into place
(core.export), and `exclusive(out)`: one writer of an output at a time (a lock file beside it,
held with flock; a second writer is refused naming the holder's PID, never left to replace the
first's work unseen).

Does not know: what is written (score lines, REER/R2 records, exports, trained models) nor any
command's flags beyond the names it is given for its messages.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Mapping

PARTIAL = ".partial"  # OUT + this: where a file output is written until it is renamed over OUT


class OutputError(Exception):
    """An output that cannot be written as asked: one line naming the flag, the path and the fix."""


class OutputBusy(OutputError):
    """Another process (or thread) is writing the same output now."""


class exclusive:
    """`with exclusive(out, what="--out"):` hold OUT's lock file (`.OUT.lock` beside it, flock'd, and
    removed at the end while still held) for the block; OutputBusy naming `what`, the path and the
    holder's PID when another writer holds it. A lock taken on a file its holder had just removed
    is not the lock: the inode is checked after locking. Without fcntl (not POSIX) it does nothing."""

    def __init__(self, out: str | Path, what: str = "--out"):
        self.out, self.what = Path(out), what
        self.path = self.out.parent / f".{self.out.name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> "exclusive":
        try:
            import fcntl
        except ImportError:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current != os.fstat(fd).st_ino:  # its holder removed it as we opened it: someone else may hold a new one
                raise BlockingIOError
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OutputBusy(f"{self.what} {self.out}: another export is writing there now (PID {holder}); wait for "
                             "it to finish, or write to another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # removed while held, then released (a waiter checks the inode)
            except FileNotFoundError:
                pass
            os.close(self.fd)  # closing releases the flock
            self.fd = None


_REASONS = {
    errno.ENOSPC: "the disk is full (no space left on device); free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.EACCES: "permission denied; use a folder you can write",
    errno.EPERM: "not permitted; use a folder you can write",
    errno.EISDIR: "is a folder, not a file; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EEXIST: "exists already",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EBUSY: "is in use (a mount point?); use another path",
}


def oserror_line(exc: OSError) -> str:
    """An OSError as one line: the path it names and the reason, with the fix when there is one."""
    reason = _REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).strip().splitlines()[0]
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {reason}" if where else reason


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same inode (hard links, symlinks), or the same
    resolved path when one of them does not exist yet."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: str | Path, folder: Path) -> bool:
    """Whether `path` lies inside `folder` (resolved: symlinks followed)."""
    p, f = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return f == p or f in p.parents


def _probe(folder: Path, flag: str, out: str | Path) -> None:
    """Create and remove a file in `folder`: the one sure test that it can be written (root ignores
    permission bits; a read-only mount refuses everyone)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".palimpsest-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise OutputError(f"{flag} {out}: cannot write in {folder} ({oserror_line(exc).split(': ', 1)[-1]})") from None


def _refuse_inputs(real: Path, out: str | Path, inputs: Mapping[str, str | Path | None], flag: str) -> None:
    for name, src in inputs.items():
        if src and same_file(real, src):
            raise OutputError(f"{flag} {out}: is the same file as {name} {src}; writing it would destroy it "
                              "before it is read; give another path")


def check_file_out(out: str | Path, inputs: Mapping[str, str | Path | None] = {}, flag: str = "--out") -> Path:
    """Check, before any work, a file output: not one of `inputs` ({flag: path}: the input file,
    the store), not a folder, in a folder that exists and can be written, not a read-only file.
    Returns the path to write: a symlink resolved to its target (the link stays a link).
    Raises OutputError naming `flag` and the fix."""
    if not str(out).strip():
        raise OutputError(f"{flag}: empty; give a file path")
    real = Path(os.path.realpath(Path(out).expanduser()))
    _refuse_inputs(real, out, inputs, flag)
    if real.is_dir():
        raise OutputError(f"{flag} {out}: is a folder; give a file path, such as {Path(out) / 'out.jsonl'}")
    if real.exists() and not real.is_file():
        return real  # a pipe or device: written directly (OutputFile)
    if not real.parent.is_dir():
        raise OutputError(f"{flag} {out}: the folder {real.parent} does not exist; create it first")
    if real.exists() and not os.access(real, os.W_OK):
        raise OutputError(f"{flag} {out}: the file is read-only; make it writable or give another path")
    _probe(real.parent, flag, out)
    return real


def check_folder_out(out: str | Path, inputs: Mapping[str, str | Path | None] = {}, flag: str = "--out",
                     replaces: bool = False) -> Path:
    """Check, before any work, a folder output: not an existing file (nor one of `inputs`), and
    writable where it will be made; with `replaces` (the folder's contents are replaced), no input
    may lie inside it. Returns the path (user's ~ expanded). Raises OutputError."""
    if not str(out).strip():
        raise OutputError(f"{flag}: empty; give a folder path")
    p = Path(out).expanduser()
    _refuse_inputs(p, out, inputs, flag)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{flag} {out}: is a file; give a folder path (it is created)")
    if replaces:
        for name, src in inputs.items():
            if src and Path(src).exists() and _inside(src, p):
                raise OutputError(f"{flag} {out}: holds {name} {src}, which replacing the folder would delete; "
                                  "move it out first or give another folder")
    here = p if p.exists() and not replaces else p.parent  # replaced: made beside, renamed in (or removed, remade)
    while not here.exists():  # the nearest folder that exists: where the first one is made
        if here.parent == here:
            break
        here = here.parent
    if not here.is_dir():
        raise OutputError(f"{flag} {out}: {here} is a file, not a folder; give another path")
    _probe(here, flag, out)
    return p


def fsync_path(path: Path) -> None:
    """fsync one file or folder (folders: so the names in it are on disk too)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root`, and `root` itself."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


class OutputFile:
    """A file output written so a kill loses nothing finished: lines go to OUT.partial (flushed
    each write); close() fsyncs it and renames it over OUT. A write the system refuses (disk
    full, ...) raises OutputError; OUT then stays as it was and the partial file is removed. A
    pipe or device is written directly."""

    def __init__(self, path: str | Path, flag: str = "--out"):
        self.path = Path(path)
        self.flag = flag
        mode = os.stat(self.path).st_mode if self.path.exists() else 0
        self.direct = bool(mode) and not stat.S_ISREG(mode)
        self.partial = self.path if self.direct else self.path.with_name(self.path.name + PARTIAL)
        self.broken: OSError | None = None
        try:
            self.file = open(self.partial, "w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{flag} {path}: {oserror_line(exc)}") from None

    def write(self, text: str) -> None:
        """Write and flush: once it returns, the text is in the file (on disk after close)."""
        try:
            self.file.write(text)
            self.file.flush()
        except OSError as exc:
            self.broken = exc
            kept = "" if self.direct else f"; {self.path} is unchanged"
            raise OutputError(f"{self.flag} {self.path}: {oserror_line(exc)}{kept}") from None

    def flush(self) -> None:
        if self.broken is None:
            self.write("")

    def close(self) -> None:
        """Put the output in place (nothing to do for a pipe); after a failed write, drop it."""
        if self.file.closed:
            return
        if self.direct:
            try:
                self.file.close()
            except OSError as exc:  # the buffer a failed write left: already reported, or reported now
                if self.broken is None:
                    self.broken = exc
                    raise OutputError(f"{self.flag} {self.path}: {oserror_line(exc)}") from None
            return
        failed: OSError | None = None
        try:
            if self.broken is None:
                self.file.flush()
                os.fsync(self.file.fileno())
        except OSError as exc:
            failed = exc
        try:
            self.file.close()
        except OSError as exc:
            failed = failed or exc
        if self.broken is not None or failed is not None:
            self.partial.unlink(missing_ok=True)
            if failed is not None and self.broken is None:
                self.broken = failed
                raise OutputError(f"{self.flag} {self.path}: {oserror_line(failed)}; {self.path} is unchanged")
            return
        try:
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise OutputError(f"{self.flag} {self.path}: {oserror_line(exc)}; the finished records are in "
                              f"{self.partial}") from None
        try:
            fsync_path(self.path.parent)
        except OSError:
            pass  # the rename is done; a folder that cannot be fsynced (some network mounts) keeps it anyway

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
