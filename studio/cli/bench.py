"""`palimpsest bench`: benchmarks that print ratios measured in one run (core/bench.py,
core/bench_serve.py); human lines, then one JSON line."""
from __future__ import annotations

import json
import sys

from core.models.lm import DEFAULT_MODEL
from studio.cli.common import CLIError, load_model


def cmd_bench(args) -> int:
    from core.bench import bench_reer, bench_scoring
    from core.bench_generate import bench_generate

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
    scorer = load_model(args.scorer) if args.scorer and args.scorer.strip() != args.model else None
    lm = load_model(args.model)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    if args.what in ("reer", "generate"):
        if args.what == "reer":
            result = bench_reer(lm, items=args.items, precision=args.precision, engine=args.engine, log=log,
                                scorer=scorer, template=args.template)
            summary = reer_summary(result, scorer is not None)
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


def reer_summary(result: dict, scored_apart: bool) -> str:
    """The human lines of `bench reer`: per phase the fast and plain seconds and their ratio, the
    prompt cache's ratios, regret over how many steps, and whether the targets were met or not judged."""
    from core.bench_replay import MIN_REGRET_STEPS

    n, met = result["regret_steps"], result["regret_target_met"]
    lines = [f"REER search{' scored by ' + result['scorer'] if scored_apart else ''}, "
             f"{result['items']} item(s) (skipped: {', '.join(result['skipped']) or 'none'}); load average "
             f"{result['load_before'][0]:.1f} before, {result['load_after'][0]:.1f} after"]
    for phase in ("draft", "candidates", "scoring", "search"):
        lines.append(f"  {phase:<10} fast {result[phase + '_engine_s']:7.1f}s  plain {result[phase + '_plain_s']:7.1f}s"
                     f"  {result[phase + '_speedup']:.2f}x")
    lines.append(f"  whole item fast {result['engine_s']:7.1f}s  plain {result['plain_s']:7.1f}s  {result['speedup']:.2f}x")
    if "scored_sequences" in result:
        lines.append(f"  scoring timed over the same {result['scored_sequences']} sequences on both sides (the plain "
                     "loop replays the fast side's scoring requests)")
    for phase in ("draft", "candidates"):
        lines.append(f"  prompt cache, {phase}: off {result[f'prompt_cache_{phase}_off_s']:.1f}s, on "
                     f"{result[f'prompt_cache_{phase}_on_s']:.1f}s: {result[f'prompt_cache_{phase}_speedup']:.2f}x")
    if "prompt_cache_candidates_on_with_spare_s" in result:
        lines.append(f"  prompt cache, candidates, counting the spare generator's background work: on "
                     f"{result['prompt_cache_candidates_on_with_spare_s']:.1f}s: "
                     f"{result['prompt_cache_candidates_speedup_with_spare']:.2f}x")
    if result.get("prompt_cache_tokens"):
        t = result["prompt_cache_tokens"]
        lines.append(f"  prompt tokens from the cache {t['reused']}, computed {t['computed']} (fast side)")
    if n:
        lines.append(f"  max regret {result['max_regret']:.1e} over {n} measured step(s) "
                     f"({result['identical_choices']}/{n} identical choices)")
    else:
        lines.append("  regret NOT measured: no step scored two candidates (more --items)")
    lines.append("  regret target (<= 1e-3): " + ("not judged: fewer than %d measured steps" % MIN_REGRET_STEPS
                                                   if met is None else "met" if met else "NOT met")
                 + f"; scoring target ({result['scoring_target']}): "
                 + {None: "not judged", True: "met", False: "NOT met"}[result["scoring_target_met"]])
    return "\n".join(lines)


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



def add_bench_parser(sub) -> None:
    """Register `bench` on the `palimpsest` subparsers."""
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
