"""`palimpsest r2 run`: the R2 writer-judge loop over a file of tasks, one JSON line per item.

Thin, and the mirror of studio/cli/reer.py: its flags are generated from R2Config
(core.settings), it loads the writer and judge (once, and once only when both name the same
spec), runs core.r2.jobs.r2_items through the shared batch loop (studio/cli/batch.py) and writes
each item's record, exactly the trajectory's stored `details`. Every event is saved in --db as it happens, so a
rerun skips finished items and resumes an interrupted one. The CLI judges with a model; runs
that a person judges (`--judge-mode human` or `model_then_human`) pause at each judgment:
`palimpsest r2 judge` shows the waiting text (and the model's proposal) and stores a person's
judgment, an override, or `--accept` of the proposal; rerunning `r2 run` then continues.
"""
from __future__ import annotations

import json
import sys

from studio.cli.batch import CONCURRENCY_HELP, INPUT_HELP
from studio.cli.common import CLIError
from studio.cli.common import load_model as _load_model


def load_model(spec: str):
    """The model for `spec` from the process's shelf: writer and judge of one spec load once."""
    return _load_model(spec)


def cmd_r2(args) -> int:
    from core.outputs import check_file_out
    from core.r2.config import R2Config
    from core.r2.jobs import r2_items
    from core.settings import from_args
    from studio.cli.batch import (
        concurrency_for,
        join_specs,
        open_store,
        read_items,
        run_batch,
    )

    cfg = from_args(R2Config, args)
    args.out = str(check_file_out(args.out, {"--input": args.input, "--db": args.db}))  # before any work
    items = read_items(args.input, args.limit)
    store = open_store(args.db)
    writer, judge = join_specs(args.writer, "--writer"), join_specs(args.judge, "--judge")
    concurrency = concurrency_for(args.concurrency, [writer, judge])
    loaded: dict = {}

    def get_lms():
        if not loaded:
            loaded["w"] = load_model(writer)
            loaded["j"] = loaded["w"] if judge == writer else load_model(judge)
        return loaded["w"], loaded["j"]

    def postfix(item, event) -> dict:
        stage = {"r2_started": "plan", "r2_drafted": "draft",
                 "judgment_given": f"judged v{getattr(event, 'version', '')}",
                 "r2_reflected": "reflect", "r2_revised": "revise", "r2_round_finished": "round done"}
        return {"item": item.id[-24:], "round": getattr(event, "round", None) or "",
                "step": stage.get(event.kind, event.kind)}

    def line(o) -> str:
        if o.status == "paused":
            return f"{o.item.id}: waits for a person's judgment (run {o.run_id}); not written"
        r = o.record
        path = " -> ".join(_score(x) for x in [r["initial_overall"]] + [
            (rd["revision_judgment"] or {}).get("overall") for rd in r["rounds"]])
        was = "already in the store" if o.status == "cached" else f"{r['seconds']:.0f} s"
        return (f"{o.item.id}: overall {path} (final {_score(r['final_overall'])}), {len(r['rounds'])} round(s), "
                f"{r['finish_reason']}; {was}")

    try:
        status, counts = run_batch(
            "r2", items,
            lambda on_event: r2_items(store, items, cfg, writer, judge, get_lms, source=str(args.input),
                                      on_event=on_event, concurrency=concurrency),
            out=args.out, db=args.db, progress=args.progress, postfix=postfix, line=line,
            statuses=("done", "cached", "paused", "failed"), concurrency=concurrency)
    finally:
        store.close()
    if status != 130:
        print(f"wrote {counts['done'] + counts['cached']} record(s) to {args.out}: {counts['done']} run, "
              f"{counts['cached']} already finished in {args.db}, {counts['paused']} waiting for a person, "
              f"{counts['failed']} failed", file=sys.stderr)
    return status


def cmd_r2_judge(args) -> int:
    from core import annotators as who
    from core.r2.jobs import (
        NoPendingJudgment,
        accept_proposed,
        pending_request,
        submit_judgment,
    )
    from core.r2.judge import BadJudgment, Judgment, human_judgment, override_judgment
    from core.store import NotFound, StoreError, open_store

    try:  # who judges: --annotator, else the OS user; recorded on the judgment (Judgment.annotator)
        person = who.clean(args.annotator, where="--annotator") if args.annotator is not None else who.os_user()
    except who.BadAnnotator as exc:
        raise CLIError(str(exc)) from None
    try:
        store = open_store(args.db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    try:
        if args.run is None:
            waiting = store.list_runs(kind="r2", status="paused")
            for run in waiting:
                req = pending_request(store, run["id"])
                if req is not None:
                    print(f"{run['id']}  prompt {run['prompt_id']}  version {req.version}")
            if not waiting:
                print("no R2 run waits for a judgment", file=sys.stderr)
            return 0
        req = pending_request(store, args.run)
        if req is None:
            raise CLIError(f"run {args.run} is not waiting for a judgment")
        if args.version is not None and args.version != req.version:
            raise CLIError(f"run {args.run} waits for a judgment of version {req.version}, not --version "
                           f"{args.version}; nothing was stored: read it first (`palimpsest r2 judge --run {args.run}`)")
        if args.accept:
            accept_proposed(store, args.run, req.version)
        elif args.overall is not None or args.critique is not None or args.score:
            scores = dict(_pair(p) for p in args.score)
            rubric = store.events(args.run)[0].rubric
            if any(not 1 <= i <= len(rubric) for i in scores):
                raise CLIError(f"--score: criterion numbers go from 1 to {len(rubric)}")
            scores = {rubric[i - 1]: s for i, s in scores.items()}
            if req.proposed is not None:
                j = override_judgment(Judgment.from_dict(req.proposed), overall=args.overall, critique=args.critique,
                                      scores=scores, note=args.note, annotator=person)
            elif args.overall is None or args.critique is None:
                raise CLIError("with no model proposal to edit, give both --overall and --critique")
            else:
                j = human_judgment(rubric, args.overall, args.critique, scores, note=args.note, annotator=person)
            submit_judgment(store, args.run, j, req.version)
        else:
            print(json.dumps({"run": args.run, "version": req.version, "text": req.text, "proposed": req.proposed},
                             ensure_ascii=False, indent=1))
            return 0
        print(f"judgment stored for run {args.run} version {req.version}; run `palimpsest r2 run` again to go on",
              file=sys.stderr)
        return 0
    except (BadJudgment, NoPendingJudgment, NotFound) as exc:
        raise CLIError(str(exc)) from None
    finally:
        store.close()


def _pair(text: str) -> tuple[int, float]:

    try:
        i, s = text.split("=", 1)
        return int(i), float(s)
    except ValueError:
        raise CLIError(f"--score {text!r}: write CRITERION_NUMBER=SCORE, e.g. --score 2=7") from None


def _score(x) -> str:
    return "unparsed" if x is None else f"{x:g}"


def add_r2_parser(sub, default_db: str) -> None:
    """Register `r2 run` and `r2 judge` on the top-level subparsers (called from
    studio.cli.main.build_parser); `r2 run`'s loop settings are R2Config's fields (the judge's
    under --judge-, the reward's under --reward-)."""
    from core.r2.config import R2Config
    from core.settings import add_arguments

    r = sub.add_parser("r2", help="R2: writer drafts, judge critiques, writer reflects and revises")
    rsub = r.add_subparsers(dest="action", required=True)
    rr = rsub.add_parser("run", help="run (or resume) R2 on every item of a file; one JSON line per item",
                         description="Every event is saved in --db as it happens: items already finished with "
                                     "the same settings and models are not run again (their records are still "
                                     "written), and an interrupted item resumes where it stopped. The rubric is "
                                     "each item's 'checklists'/'rubric' when present, else a default writing rubric.")
    rr.add_argument("--input", required=True, help=INPUT_HELP + "; a 'checklists'/'rubric' field is the rubric")
    rr.add_argument("--out", required=True, help="output JSONL, one record per item; written as OUT.partial as items "
                                                 "finish and renamed to OUT at the end (also on Ctrl-C or an error), "
                                                 "so OUT is never half-written; after a kill, OUT is as it was and "
                                                 "every finished item is in --db (rerun to write them)")
    rr.add_argument("--writer", action="append", default=None,
                    help="writer model spec (alias, folder, hub id or server URL; default smollm2-135m); repeat it "
                         "with server URLs of replicas serving one model to spread the requests over them")
    rr.add_argument("--judge", action="append", default=None,
                    help="judge model spec (default smollm2-135m; a larger model or a vLLM server judges far better "
                         "than the built-in 135M one); repeatable like --writer")
    rr.add_argument("--limit", type=int, default=None, help="only the first N items")
    rr.add_argument("--db", default=default_db, help="SQLite store (default $PALIMPSEST_DB or "
                                                     "~/.local/share/palimpsest/palimpsest.db)")
    rr.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    rr.add_argument("--concurrency", type=int, default=None, metavar="N", help=CONCURRENCY_HELP)
    loop = rr.add_argument_group("loop settings (R2Config)")
    # review_reflections pauses for a person's edit, which only the studio offers
    flags = add_arguments(loop, R2Config, skip=("review_reflections",),
                          nested={"judge": {"prefix": "judge-"}, "reward": {"prefix": "reward-"}})
    rr.set_defaults(func=cmd_r2, setting_flags=flags)

    rj = rsub.add_parser("judge", help="list runs waiting for a person, show one, or store a judgment for it")
    rj.add_argument("--db", default=default_db, help="SQLite store")
    rj.add_argument("--run", default=None, help="the run id (omit to list the runs waiting)")
    rj.add_argument("--accept", action="store_true", help="let the model's proposed judgment stand")
    rj.add_argument("--overall", type=float, default=None, help="overall score (1-10)")
    rj.add_argument("--critique", default=None, help="what should change")
    rj.add_argument("--score", action="append", default=[], help="a criterion's score as NUMBER=SCORE (repeatable)")
    rj.add_argument("--note", default="", help="why (free text, kept with the judgment)")
    rj.add_argument("--version", type=int, default=None,
                    help="the version you judged (shown with the text); refused when another version waits")
    rj.add_argument("--annotator", default=None, metavar="NAME",
                    help="who is judging (default: the OS user); recorded on the judgment")
    rj.set_defaults(func=cmd_r2_judge)
