"""`palimpsest judge ...` for pairwise queues: `queue add --all-pairs/--pairs/--source-pairs`,
`ranking` (core.judging.ranking), `simulate` (core.judging.simulate) and `calibrate` on a pairwise
queue (core.judging.pairwise_judge). The flags are declared with the other judge commands in
studio.cli.judge, which calls these.

Thin: parses, calls core.judging, prints; a user error is one line (CLIError).
"""
from __future__ import annotations

import sys

from studio.cli.common import CLIError
from studio.cli.judge import _annotator, _print, _store


def add_pairs(args, store) -> int:
    """`judge queue add` on a pairwise queue: --all-pairs, --pairs, --source-pairs."""
    from core.judging import pairwise as pw

    pairs = pw.all_pairs(args.all_pairs) if args.all_pairs else []
    for p in args.pairs or ():
        a, sep, b = p.partition(",")
        if not sep or not a.strip() or not b.strip() or "," in b:
            raise CLIError(f"--pairs {p!r}: write two drafts joined by a comma, e.g. --pairs traj:1,traj:2")
        pairs.append((a.strip(), b.strip()))
    if args.source_pairs is not None:
        pairs += pw.source_pairs(store, args.source_pairs or None)
    if args.refs:
        raise CLIError(f"judge queue add {args.name}: drafts after the queue are for scored queues; pair them with "
                         "--all-pairs REF REF ... or --pairs A,B")
    if not pairs:
        raise CLIError(f"judge queue add {args.name}: no pairs (--source-pairs found no prompt with drafts of two "
                         "sources)")
    new, dup = pw.add_pairs(store, args.name, pairs, added_by=_annotator(args))
    print(f"queue {args.name}: {len(new)} pair(s) added, {dup} already there")
    return 0


def cmd_ranking(args) -> int:
    from core.judging.ranking import ranking

    if args.resamples < 0:
        raise CLIError(f"--resamples {args.resamples}: give 0 or more")
    with _store(args) as store:
        rep = ranking(store, args.queue, by=args.by, resamples=args.resamples, seed=args.seed)
    if args.json:
        _print(rep)
        return 0
    print(f"queue {rep['queue']} by {rep['by']}: {rep['judgments']} judgment(s); Bradley-Terry log-strength (mean 0) "
          f"with 95% bootstrap interval ({rep['resamples']} resamples, seed {rep['seed']}); a tie counts as half a win each")
    for r in rep["rows"]:
        print(f"  {r['rank']}. {r['key']}: {r['strength']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]  "
              f"{r['wins']} won, {r['losses']} lost, {r['ties']} tied of {r['judgments']}")
    if not rep["rows"] and args.by == "source":
        print(f"no judgment in queue {args.queue} compares drafts of two different sources; pair them with "
              "`judge queue add QUEUE --source-pairs`", file=sys.stderr)
    elif not rep["rows"]:
        print(f"no judgments yet: people take pairs with `palimpsest judge next {args.queue}`", file=sys.stderr)
    return 0


def cmd_simulate(args) -> int:
    from core.judging.simulate import SimConfig, simulate

    for flag, v, lo in (("--items", args.items, 3), ("--overlap", args.overlap, 1), ("--runs", args.runs, 1)):
        if v < lo:
            raise CLIError(f"{flag} {v}: give {lo} or more")
    if not 0 <= args.noise <= 1:
        raise CLIError(f"--noise {args.noise}: give a chance from 0 to 1")
    n_pairs = args.items * (args.items - 1) // 2
    budget = n_pairs * args.overlap
    marks = tuple(sorted({max(1, round(budget * f)) for f in (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)}))
    cfg = SimConfig(items=args.items, spread=args.spread, noise=args.noise, overlap=args.overlap, runs=args.runs,
                    seed=args.seed, checkpoints=marks)
    rep = simulate(cfg)
    if args.json:
        _print(rep)
        return 0
    print(f"{args.items} drafts, true log-strengths {-args.spread / 2:g} to {args.spread / 2:g}, noise {args.noise:g}, "
          f"overlap {args.overlap}, {args.runs} seeded runs per policy (seeds {args.seed}..{args.seed + args.runs - 1})")
    print("judgments | " + " | ".join(f"{p}: tau, exact order" for p in rep["policies"]))
    for i, c in enumerate(marks):
        print(f"{c:9d} | " + " | ".join(f"{v['curve'][i]['tau']:.3f}, {v['curve'][i]['exact_share']:.0%}"
                                        for v in rep["policies"].values()))
    for p, v in rep["policies"].items():
        med = "n/a" if v["settled_median"] is None else f"{v['settled_median']:g}"
        print(f"{p}: median judgments until the order was right for good {med} ({v['never_settled']} of {args.runs} "
              "runs never settled)")
    return 0


def calibrate_pairs(args, store) -> int:
    """`judge calibrate` on a pairwise queue: ask the model (unless --report-only), then report."""
    from core.judging import pairwise_judge as pj
    from core.annotators import model_name
    from studio.cli.common import load_model as _load

    if args.refs or args.sample:
        raise CLIError(f"judge calibrate {args.queue}: a pairwise queue's model judge takes the queue's own pairs; "
                         "add pairs with `judge queue add --all-pairs ...`, then calibrate with no drafts")
    if not args.report_only:
        lm = _load(args.model)
        for step in pj.iter_calibrate_pairs(store, lm, args.model, args.queue):
            print(f"[{step.done}/{step.total}] {step.ref}: {step.prefer} (a first: {step.a_first}, b first: "
                  f"{step.b_first})", file=sys.stderr)
    rep = pj.report_pairs(store, args.queue, model_name(args.model))
    if args.json:
        _print(rep)
        return 0
    pct = lambda x: "n/a" if x is None else f"{x:.0%}"  # noqa: E731
    ci = lambda c: "" if c[0] is None else f" [{c[0]:.0%}, {c[1]:.0%}]"  # noqa: E731
    print(f"{rep['model']} on pairwise queue {rep['queue']}: {rep['judged_by_model']} pair(s) asked in both orders, "
          f"{rep['pairs']} also judged by people ({rep['resamples']} bootstrap resamples, 95% intervals)")
    print(f"  agrees with the people's majority: {pct(rep['agreement'])}{ci(rep['agreement_ci'])}")
    print(f"  model vs each person: {pct(rep['model_vs_people'])}{ci(rep['model_vs_people_ci'])}; person vs person "
          f"(the ceiling): {pct(rep['ceiling'])}{ci(rep['ceiling_ci'])} over {rep['ceiling_pairs']} pair(s)")
    print(f"  share of 'first' answers: model {pct(rep['model_first_share'])}, people {pct(rep['people_first_share'])};"
          f" the model chose the same draft in both orders on {pct(rep['consistent_share'])} of pairs")
    return 0
