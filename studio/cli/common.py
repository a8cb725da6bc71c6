"""What every `palimpsest` command shares: the one-line user error (CLIError), the parser that
reports a usage error in one line, the store's default path, the shared help texts and model
loading through the process's shelf. Command modules import from here, never from
studio/cli/main.py, which only wires them together.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DB_HELP = "SQLite store (default $PALIMPSEST_DB or ~/.local/share/palimpsest/palimpsest.db)"


class CLIError(Exception):
    """A user error to print as one line (studio.cli.main.main: exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error (unknown flag, bad choice, missing argument) as one line on
    stderr and exit status 2 like every other user error; `--help` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def default_db() -> str:
    """$PALIMPSEST_DB, else ~/.local/share/palimpsest/palimpsest.db."""
    return os.environ.get("PALIMPSEST_DB") or str(Path.home() / ".local" / "share" / "palimpsest" / "palimpsest.db")


def load_model(spec: str, dtype: str = "float32"):
    """The model for `spec` from the process's shelf (core.models.shelf): loaded once."""
    from core.models.urls import is_server_spec
    from core.models.shelf import default_shelf

    shelf = default_shelf()
    fresh = spec.strip() not in shelf.loaded()
    if fresh:  # a server computes in its own dtype: no "(float32)" for it
        print(f"connecting to {spec}..." if is_server_spec(spec) else f"loading model {spec} ({dtype})...",
              file=sys.stderr)
    lm = shelf.get(spec, dtype=dtype)
    if fresh and hasattr(lm, "describe"):  # what the server supports, probed once (core.models.dialect)
        d = lm.describe()
        kinds = sorted({e["kind"] for e in d["endpoints"].values() if e})
        print(f"  {', '.join(kinds)} server, {len(d['endpoints'])} endpoint(s), window {d['max_length']} tokens "
              f"({d['max_length_source']}), tokenizer {d['tokenizer'] or 'the server'}", file=sys.stderr)
    return lm

