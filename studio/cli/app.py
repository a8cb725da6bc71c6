"""`palimpsest app`: start the studio in the browser, with its logins, models and store."""
from __future__ import annotations

import os

from core.models.lm import DEFAULT_MODEL
from data import SAMPLES  # the built-in sample set, package data
from studio.cli.common import CLIError


def cmd_app(args) -> int:
    from studio.app import launch_app
    from studio.users import Logins, UsersFileError

    pairs = args.auth or ([os.environ["PALIMPSEST_AUTH"]] if os.environ.get("PALIMPSEST_AUTH") else [])
    users_file = args.users or os.environ.get("PALIMPSEST_USERS") or None
    try:  # a bad users file line or --auth fails here, naming file:line or the flag, before anything loads
        logins = Logins.load(users_file, pairs, args.lead or ()) if (pairs or users_file) else None
        if args.lead and not logins:
            raise UsersFileError("--lead needs logins: give --users FILE or --auth USER:PASSWORD")
    except UsersFileError as exc:
        raise CLIError(str(exc)) from None
    from core.store import StoreError

    if args.max_upload_mb is not None and not args.max_upload_mb > 0:
        raise CLIError(f"--max-upload-mb must be above 0, not {args.max_upload_mb:g}")
    try:
        launch_app(host=args.host, port=args.port, model=args.model or [DEFAULT_MODEL],
                   auth=logins, samples_path=str(SAMPLES), db=args.db,
                   allow_patterns=args.allow_model or (), allow_any=args.allow_any_model,
                   max_upload_mb=args.max_upload_mb, any_path=args.allow_any_path)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    return 0



def add_app_parser(sub, default_db: str) -> None:
    """Register `app` on the `palimpsest` subparsers."""
    a = sub.add_parser("app", help="start the studio in the browser")
    a.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    a.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    a.add_argument("--model", action="append", default=None, metavar="SPEC",
                   help=f"model spec (alias, folder, hub id or server URL); repeat it to offer the pages more "
                        f"models: the first is the app's model (default {DEFAULT_MODEL}), and only these (and "
                        "--allow-model) may be picked; the API key goes only to servers named here")
    a.add_argument("--allow-model", action="append", default=None, metavar="PATTERN",
                   help="let the pages also load specs matching this shell-style pattern (fnmatch: * ? [..]; "
                        "* also matches /), e.g. 'http://gpu1:8000/v1#*'; repeatable; the API key goes to a "
                        "matching server only when the pattern names its host:port with no wildcard")
    a.add_argument("--allow-any-model", action="store_true",
                   help="let studio users type any model spec (a folder, a hub id, any server URL: the server "
                        "connects where they say); warned about on start; the API key still goes only to "
                        "servers named by --model or --allow-model")
    a.add_argument("--allow-any-path", action="store_true",
                   help="let the Train page's typed data file and output folder point anywhere this process can "
                        "reach (default: only inside the store's folder, or an export the store recorded); warned "
                        "about on start")
    a.add_argument("--max-upload-mb", type=float, default=None, metavar="MB",  # default: studio.app's
                   help="largest file a browser may upload, in MB of 1,048,576 bytes (default 50); bigger "
                        "files: `palimpsest import`")
    a.add_argument("--db", default=default_db, help="SQLite store (default $PALIMPSEST_DB or "
                                                     "~/.local/share/palimpsest/palimpsest.db); the built-in "
                                                     "samples are imported into an empty one")
    a.add_argument("--auth", action="append", default=None, metavar="USER:PASSWORD",
                   help="require a login; repeat it for several people (or env PALIMPSEST_AUTH, one pair); the "
                        "password shows in the process list: prefer --users")
    a.add_argument("--users", default=None, metavar="FILE",
                   help="require a login checked against this users file of salted password hashes (or env "
                        "PALIMPSEST_USERS; made with `palimpsest users add NAME --file FILE`); each person's acts "
                        "are recorded under their login name")
    a.add_argument("--lead", action="append", default=None, metavar="NAME",
                   help="give this login the lead role for this start (repeat; or `users add NAME --lead`): a lead "
                        "sees every judgment (Agreement, Calibration, judgment exports) and resolves disagreements")
    a.set_defaults(func=cmd_app)
