"""`palimpsest judge ...`: judging queues from the shell, scriptable (JSON out, JSON in).

`judge queue create|add|status`, `judge next` (the annotator's next task as one JSON object; {"task":
null} when nothing is left), `judge submit` (scores as flags or one JSON object on stdin / in a
file), `judge skip`, `judge show` (an item's judgments, once you have submitted yours),
`judge agreement` (alpha and pairwise agreement; --disagreements lists the widest spreads),
`judge resolve`, `judge feed` (the people's judgment of a waiting R2 text back to its run),
`judge calibrate` (a model judge on a sample of drafts, queued for people), `judge ranking` and
`judge simulate` (pairwise queues: studio.cli.judge_pairs). Every
command that records a human act takes --annotator NAME (default: the OS user).

Thin: parses arguments, calls core.judging, prints. Registered by studio.cli.main.build_parser
through `add_judge_parser`. A user error is one line on stderr, exit status 2 (CLIError,
studio/cli/common.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from studio.cli.common import DB_HELP, CLIError, load_model

ANNOTATOR_HELP = "who is judging (default: the OS user); recorded with every judgment, resolution and queue change"


@contextmanager
def _store(args):
    from core.annotators import BadAnnotator
    from core.r2.judge import BadJudgment
    from core.store import StoreError, open_store

    try:
        store = open_store(args.db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    try:
        yield store
    except (StoreError, BadAnnotator, BadJudgment) as exc:
        raise CLIError(str(exc)) from None
    finally:
        store.close()


def _annotator(args) -> str:
    from core import annotators as who

    try:
        return who.clean(args.annotator, where="--annotator") if args.annotator is not None else who.os_user()
    except who.BadAnnotator as exc:
        raise CLIError(str(exc)) from None


def _scores(pairs: list[str] | None, error) -> dict:
    """--score N=V (or TEXT=V) pairs as {key: number}."""
    out = {}
    for p in pairs or ():
        key, sep, value = p.rpartition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            key = ""
        if not sep or not key.strip():
            raise error(f"--score {p!r}: write CRITERION=SCORE, the criterion by its number, e.g. --score 1=7")
    return out


def _print(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ci(ci) -> str:
    """A 95% interval as [lo, hi] (n/a when undefined)."""
    return "[n/a]" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


# ---- queue ---------------------------------------------------------------------------------------

def cmd_queue(args) -> int:
    from core.judging import calibration as cal
    from core.judging import queue as jq

    with _store(args) as store:
        if args.queue_action == "create":
            rubric = None
            if args.rubric_file:
                p = Path(args.rubric_file)
                if not p.is_file():
                    raise CLIError(f"--rubric-file {args.rubric_file}: no such file")
                rubric = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            if args.criterion:
                rubric = (rubric or []) + args.criterion
            if args.pairwise:
                from core.judging import pairwise as pw

                if rubric and len(rubric) > 1:
                    raise CLIError("--pairwise: give one --criterion (the question asked of each pair)")
                q = pw.create_pairwise_queue(store, args.name, rubric[0] if rubric else None, overlap=args.overlap,
                                             policy=args.next, seed=args.seed, task_timeout_s=args.timeout,
                                             created_by=_annotator(args), open_items=args.open_items)
                print(f"queue {q['name']}: pairwise, {q['rubric'][0]!r}, overlap {q['overlap']}, next {q['policy']}")
                return 0
            if args.next != "fewest":
                raise CLIError("--next uncertain: only for a --pairwise queue (it ranks pairs by a Bradley-Terry fit)")
            q = jq.create_queue(store, args.name, rubric, overlap=args.overlap, low=args.low, high=args.high,
                                task_timeout_s=args.timeout, created_by=_annotator(args), open_items=args.open_items)
            print(f"queue {q['name']}: {len(q['rubric'])} criteria, overlap {q['overlap']}, scale "
                  f"{q['low']:g}-{q['high']:g}" + (", open items" if args.open_items else ""))
        elif args.queue_action == "add":
            if args.all_pairs or args.pairs or args.source_pairs is not None:
                from studio.cli.judge_pairs import add_pairs

                return add_pairs(args, store)
            refs = list(args.refs or [])
            if args.sample:
                refs += cal.sample_refs(store, args.sample, seed=args.seed, kind=args.kind, status=args.status)
            if args.r2_waiting:
                from core.judging.feed import waiting_refs

                refs += waiting_refs(store)
            if not refs:
                raise CLIError("judge queue add: name drafts (traj:ID or r2:RUN_ID:VERSION), give --sample N, or "
                                 "--r2-waiting (none waits now)")
            new, dup = jq.add_items(store, args.name, refs, added_by=_annotator(args))
            print(f"queue {args.name}: {len(new)} item(s) added, {dup} already there")
        else:  # status
            names = [args.name] if args.name else [q["name"] for q in jq.list_queues(store)]
            rows = [jq.progress(store, n) for n in names]
            if args.json:
                for r in rows:
                    _print(r)
                return 0
            if not rows:
                print("no judging queues; create one with `palimpsest judge queue create NAME`", file=sys.stderr)
            for r in rows:
                print(f"{r['queue']}: {r['items']} item(s), overlap {r['overlap']}: {r['judgments']}/{r['needed']} "
                      f"judgments ({r['percent']:g}%), {r['complete']} complete, {r['open_tasks']} task(s) out")
                for name, a in sorted(r["annotators"].items()):
                    print(f"  {name}: {a['judged']} judged, {a['open']} open")
                for name, n in sorted(r["models"].items()):
                    print(f"  {name}: {n} judged (not counted towards the overlap)")
    return 0


# ---- judging -------------------------------------------------------------------------------------

def _submission(args) -> dict:
    """The judgment to submit: from --input (a file, or - for stdin: one JSON object with item_id,
    scores, overall, critique, note) and/or flags (flags win)."""
    data: dict = {}
    if args.input:
        text = sys.stdin.read() if args.input == "-" else None
        if text is None:
            p = Path(args.input)
            if not p.is_file():
                raise CLIError(f"--input {args.input}: no such file")
            text = p.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"--input {args.input}: not JSON ({exc.msg} at line {exc.lineno}); give one object "
                             '{"item_id": N, "scores": {"1": 7}, "overall": 7, "note": "..."}') from None
        if not isinstance(data, dict):
            raise CLIError(f"--input {args.input}: give one JSON object, not {type(data).__name__}")
        unknown = set(data) - {"item_id", "scores", "overall", "critique", "note"}
        if unknown:
            raise CLIError(f"--input {args.input}: unknown field(s) {sorted(unknown)}; use item_id, scores, overall, "
                             "critique, note")
    item = args.item if args.item is not None else data.get("item_id")
    if isinstance(item, bool) or not isinstance(item, int):
        raise CLIError("judge submit: give the item id (ITEM, or item_id in --input)")
    scores = data.get("scores") or {}
    if not isinstance(scores, dict):
        raise CLIError("judge submit: scores must be an object {criterion number or text: score}")
    scores = {**scores, **_scores(args.score, CLIError)}
    overall = args.overall if args.overall is not None else data.get("overall")
    return {"item": item, "scores": scores, "overall": overall, "critique": args.critique or data.get("critique") or "",
            "note": args.note or data.get("note") or ""}


def cmd_next(args) -> int:
    from core.judging import queue as jq

    with _store(args) as store:
        if jq.get_queue(store, args.queue).get("kind") == "pairwise":
            from core.judging.pairwise import next_pair

            task = next_pair(store, args.queue, _annotator(args))
        else:
            task = jq.next_task(store, args.queue, _annotator(args))
    _print({"task": task.as_dict() if task else None})
    if task is None:
        print(f"nothing left for you in queue {args.queue}", file=sys.stderr)
    return 0


def cmd_submit(args) -> int:
    from core.judging import queue as jq

    if args.prefer is not None:
        from core.judging.pairwise import submit_pair

        if args.item is None:
            raise CLIError("judge submit --prefer: give the item id")
        name = _annotator(args)
        with _store(args) as store:
            jid = submit_pair(store, args.item, name, args.prefer, note=args.note or "")
        _print({"judgment_id": jid, "item_id": args.item, "annotator": name, "prefer": args.prefer})
        return 0
    sub = _submission(args)
    name = _annotator(args)
    with _store(args) as store:
        jid = jq.submit(store, sub["item"], name, sub["scores"], sub["overall"], critique=sub["critique"],
                        note=sub["note"])
        mine = next(j for j in jq.judgments(store, sub["item"], name) if j["id"] == jid)
    _print({"judgment_id": jid, "item_id": sub["item"], "annotator": name, "scores": mine["scores"],
            "overall": mine["overall"]})
    return 0


def cmd_skip(args) -> int:
    from core.judging import queue as jq

    with _store(args) as store:
        held = jq.release(store, args.item, _annotator(args))
    print(f"item {args.item}: " + ("given back to the queue" if held else "you held no task on it"))
    return 0


def cmd_show(args) -> int:
    from core.judging import agreement as ag
    from core.judging import queue as jq

    name = _annotator(args)
    if args.lead:
        _require_lead(args, name)
    with _store(args) as store:
        item = jq.get_item(store, args.item)
        js = jq.judgments(store, args.item, name, as_lead=args.lead)
        res = ag.resolutions(store, args.item)
    _print({"item": item, "judgments": js, "resolutions": res})
    return 0


def _require_lead(args, name: str) -> None:
    """A one-line error unless `name` has the lead role in the users file (--users, $PALIMPSEST_USERS
    or ~/.config/palimpsest/users)."""
    from studio.cli.users import default_users_file
    from studio.users import LEAD, UsersFileError, read_users

    path = args.users or default_users_file()
    try:
        users = read_users(path)
    except UsersFileError as exc:
        raise CLIError(f"--lead needs {name} to be a lead in the users file: {exc}") from None
    if name not in users or users[name].role != LEAD:
        raise CLIError(f"--lead: {name} is not a lead in {path}; a lead is marked there with `palimpsest users add "
                         f"{name} --lead --file {path}` (or read the item after submitting your own judgment)")


def cmd_agreement(args) -> int:
    from core.judging import agreement as ag
    from core.judging import queue as jq

    with _store(args) as store:
        if jq.get_queue(store, args.queue).get("kind") == "pairwise":
            raise CLIError(f"judge agreement {args.queue}: a pairwise queue has choices, not scores; see "
                             f"`judge ranking {args.queue}`, and `judge calibrate {args.queue} --report-only` for "
                             "person-vs-person agreement beside a model judge's")
        rep = ag.report(store, args.queue)
        rows = ag.disagreements(store, args.queue, args.min_spread) if args.disagreements else None
    if args.json:
        _print(rep if rows is None else {**rep, "disagreements": rows})
        return 0
    print("\n".join(ag.card_lines(rep)))
    for r in rep["criteria"] + [rep["overall"]]:
        if r["alpha"] is None and r["why"]:
            print(f"alpha of {r['criterion'][:50]!r}: n/a ({r['why']})", file=sys.stderr)
    if rows is not None:
        print(f"\n{len(rows)} item(s) with a spread of at least {args.min_spread if args.min_spread is not None else 'a third of the scale'}:")
        for r in rows:
            print(f"  item {r['item_id']} ({r['ref']}): overall spread {r['spread']:g}, widest {r['worst'][0][:40]!r} "
                  f"{r['worst'][1]:g}; {r['scores']}{' [resolved]' if r['resolved'] else ''}")
    return 0


def cmd_resolve(args) -> int:
    from core.judging import agreement as ag

    with _store(args) as store:
        rid = ag.resolve(store, args.item, _annotator(args), overall=args.overall,
                         scores=_scores(args.score, CLIError), note=args.note or "")
    print(f"item {args.item}: resolution {rid} saved")
    return 0


def cmd_feed(args) -> int:
    from core.judging.feed import feed

    with _store(args) as store:
        seq = feed(store, args.item, by=_annotator(args))
    print(f"item {args.item}: the people's judgment went to its R2 run (event {seq}); resume the run to go on")
    return 0


def cmd_calibrate(args) -> int:
    from core.judging import calibration as cal
    from core.annotators import model_name

    by = _annotator(args)
    with _store(args) as store:
        known = {q["name"]: q for q in cal.jq.list_queues(store)}
        if known.get(args.queue, {}).get("kind") == "pairwise":
            from studio.cli.judge_pairs import calibrate_pairs

            return calibrate_pairs(args, store)
        refs = list(args.refs or [])
        if args.sample:
            refs += cal.sample_refs(store, args.sample, seed=args.seed, kind=args.kind, status=args.status)
        if refs:  # none: only the report, from the judgments stored
            from core.r2.judge import JudgeConfig

            known = {q["name"]: q for q in cal.jq.list_queues(store)}
            low, high = (known[args.queue]["low"], known[args.queue]["high"]) if args.queue in known else (1, 10)
            cfg = JudgeConfig(low=low, high=high, method=args.method)
            lm = load_model(args.model)
            for step in cal.iter_calibrate(store, lm, args.model, args.queue, refs, cfg=cfg, overlap=args.overlap,
                                           rubric=args.criterion or None, seed=args.seed, by=by):
                got = f"overall {step.overall:g}" if step.overall is not None else f"unparsed ({step.error})"
                print(f"[{step.done}/{step.total}] {step.ref}: {got}", file=sys.stderr)
        rep = cal.report(store, args.queue, model_name(args.model))
    if args.json:
        _print(rep)
        return 0
    print(f"{rep['model']} on queue {rep['queue']}: {rep['judged_by_model']} draft(s) judged, {rep['unparsed']} unparsed; "
          f"vs the people's {rep['consensus']}:")
    for r in rep["criteria"] + [rep["overall"]]:
        print(f"  {r['criterion'][:60]}: n {r['n']}, Spearman {_fmt(r['spearman'])} {_ci(r['spearman_ci'])}, "
              f"Kendall {_fmt(r['kendall'])} {_ci(r['kendall_ci'])}, "
              f"bias {_fmt(r['bias'])}")
    if rep["overall"]["n"] == 0:
        print(f"no draft is judged by both the model and people yet: people take them with `palimpsest judge next "
              f"{args.queue}`; then `palimpsest judge calibrate {args.queue} --model {args.model}` (no drafts) reports",
              file=sys.stderr)
    return 0


# ---- wiring --------------------------------------------------------------------------------------

def add_judge_parser(sub, default_db: str) -> None:
    """Register `judge ...` on the `palimpsest` subparsers."""
    from studio.cli import judge_pairs

    db_help = DB_HELP
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=default_db, help=db_help)
    common.add_argument("--annotator", default=None, metavar="NAME", help=ANNOTATOR_HELP)
    j = sub.add_parser("judge", help="judging queues: annotators, overlap, agreement, model judge calibration",
                       description="Drafts (trajectories as traj:ID, R2 texts as r2:RUN_ID:VERSION) are put in a "
                                   "queue with a rubric; each is handed to --overlap people, and nobody sees another's "
                                   "scores before submitting their own. See docs/judging.md.")
    js = j.add_subparsers(dest="action", required=True)

    q = js.add_parser("queue", help="create a queue, add drafts to it, see its progress")
    qs = q.add_subparsers(dest="queue_action", required=True)
    c = qs.add_parser("create", parents=[common], help="a new queue with a rubric and an overlap")
    c.add_argument("name", help="the queue's name")
    c.add_argument("--criterion", action="append", help="a criterion of the rubric (repeat; default: the R2 judge's "
                                                         "default rubric)")
    c.add_argument("--rubric-file", help="a text file, one criterion per line")
    c.add_argument("--overlap", type=int, default=2, help="how many people judge each item (default 2)")
    c.add_argument("--open-items", action="store_true", help="anyone may submit any item by its id, handed out "
                                                             "or not (default: only items `judge next` handed them)")
    c.add_argument("--pairwise", action="store_true", help="a queue of pairs: each person says which of two drafts "
                                                           "is better (or a tie); --criterion is the question asked")
    c.add_argument("--next", choices=["fewest", "uncertain"], default="fewest",
                   help="--pairwise: which pair to hand out: fewest judgments first (default) or the one the current "
                        "Bradley-Terry fit is least sure of")
    c.add_argument("--seed", type=int, default=0, help="--pairwise: seed of which draft is shown first (default 0)")
    c.add_argument("--low", type=float, default=1, help="lowest score (default 1)")
    c.add_argument("--high", type=float, default=10, help="highest score (default 10)")
    c.add_argument("--timeout", type=float, default=1800, help="seconds a handed-out task is held before it goes back "
                                                               "to the queue (default 1800)")
    a = qs.add_parser("add", parents=[common], help="put drafts in a queue")
    a.add_argument("name", help="the queue")
    a.add_argument("refs", nargs="*", help="drafts, right after the queue: traj:ID (or ID) or r2:RUN_ID:VERSION")
    a.add_argument("--sample", type=int, help="also add N trajectories picked at random (seeded)")
    a.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    a.add_argument("--kind", choices=["reer", "r2", "import"], help="--sample only trajectories of this kind")
    a.add_argument("--status", choices=["pending", "accepted", "rejected"], help="--sample only this review status")
    a.add_argument("--r2-waiting", action="store_true", help="also add every R2 text a paused run waits to have judged "
                                                             "(then `judge feed ITEM` hands the people's judgment back)")
    a.add_argument("--all-pairs", nargs="+", metavar="REF", help="pairwise queue: every pair of these drafts")
    a.add_argument("--pairs", nargs="+", metavar="A,B", help="pairwise queue: these pairs of drafts")
    a.add_argument("--source-pairs", nargs="*", metavar="SOURCE",
                   help="pairwise queue: for every prompt, every pair of its drafts of different sources (reer, r2, "
                        "import or an export's source; only these sources when named)")
    st = qs.add_parser("status", parents=[common], help="progress per queue and per annotator")
    st.add_argument("name", nargs="?", help="the queue (default: every queue)")
    st.add_argument("--json", action="store_true", help="one JSON object per queue")
    q.set_defaults(func=cmd_queue)

    n = js.add_parser("next", parents=[common], help="your next task, as one JSON object ({\"task\": null} when none)")
    n.add_argument("queue", help="the queue")
    n.set_defaults(func=cmd_next)

    s = js.add_parser("submit", parents=[common], help="submit your judgment of an item (JSON out)")
    s.add_argument("item", type=int, nargs="?", help="the item id (or item_id in --input)")
    s.add_argument("--score", action="append", metavar="N=SCORE", help="a criterion's score, by its number (repeat)")
    s.add_argument("--overall", type=float, help="the overall score (default: the mean when every criterion is scored)")
    s.add_argument("--prefer", choices=["first", "second", "tie"], help="pairwise queue: the draft you prefer, in "
                                                                      "the order `judge next` showed them")
    s.add_argument("--critique", help="what should change")
    s.add_argument("--note", help="a note")
    s.add_argument("--input", metavar="FILE", help="read the judgment from a JSON file (- for stdin): {\"item_id\", "
                                                   "\"scores\", \"overall\", \"critique\", \"note\"}; flags win")
    s.set_defaults(func=cmd_submit)

    k = js.add_parser("skip", parents=[common], help="give a task back unjudged")
    k.add_argument("item", type=int, help="the item id")
    k.set_defaults(func=cmd_skip)

    sh = js.add_parser("show", parents=[common], help="an item and its judgments (once you have submitted yours)")
    sh.add_argument("item", type=int, help="the item id")
    sh.add_argument("--lead", action="store_true", help="read every judgment without judging (a lead resolving it); "
                                                        "needs the lead role in the users file")
    sh.add_argument("--users", metavar="FILE", help="the users file that says who is a lead (default $PALIMPSEST_USERS "
                                                    "or ~/.config/palimpsest/users)")
    sh.set_defaults(func=cmd_show)

    g = js.add_parser("agreement", parents=[common], help="Krippendorff's alpha and pairwise agreement of a queue")
    g.add_argument("queue", help="the queue")
    g.add_argument("--disagreements", action="store_true", help="also list the items people disagree on most")
    g.add_argument("--min-spread", type=float, help="spread of scores that counts as a disagreement (default: a "
                                                    "third of the scale)")
    g.add_argument("--json", action="store_true", help="the report as one JSON object")
    g.set_defaults(func=cmd_agreement)

    r = js.add_parser("resolve", parents=[common], help="resolve a disagreement: the lead's judgment and/or a note")
    r.add_argument("item", type=int, help="the item id")
    r.add_argument("--overall", type=float, help="the lead's overall score")
    r.add_argument("--score", action="append", metavar="N=SCORE", help="the lead's score of a criterion (repeat)")
    r.add_argument("--note", help="a discussion note")
    r.set_defaults(func=cmd_resolve)

    f = js.add_parser("feed", parents=[common], help="hand the people's judgment of an r2: item to its waiting run")
    f.add_argument("item", type=int, help="the item id")
    f.set_defaults(func=cmd_feed)

    rk = js.add_parser("ranking", parents=[common], help="Bradley-Terry ranking of a pairwise queue with 95%% "
                                                         "bootstrap intervals")
    rk.add_argument("queue", help="the pairwise queue")
    rk.add_argument("--by", choices=["draft", "source"], default="draft", help="rank drafts (default) or their sources")
    rk.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of the judgments (default 200)")
    rk.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    rk.add_argument("--json", action="store_true", help="the ranking as one JSON object")
    rk.set_defaults(func=judge_pairs.cmd_ranking)

    sm = js.add_parser("simulate", help="seeded simulation: judgments each next-pair policy needs to recover a "
                                        "known order")
    sm.add_argument("--items", type=int, default=6, help="drafts to rank (default 6)")
    sm.add_argument("--spread", type=float, default=5.0, help="true log-strengths span this, evenly spaced (default 5)")
    sm.add_argument("--noise", type=float, default=0.2, help="chance a simulated person tosses a coin (default 0.2)")
    sm.add_argument("--overlap", type=int, default=10, help="most judgments per pair (default 10)")
    sm.add_argument("--runs", type=int, default=20, help="simulated studies per policy (default 20)")
    sm.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    sm.add_argument("--json", action="store_true", help="the curves as one JSON object")
    sm.set_defaults(func=judge_pairs.cmd_simulate)

    from core.models.lm import DEFAULT_MODEL

    cb = js.add_parser("calibrate", parents=[common], help="a model judge on drafts, queued for people; its "
                                                           "correlation with them (on a pairwise queue: its "
                                                           "choices in both orders against the people's majority)")
    cb.add_argument("queue", help="the queue (created when new)")
    cb.add_argument("refs", nargs="*", help="drafts to judge, right after the queue: traj:ID (or ID) or r2:RUN_ID:VERSION; "
                                            "none (and no --sample): only report on the judgments stored")
    cb.add_argument("--model", default=DEFAULT_MODEL, help="the model judge's spec (stored as annotator model:SPEC)")
    cb.add_argument("--sample", type=int, help="also judge N trajectories picked at random (seeded)")
    cb.add_argument("--seed", type=int, default=0, help="seed of --sample and of the judge (default 0)")
    cb.add_argument("--kind", choices=["reer", "r2", "import"], help="--sample only trajectories of this kind")
    cb.add_argument("--status", choices=["pending", "accepted", "rejected"], help="--sample only this review status")
    cb.add_argument("--method", choices=["generate", "logprob", "auto"], default="generate",
                    help="how the judge's scores are read (as `r2 run --judge-method`): generate = its written scores; "
                         "logprob = expected score from its log-probs (small judges that break the format); auto = "
                         "generate, then logprob when nothing parses")
    cb.add_argument("--overlap", type=int, default=None, help="people per draft when the queue is new (default 2)")
    cb.add_argument("--criterion", action="append", help="the rubric when the queue is new (repeat; default: the R2 "
                                                          "judge's)")
    cb.add_argument("--report-only", action="store_true", help="pairwise queue: only report on the model's "
                                                                "choices stored (default: ask it about every pair)")
    cb.add_argument("--json", action="store_true", help="the report as one JSON object")
    cb.set_defaults(func=cmd_calibrate)
