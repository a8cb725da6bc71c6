"""The `palimpsest` command: app, score, bench here; reer (studio/cli/reer.py), r2 (studio/cli/r2.py),
train (studio/cli/train.py), import/review/export (studio/cli/data.py), judge (studio/cli/judge.py),
users (studio/cli/users.py). Thin: parses arguments,
calls core, prints. The flags of engine settings are generated from their config dataclasses
(core.settings), so names, defaults, ranges and help are declared once, in the config.

Every user error ends as one readable line on stderr and exit status 2; never a traceback. A
setting a config refuses (core.settings.SettingError) is reported with the flag that gave it. Every
--out is checked before any work (core.outputs), and any OSError (disk full, read-only folder, a
folder given for a file) is one line with exit status 2 too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from core.models.lm import DEFAULT_MODEL, LMError  # noqa: E402  (env first: nothing phones home)
from core.outputs import OutputError, oserror_line  # noqa: E402
from core.settings import SettingError, flag_for  # noqa: E402
from data import SAMPLES  # noqa: E402  (the built-in sample set, package data)
from studio.cli.batch import INPUT_HELP  # noqa: E402


def default_db() -> str:
    """$PALIMPSEST_DB, else ~/.local/share/palimpsest/palimpsest.db."""
    return os.environ.get("PALIMPSEST_DB") or str(Path.home() / ".local" / "share" / "palimpsest" / "palimpsest.db")


class CLIError(Exception):
    """A user error to print as one line."""


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error (unknown flag, bad choice, missing argument) as one line on
    stderr and exit status 2 like every other user error; `--help` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _load(spec: str, dtype: str = "float32"):
    """The model for `spec` from the process's shelf (core.models.shelf): loaded once."""
    from core.models.lm import is_server_spec
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


# ---- app -------------------------------------------------------------------------------------

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


# ---- score -----------------------------------------------------------------------------------

def cmd_score(args) -> int:
    from tqdm import tqdm

    from core.data.items import InputError, read_items
    from core.models.scoring import ScoringConfig, ScoringError, score
    from core.settings import from_args

    if args.precision is None:  # bf16 weights score in bf16; fp32 ones exactly
        args.precision = "bf16" if args.dtype == "bfloat16" else "fp32"
    cfg = from_args(ScoringConfig, args)
    if args.out is not None:  # before any work: never the input, never a folder, somewhere writable
        from core.outputs import check_file_out

        args.out = str(check_file_out(args.out, {"--input": args.input}))
    try:
        items, problems = read_items(args.input)
    except InputError as exc:
        raise CLIError(str(exc)) from None
    for p in problems:
        print(f"skipped {p}", file=sys.stderr)
    if problems and args.strict:
        raise CLIError(f"{len(problems)} bad line(s) in {args.input}; fix them or drop --strict to skip them")
    if not items:
        raise CLIError(f"{args.input}: no usable lines (each needs 'query' and 'reference')")
    lm = _load(args.model, args.dtype)
    if args.out:  # OUT.partial, renamed over OUT at the end (also on Ctrl-C or an error): never half-written
        from core.outputs import OutputFile

        out = OutputFile(args.out)
    else:
        out = sys.stdout
    failed = 0
    try:
        for item in tqdm(items, desc="scoring", unit="item", file=sys.stderr, disable=not sys.stderr.isatty() and not args.progress):
            try:
                s = score(lm, item.query, item.thinking, item.reference, cfg)
            except (ScoringError, LMError) as exc:
                failed += 1
                print(f"skipped {args.input} id {item.id}: {exc}", file=sys.stderr)
                if args.strict:
                    raise CLIError(f"id {item.id}: {exc}") from None
                continue
            row = {"id": item.id, "n_tokens": s.n_tokens, "mean_logprob": round(s.mean_logprob, 6),
                   "ppl": round(s.ppl, 4), "score": round(s.score, 6)}
            if s.truncated:
                row["truncated_context_tokens"] = s.truncated
            out.write(json.dumps(row) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"scored {len(items) - failed} item(s); skipped {len(problems) + failed}", file=sys.stderr)
    return 1 if failed and len(items) == failed else 0


# ---- bench -----------------------------------------------------------------------------------

def cmd_bench(args) -> int:
    from core.bench import bench_generate, bench_reer, bench_scoring

    if args.what == "serve":
        return cmd_bench_serve(args)
    args.items = 2 if args.items is None else args.items
    if args.what == "reer" and args.items < 1:
        raise CLIError("--items must be at least 1")
    if args.tokens < 1 or (args.rounds is not None and args.rounds < 1):
        raise CLIError("--tokens and --rounds must be at least 1")
    if args.engine:
        from core.models.ct2 import UnknownEngine, check_engine

        try:
            check_engine(args.engine, where=f"--engine {args.engine}")
        except UnknownEngine as exc:
            raise CLIError(str(exc)) from None
    if (args.scorer or args.template) and args.what != "reer":
        raise CLIError(f"--scorer and --template are for bench reer, not bench {args.what}")
    scorer = _load(args.scorer) if args.scorer and args.scorer.strip() != args.model else None
    lm = _load(args.model)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    if args.what in ("reer", "generate"):
        if args.what == "reer":
            result = bench_reer(lm, items=args.items, precision=args.precision, engine=args.engine, log=log,
                                scorer=scorer, template=args.template)
            n = result["regret_steps"]
            summary = (f"REER search{' scored by ' + result['scorer'] if scorer is not None else ''}: engine "
                       f"{result['engine_items_per_hour']:.1f} items/h, plain loop "
                       f"{result['plain_items_per_hour']:.1f} items/h: {result['speedup']:.2f}x; "
                       + (f"max regret {result['max_regret']:.1e} over {n} measured step(s) "
                          f"({result['identical_choices']}/{n} identical choices)" if n else
                          "regret NOT measured: no step scored two candidates (more --items, or a model that "
                          "writes usable candidates)"))
        else:
            result = bench_generate(lm, tokens=args.tokens, rounds=args.rounds or 1, log=log)
            summary = "  ".join(f"{k}: {v:.1f}" for k, v in result.items() if k.endswith("tokens_per_s"))
        if not args.json:
            print(summary)
        print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result.items()}))
        return 0
    result = bench_scoring(lm, rounds=args.rounds or 3, k=args.k, segment=args.segment, log=log)
    if not args.json:
        print(f"engine default ({result['default_precision']}: shared prefix + cascade attention): "
              f"{result['speedup']:.2f}x naive fp32; decisions match: {result['decisions_match']}; "
              f"max |diff| {result['max_abs_diff']:.1e}")
        for m in ("auto", "bf16"):
            print(f"{m}: {result[m + '_speedup']:.2f}x naive; decisions match: {result[m + '_decisions_match']}")
        print(f"closest gap between candidates: {result['min_candidate_gap']:.1e}; bf16 max |diff| {result['bf16_max_abs_diff']:.1e}")
        print(f"naive fp32 ran at {result['naive_gflops']:.0f} GFLOP/s; matmul peak here "
              f"{result['matmul_peak_gflops_fp32']:.0f} (fp32) / {result['matmul_peak_gflops_bf16']:.0f} (bf16) GFLOP/s")
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result.items()}))
    return 0


def cmd_bench_serve(args) -> int:
    """`bench serve`: core.bench_serve's curve; human lines on stderr with --json, the JSON line last."""
    from core.bench_serve import DELAY_S, ITEMS, LEVELS, bench_serve

    try:
        levels = [int(x) for x in args.levels.split(",")] if args.levels else list(LEVELS)
    except ValueError:
        raise CLIError(f"--levels {args.levels!r}: write concurrency levels as numbers, e.g. 1,4,16,64") from None
    items, delay = ITEMS if args.items is None else args.items, DELAY_S if args.delay is None else args.delay
    if items < 1 or delay < 0 or any(c < 1 for c in levels):
        raise CLIError("bench serve: --items must be at least 1, --delay 0 or more, --levels positive numbers")
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    result = bench_serve(delay=delay, items=items, levels=levels, url=args.url, log=log)
    sb = result["standin"]
    if not args.json and sb["speedup_16_vs_1"] is not None:
        print(f"stand-in: items/hour at 16 in flight = {sb['speedup_16_vs_1']:.1f}x at 1 (target "
              f"{sb['target_16_vs_1']:g}x: {'met' if sb['target_met'] else 'NOT met'}); load {result['load_after']}")
    print(json.dumps(_rounded(result)))
    return 0


def _rounded(x):
    """Floats to 4 significant digits, all the way down (for the JSON line)."""
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


# ---- wiring ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from core.models.scoring import ScoringConfig
    from core.settings import add_arguments

    p = Parser(prog="palimpsest", description="Make thinking trajectories for writing.")
    sub = p.add_subparsers(dest="command", required=True)

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
    a.add_argument("--db", default=default_db(), help="SQLite store (default $PALIMPSEST_DB or "
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

    s = sub.add_parser("score", help="perplexity of references given query (+ thinking)")
    s.add_argument("--input", required=True, help=INPUT_HELP)
    s.add_argument("--model", default=DEFAULT_MODEL, help="model spec (alias, folder, hub id or server URL)")
    s.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="weights as loaded")
    s.add_argument("--out", default=None, help="output JSONL (default: stdout); written as OUT.partial, one line per "
                                               "item as it is scored, and renamed to OUT at the end (also on Ctrl-C "
                                               "or an error): OUT is never half-written, and after a kill the lines "
                                               "finished are in OUT.partial")
    s.add_argument("--strict", action="store_true", help="fail on the first bad line instead of skipping it")
    s.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    scoring = s.add_argument_group("scoring settings (ScoringConfig)")
    score_flags = add_arguments(scoring, ScoringConfig, defaults={"precision": None})
    for action in scoring._group_actions:  # the default follows --dtype (cmd_score)
        if action.dest == "precision":
            action.help += " (default: bf16 with --dtype bfloat16, else fp32)"
    scoring.add_argument("--truncate-left", dest="truncate", action="store_const", const="left",
                         help="the same as --truncate left")
    s.set_defaults(func=cmd_score, setting_flags=score_flags)

    from studio.cli.reer import add_reer_parser

    add_reer_parser(sub, default_db())
    from studio.cli.r2 import add_r2_parser

    add_r2_parser(sub, default_db())

    b = sub.add_parser("bench", help="benchmarks that print ratios measured in one run")
    b.add_argument("what", choices=["scoring", "reer", "generate", "serve"],
                   help="which benchmark (generate: tokens/s of each engine; serve: items/hour at 1, 4, 16, 64 items "
                        "in flight against a latency stand-in server, and a real one with --url; core/bench_serve.py)")
    b.add_argument("--model", default=DEFAULT_MODEL, help="model spec (alias, folder, hub id or server URL)")
    b.add_argument("--rounds", type=int, default=None, help="scoring, generate: timed rounds (default 3 for "
                   "scoring, 1 for generate)")
    b.add_argument("--k", type=int, default=4, help="scoring: candidates per step")
    b.add_argument("--segment", type=int, default=5, help="scoring: segment whose candidates are timed")
    b.add_argument("--items", type=int, default=None, help="reer: HelloBench items run by each path (default 2); "
                                                           "serve: items at concurrency 1, each level runs at "
                                                           "least 2 per item in flight (default 4)")
    b.add_argument("--url", default=None, help="serve: also measure this server (model spec, e.g. "
                                               "http://localhost:8000/v1#org/name)")
    b.add_argument("--delay", type=float, default=None, help="serve: the stand-in's seconds per completion "
                                                             "request (default 1.0)")
    b.add_argument("--levels", default=None, help="serve: concurrency levels, comma-separated (default 1,4,16,64)")
    b.add_argument("--scorer", default=None, metavar="SPEC",
                   help="reer: another model that scores (any --model spec; default: the model scores); both "
                        "sides score with it and regret is measured with it")
    b.add_argument("--template", default=None, choices=["train", "chat", "none"],
                   help="reer: the scoring layout (default: REER's, or none when the --scorer has no chat template)")
    b.add_argument("--engine", default=None, help="reer: the fast side's generation engine (default: the engine "
                   "setting, $PALIMPSEST_ENGINE; see docs/speed.md)")
    b.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"],
                   help="reer: the fast side's scoring precision (default fp32, REER's own default; auto picks bf16 "
                        "only where it is native (GPU, AMX/avx512_bf16 CPU), else fp32; bf16 forced on a CPU "
                        "without it is slower than fp32: docs/speed.md)")
    b.add_argument("--tokens", type=int, default=64, help="generate: new tokens per generation")
    b.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    b.set_defaults(func=cmd_bench)

    from studio.cli.data import add_commands  # import, review, export

    add_commands(sub, default_db(), CLIError)
    from studio.cli.judge import (
        add_judge_parser,  # judging queues, agreement, calibration
    )

    add_judge_parser(sub, default_db(), CLIError)
    from studio.cli.users import add_users_parser  # the studio's logins

    add_users_parser(sub, CLIError)
    from studio.cli.train import add_train_parser

    add_train_parser(sub, default_db())
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


