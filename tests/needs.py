"""What tests need from the machine, found in one place: the HelloBench data and the Chromium
browser. Each is looked for where the Makefile and the docs say; a test without it skips saying
how to get it, and under CI=true (tests/conftest.py) that skip is a failure.

- HelloBench: core.bench.hellobench_root, i.e. $PALIMPSEST_HELLOBENCH, else
  shared/data/hellobench beside the repo (never copied into it).
- Chromium: $PALIMPSEST_CHROMIUM, else /usr/bin/chromium (Debian's); `make browser` installs and
  checks the same path and fails when it cannot.
- The repository's root, ROOT: tests sit in folders by subject at different depths, so none
  computes it from its own path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # this file is tests/needs.py
CHROMIUM = os.environ.get("PALIMPSEST_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_MISSING = (f"no Chromium at {CHROMIUM}: `make browser` installs Debian's chromium "
                    f"(or set $PALIMPSEST_CHROMIUM to a Chromium executable)")


def in_ci() -> bool:
    """CI sets CI=true; then no test may skip unless tests/skips-allowed.txt allows it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def has_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


needs_chromium = pytest.mark.skipif(not has_chromium(), reason=CHROMIUM_MISSING)


def hellobench_missing() -> str:
    """'' when the HelloBench folder is there, else why not (with the fix)."""
    from core.bench import HELLOBENCH_ENV, hellobench_root

    root = hellobench_root()
    if root.is_dir():
        return ""
    return f"HelloBench is not at {root}: put it in shared/data/hellobench beside the repo or set ${HELLOBENCH_ENV}"


def hellobench() -> Path:
    """The HelloBench folder; without it the test skips (a failure under CI=true)."""
    from core.bench import hellobench_root

    if why := hellobench_missing():
        pytest.fail(why) if in_ci() else pytest.skip(why)
    return hellobench_root()


def can_mount_tmpfs() -> str:
    """'' when `unshare -rm` lets this process mount a tmpfs (the real read-only and full-disk
    tests), else why not."""
    if not shutil.which("unshare"):
        return "no unshare command here"
    res = subprocess.run(["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d"],
                         capture_output=True, text=True)
    return "" if res.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {res.stderr.strip()[:120]}"
