"""`palimpsest score`: the perplexity of references given query (+ thinking), one JSON line per item."""
from __future__ import annotations

import json
import sys

from core.models.lm import DEFAULT_MODEL, LMError
from studio.cli.batch import INPUT_HELP
from studio.cli.common import CLIError, load_model


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
    lm = load_model(args.model, args.dtype)
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



def add_score_parser(sub) -> None:
    """Register `score` on the `palimpsest` subparsers; its scoring flags come from ScoringConfig."""
    from core.models.scoring import ScoringConfig
    from core.settings import add_arguments

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
