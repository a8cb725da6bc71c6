"""`palimpsest users add|remove|list`: the studio's users file (studio.users), for `palimpsest app --users F`.

A password is never an argument (it would sit in the shell's history and the process list): `users
add` asks for it twice at a prompt, or reads one line from stdin with --password-stdin (scripts).
The file defaults to $PALIMPSEST_USERS, else ~/.config/palimpsest/users.

Thin: parses arguments, calls studio.users, prints. Registered by studio.cli.main.build_parser
through `add_users_parser`. A user error is one line on stderr, exit status 2 (CLIError,
studio/cli/common.py).
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from studio.cli.common import CLIError


def default_users_file() -> str:
    """$PALIMPSEST_USERS, else ~/.config/palimpsest/users."""
    return os.environ.get("PALIMPSEST_USERS") or str(Path.home() / ".config" / "palimpsest" / "users")


def _password(args) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise CLIError("no terminal to ask the password at; pipe it in with --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise CLIError("the two passwords differ; nothing was changed")
    return first


def cmd_add(args) -> int:
    from studio.users import UsersFileError, add_user

    try:
        new = add_user(args.file, args.name, _password(args), lead=args.lead)
    except UsersFileError as exc:
        raise CLIError(str(exc)) from None
    print(f"{'added' if new else 'new password for'} {args.name.strip()} in {args.file}", file=sys.stderr)
    return 0


def cmd_remove(args) -> int:
    from studio.users import UsersFileError, remove_user

    try:
        remove_user(args.file, args.name)
    except UsersFileError as exc:
        raise CLIError(str(exc)) from None
    print(f"removed {args.name.strip()} from {args.file}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from studio.users import UsersFileError, read_users

    try:
        users = read_users(args.file)
    except UsersFileError as exc:
        raise CLIError(str(exc)) from None
    for name in sorted(users):
        print(name + (f"\t{users[name].role}" if users[name].role else ""))
    return 0


def add_users_parser(sub) -> None:
    """Register `users ...` on the `palimpsest` subparsers."""
    file_help = "the users file (default $PALIMPSEST_USERS or ~/.config/palimpsest/users)"
    u = sub.add_parser("users", help="the studio's logins: a users file with hashed passwords (app --users FILE)",
                       description="Each line of the file is a name and a salted scrypt hash of its password "
                                   "(studio/users.py); the name is what every act of that person is recorded under. "
                                   "See docs/judging.md, Logins.")
    us = u.add_subparsers(dest="action", required=True)
    a = us.add_parser("add", help="add a user, or set a new password for one (asked at a prompt)")
    a.add_argument("name", help="the login and annotator name (1 to 80 printable characters, not model:...)")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (scripts) instead of a prompt")
    a.add_argument("--lead", action=argparse.BooleanOptionalAction, default=None,
                   help="give (--lead) or take (--no-lead) the lead role: a lead sees every judgment and resolves "
                        "disagreements (default: as the line had it)")
    r = us.add_parser("remove", help="remove a user")
    r.add_argument("name", help="the user to remove")
    ls = us.add_parser("list", help="the names in the file, one a line (a lead's followed by its role)")
    for p, fn in ((a, cmd_add), (r, cmd_remove), (ls, cmd_list)):
        p.add_argument("--file", default=default_users_file(), help=file_help)
        p.set_defaults(func=fn)
