"""An export folder put in place whole: the finished folder swapped for an earlier one in one step
where the system allows (Linux renameat2 RENAME_EXCHANGE), else by renaming the earlier one aside;
and the leftovers of killed exports tidied (their temporary folders removed, an earlier export set
aside and never replaced put back).

Knows: the names of temporary and set-aside folders (PARTIAL, ASIDE: .NAME + marker + PID-).
Does not know: what an export writes (core.export).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import uuid
from pathlib import Path

from core.outputs import fsync_path

PARTIAL = ".palimpsest-partial-"  # .NAME + this + PID-: the temporary folder an export is written into
ASIDE = ".palimpsest-old-"  # .NAME + this + PID-: an earlier export set aside while the new one moves in


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def tidy(out: Path) -> None:
    """Leftovers of killed exports to `out`: temporary folders of dead processes are removed; an
    earlier export set aside and not yet replaced (killed between the two renames) is put back."""
    if not out.parent.is_dir():
        return
    for kind in (ASIDE, PARTIAL):
        prefix = f".{out.name}{kind}"
        for entry in sorted(out.parent.iterdir()):
            pid = entry.name[len(prefix):].split("-")[0]
            if not entry.name.startswith(prefix) or not pid.isdigit() or alive(int(pid)) or entry.is_symlink():
                continue
            if kind == ASIDE and not out.exists():
                os.rename(entry, out)
            else:
                shutil.rmtree(entry, ignore_errors=True)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system
    or the file system has no such call."""
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except (OSError, TypeError):  # no C library to ask (Windows)
        return False
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out` (same parent); an earlier folder there is removed
    only once the new one is in place."""
    if not out.exists():
        os.rename(new, out)
    elif exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # now the earlier export
    else:
        aside = out.parent / f".{out.name}{ASIDE}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(out, aside)
        try:
            os.rename(new, out)
        except BaseException:
            os.rename(aside, out)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    try:
        fsync_path(out.parent)
    except OSError:
        pass  # the swap is done; a folder that cannot be fsynced (some network mounts) keeps it anyway
