"""The `palimpsest` command: app, score, reer, r2 (studio/cli/r2.py), bench. Thin: parses arguments, calls core, prints.

Every user error ends as one readable line on stderr and exit status 2; never a traceback.
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
from data import SAMPLES  # noqa: E402  (the built-in sample set, package data)


def default_db() -> str:
    """$PALIMPSEST_DB, else ~/.local/share/palimpsest/palimpsest.db."""
    return os.environ.get("PALIMPSEST_DB") or str(Path.home() / ".local" / "share" / "palimpsest" / "palimpsest.db")


class CLIError(Exception):
    """A user error to print as one line."""


def _load(spec: str, dtype: str = "float32"):
    """The model for `spec` from the process's shelf (core.models.shelf): loaded once."""
    from core.models.shelf import default_shelf

    shelf = default_shelf()
    if spec.strip() not in shelf.loaded():
        print(f"loading model {spec} ({dtype})...", file=sys.stderr)
    return shelf.get(spec, dtype=dtype)


# ---- app -------------------------------------------------------------------------------------

def cmd_app(args) -> int:
    from studio.app import launch_app

    auth = args.auth or os.environ.get("PALIMPSEST_AUTH")
    if auth and ":" not in auth:
        raise CLIError("--auth must look like USER:PASSWORD")
    user, _, password = (auth or "").partition(":")
    if auth and not (user and password):
        raise CLIError("--auth must look like USER:PASSWORD, both non-empty")
    from core.store import StoreError

    try:
        launch_app(host=args.host, port=args.port, model=args.model,
                   auth=(user, password) if auth else None, samples_path=str(SAMPLES), db=args.db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    return 0


# ---- score -----------------------------------------------------------------------------------

def cmd_score(args) -> int:
    from tqdm import tqdm

    from core.data.items import InputError, read_jsonl
    from core.models.scoring import ScoringConfig, ScoringError, score

    try:
        items, problems = read_jsonl(args.input)
    except InputError as exc:
        raise CLIError(str(exc)) from None
    for p in problems:
        print(f"skipped {p}", file=sys.stderr)
    if problems and args.strict:
        raise CLIError(f"{len(problems)} bad line(s) in {args.input}; fix them or drop --strict to skip them")
    if not items:
        raise CLIError(f"{args.input}: no usable lines (each needs 'query' and 'reference')")
    lm = _load(args.model, args.dtype)
    cfg = ScoringConfig(template=args.template, skip_first_segment=args.skip_first_segment,
                        precision="bf16" if args.dtype == "bfloat16" else "fp32",
                        truncate="left" if args.truncate_left else "error")
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout
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


# ---- reer ------------------------------------------------------------------------------------

def _read_items(path: str, limit: int | None):
    """Items of --input (JSONL, HelloBench file or folder); bad lines are printed and skipped."""
    from core.data.items import InputError, read_items

    try:
        items, problems = read_items(path)
    except InputError as exc:
        raise CLIError(str(exc)) from None
    if not items:
        more = f" (and {len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        why = f"; first bad line: {problems[0]}{more}" if problems else "; the file is empty"
        raise CLIError(f"{path}: no usable items{why}")
    for p in problems:
        print(f"skipped {p}", file=sys.stderr)
    return items[:limit] if limit is not None else items


def cmd_reer(args) -> int:
    from tqdm import tqdm

    from core.reer.batch import reer_items
    from core.reer.config import ReerConfig
    from core.store import StoreError, open_store

    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be at least 1")
    if args.candidates < 1 or args.max_steps < 0:
        raise CLIError("--candidates must be at least 1 and --max-steps at least 0")
    if args.no_repeat_ngram == 1 or args.no_repeat_ngram < 0:
        raise CLIError("--no-repeat-ngram must be 0 (off) or 2 and more")
    items = _read_items(args.input, args.limit)
    cfg = ReerConfig(candidates=args.candidates, max_steps=args.max_steps, threshold=args.threshold,
                     draft_max_new_tokens=args.draft_max_new_tokens,
                     candidate_max_new_tokens=args.max_new_tokens, no_repeat_ngram=args.no_repeat_ngram,
                     seed=args.seed)
    try:
        store = open_store(args.db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    model = (args.model or DEFAULT_MODEL).strip()  # the name a loaded LM carries (core.models.lm.load_lm)

    def get_lm():
        return _load(model)  # loaded on first use, once (the shelf keeps it)

    show = sys.stderr.isatty() or args.progress
    bar = tqdm(total=len(items), desc="reer", unit="item", file=sys.stderr, disable=not show)
    say = (lambda msg: bar.write(msg, file=sys.stderr)) if show else (lambda msg: print(msg, file=sys.stderr))

    def on_event(item, event):
        post = {"item": item.id[-32:]}
        if event.kind in ("run_started", "initial_draft"):
            post["step"] = "draft" if event.kind == "run_started" else f"0/{cfg.max_steps}"
        elif hasattr(event, "step"):
            post["step"] = f"{event.step}/{cfg.max_steps}"
        if isinstance(getattr(event, "score", None), dict) and event.kind != "candidate_scored":
            post["score"] = f"{event.score['score']:.4f}"
        bar.set_postfix(post, refresh=True)

    counts = {"done": 0, "cached": 0, "failed": 0}
    out = open(args.out, "w", encoding="utf-8")
    try:
        for o in reer_items(store, items, cfg, model, get_lm, source=str(args.input), on_event=on_event):
            counts[o.status] += 1
            bar.update(1)
            if o.status == "failed":
                say(f"failed {o.item.id}: {o.error}")
                continue
            r = o.record
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
            out.flush()
            was = "already in the store" if o.status == "cached" else f"{r['timings']['active_seconds']:.0f} s"
            say(f"{o.item.id}: score {_num(r['initial_score'])} -> {_num(r['final_score'])} "
                f"(ppl {_num(r['initial_ppl'], 2)} -> {_num(r['final_ppl'], 2)}), {len(r['steps'])} step(s), "
                f"{r['finish_reason']}, filters {'passed' if r['filters'].get('passed') else 'failed'}; {was}")
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: every event so far is saved in {store.path or args.db} and finished items are in "
              f"{args.out}; run the same command again to resume where it stopped", file=sys.stderr)
        return 130
    finally:
        bar.close()
        out.close()
        store.close()
    print(f"wrote {counts['done'] + counts['cached']} record(s) to {args.out}: {counts['done']} searched, "
          f"{counts['cached']} already finished in {args.db}, {counts['failed']} failed", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _num(x, digits: int = 4) -> str:
    return "?" if x is None else f"{x:.{digits}f}"


# ---- bench -----------------------------------------------------------------------------------

def cmd_bench(args) -> int:
    from core.bench import bench_reer, bench_scoring

    if args.what == "reer" and args.items < 1:
        raise CLIError("--items must be at least 1")
    lm = _load(args.model)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    if args.what == "reer":
        result = bench_reer(lm, items=args.items, log=log)
        if not args.json:
            print(f"REER search: engine {result['engine_items_per_hour']:.1f} items/h, plain loop "
                  f"{result['plain_items_per_hour']:.1f} items/h: {result['speedup']:.2f}x")
        print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in result.items()}))
        return 0
    result = bench_scoring(lm, rounds=args.rounds, k=args.k, segment=args.segment, log=log)
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


# ---- wiring ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from core.reer.config import ReerConfig

    defaults = ReerConfig()  # the search's own defaults (DESIGN.md)

    p = argparse.ArgumentParser(prog="palimpsest", description="Make thinking trajectories for writing.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("app", help="start the studio in the browser")
    a.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    a.add_argument("--port", type=int, default=7860)
    a.add_argument("--model", default=DEFAULT_MODEL, help="model spec (alias, folder, hub id or server URL)")
    a.add_argument("--db", default=default_db(), help="SQLite store (default $PALIMPSEST_DB or "
                                                     "~/.local/share/palimpsest/palimpsest.db); the built-in "
                                                     "samples are imported into an empty one")
    a.add_argument("--auth", default=None, help="USER:PASSWORD to require a login (or env PALIMPSEST_AUTH)")
    a.set_defaults(func=cmd_app)

    s = sub.add_parser("score", help="perplexity of references given query (+ thinking)")
    s.add_argument("--input", required=True, help="JSONL: query, optional thinking, reference, optional id")
    s.add_argument("--model", default=DEFAULT_MODEL)
    s.add_argument("--template", choices=["chat", "none"], default="chat")
    s.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    s.add_argument("--out", default=None, help="output JSONL (default: stdout)")
    s.add_argument("--skip-first-segment", action="store_true", help="leave the reference's first segment unscored")
    s.add_argument("--truncate-left", action="store_true", help="drop context tokens from the left when too long")
    s.add_argument("--strict", action="store_true", help="fail on the first bad line instead of skipping it")
    s.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    s.set_defaults(func=cmd_score)

    r = sub.add_parser("reer", help="REER: reverse-engineer thinking trajectories for query/reference pairs")
    rsub = r.add_subparsers(dest="action", required=True)
    rr = rsub.add_parser("run", help="run (or resume) REER on every item of a file; one JSON line per item",
                         description="Every event is saved in --db as it happens: items already finished with "
                                     "the same settings and model are not searched again (their records are "
                                     "still written), and an interrupted item resumes where it stopped.")
    rr.add_argument("--input", required=True, help="JSONL (query/reference or instruction/response), a HelloBench "
                                                   "task file (joined with the responses beside it) or folder")
    rr.add_argument("--out", required=True, help="output JSONL, one record per item (overwritten)")
    rr.add_argument("--model", default=DEFAULT_MODEL, help="model spec (alias, folder, hub id or server URL)")
    rr.add_argument("--candidates", type=int, default=defaults.candidates, help="rewrites per segment (K)")
    rr.add_argument("--max-steps", type=int, default=defaults.max_steps, help="segment expansions at most")
    rr.add_argument("--max-new-tokens", type=int, default=defaults.candidate_max_new_tokens,
                    help="token budget of each rewrite")
    rr.add_argument("--draft-max-new-tokens", type=int, default=defaults.draft_max_new_tokens,
                    help="token budget of the initial thinking")
    rr.add_argument("--no-repeat-ngram", type=int, default=defaults.no_repeat_ngram,
                    help="draft and rewrites may not repeat an n-gram of this many tokens (0 = off; local "
                         "models only: small models loop without it)")
    rr.add_argument("--threshold", type=float, default=defaults.threshold,
                    help="stop once the clipped score falls below this")
    rr.add_argument("--seed", type=int, default=defaults.seed, help="same seed, same trajectories")
    rr.add_argument("--limit", type=int, default=None, help="only the first N items")
    rr.add_argument("--db", default=default_db(), help="SQLite store (default $PALIMPSEST_DB or "
                                                      "~/.local/share/palimpsest/palimpsest.db)")
    rr.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    rr.set_defaults(func=cmd_reer)

    from studio.cli.r2 import add_r2_parser

    add_r2_parser(sub, default_db())

    b = sub.add_parser("bench", help="benchmarks that print ratios measured in one run")
    b.add_argument("what", choices=["scoring", "reer"], help="which benchmark")
    b.add_argument("--model", default=DEFAULT_MODEL)
    b.add_argument("--rounds", type=int, default=3, help="scoring: timed rounds")
    b.add_argument("--k", type=int, default=4, help="scoring: candidates per step")
    b.add_argument("--segment", type=int, default=5, help="scoring: segment whose candidates are timed")
    b.add_argument("--items", type=int, default=2, help="reer: HelloBench items run by each path")
    b.add_argument("--json", action="store_true", help="print only the JSON line on stdout")
    b.set_defaults(func=cmd_bench)

    from studio.cli.data import add_commands  # import, review, export

    add_commands(sub, default_db(), CLIError)
    from studio.cli.train import add_train_parser

    add_train_parser(sub, default_db())
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, LMError, FileNotFoundError) as exc:
        print(f"palimpsest {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept", file=sys.stderr)
        return 130


