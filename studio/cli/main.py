"""The `palimpsest` command, wired: app (studio/cli/app.py), score (score.py), reer (reer.py), r2
(r2.py), bench (bench.py), import/review/export (data.py), judge (judge.py), users (users.py), train
(train.py); what they share is studio/cli/common.py. This module only wires them and turns errors into
one line; no command module imports it. The commands are thin: they parse arguments, call core,
print. The flags of engine settings are generated from their config dataclasses (core.settings), so
names, defaults, ranges and help are declared once, in the config.

Every user error ends as one readable line on stderr and exit status 2; never a traceback. A
setting a config refuses (core.settings.SettingError) is reported with the flag that gave it. Every
--out is checked before any work (core.outputs), and any OSError (disk full, read-only folder, a
folder given for a file) is one line with exit status 2 too.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from core.models.lm import LMError  # noqa: E402  (env first: nothing phones home)
from core.outputs import OutputError, oserror_line  # noqa: E402
from core.settings import SettingError, flag_for  # noqa: E402
from studio.cli.app import add_app_parser  # noqa: E402
from studio.cli.bench import add_bench_parser  # noqa: E402
from studio.cli.common import CLIError, Parser, default_db  # noqa: E402
from studio.cli.data import add_commands  # noqa: E402  (import, review, export)
from studio.cli.judge import add_judge_parser  # noqa: E402  (judging queues, agreement, calibration)
from studio.cli.r2 import add_r2_parser  # noqa: E402
from studio.cli.reer import add_reer_parser  # noqa: E402
from studio.cli.score import add_score_parser  # noqa: E402
from studio.cli.train import add_train_parser  # noqa: E402
from studio.cli.users import add_users_parser  # noqa: E402  (the studio's logins)


def build_parser() -> argparse.ArgumentParser:
    """Every command on one parser, in the order `palimpsest --help` lists them."""
    p = Parser(prog="palimpsest", description="Make thinking trajectories for writing.")
    sub = p.add_subparsers(dest="command", required=True)
    db = default_db()
    add_app_parser(sub, db)
    add_score_parser(sub)
    add_reer_parser(sub, db)
    add_r2_parser(sub, db)
    add_bench_parser(sub)
    add_commands(sub, db)
    add_judge_parser(sub, db)
    add_users_parser(sub)
    add_train_parser(sub, db)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingError as exc:  # a config refused a value: name the flag that gave it
        print(f"palimpsest {args.command}: {flag_for(getattr(args, 'setting_flags', {}), exc)}", file=sys.stderr)
        return 2
    except (CLIError, LMError, OutputError, FileNotFoundError) as exc:
        print(f"palimpsest {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, a folder where a file was meant: one line, not a traceback
        print(f"palimpsest {args.command}: {oserror_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept", file=sys.stderr)
        return 130


