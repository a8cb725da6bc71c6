"""`palimpsest reer run`: the REER search over a file of query/reference items, one JSON line per item.

Thin, and the mirror of studio/cli/r2.py: its flags are generated from ReerConfig (core.settings),
it loads the model once and only when some item needs a search, runs core.reer.jobs.reer_items
through the shared batch loop (studio/cli/batch.py: bar, output file, counts, exit status) and
writes each item's record. `--scorer SPEC` (a ReerConfig setting) scores with another model than
the one that writes; it is loaded first, and a scorer that cannot score the --template is refused in
one line before anything is generated. Every event is saved in --db as it happens, so a rerun skips
finished items and resumes an interrupted one. Does not know how the search works.
"""
from __future__ import annotations

import sys

from studio.cli.batch import CONCURRENCY_HELP, INPUT_HELP
from studio.cli.common import load_model


def cmd_reer(args) -> int:
    from core.outputs import check_file_out
    from core.reer.config import ReerConfig
    from core.reer.jobs import reer_items
    from core.settings import from_args
    from studio.cli.batch import (
        concurrency_for,
        join_specs,
        num,
        open_store,
        read_items,
        run_batch,
    )

    cfg = from_args(ReerConfig, args)
    args.out = str(check_file_out(args.out, {"--input": args.input, "--db": args.db}))  # before any work
    items = read_items(args.input, args.limit)
    store = open_store(args.db)
    model = join_specs(args.model, "--model")  # the name a loaded LM carries (core.models.load.load_lm)
    if cfg.scorer.strip() == model:  # the model scoring itself: a one-model run, matching those stored before
        import dataclasses

        cfg = dataclasses.replace(cfg, scorer="")
    concurrency = concurrency_for(args.concurrency, [model])
    loaded = []

    def get_lm():
        if not loaded:
            loaded.append(load_model(model))
        return loaded[0]

    def get_scorer():  # --scorer: loaded (and checked, core.reer.jobs.check_scorer) before the writer
        return load_model(cfg.scorer.strip())

    def postfix(item, event) -> dict:
        post = {"item": item.id[-32:]}
        if event.kind in ("run_started", "initial_draft"):
            post["step"] = "draft" if event.kind == "run_started" else f"0/{cfg.max_steps}"
        elif hasattr(event, "step"):
            post["step"] = f"{event.step}/{cfg.max_steps}"
        if isinstance(getattr(event, "score", None), dict) and event.kind != "candidate_scored":
            post["score"] = f"{event.score['score']:.4f}"
        return post

    def line(o) -> str:
        r = o.record
        was = "already in the store" if o.status == "cached" else f"{r['timings']['active_seconds']:.0f} s"
        return (f"{o.item.id}: score {num(r['initial_score'])} -> {num(r['final_score'])} "
                f"(ppl {num(r['initial_ppl'], 2)} -> {num(r['final_ppl'], 2)}), {len(r['steps'])} step(s), "
                f"{r['finish_reason']}, filters {'passed' if r['filters'].get('passed') else 'failed'}; {was}")

    try:
        status, counts = run_batch(
            "reer", items,
            lambda on_event: reer_items(store, items, cfg, model, get_lm, source=str(args.input), on_event=on_event,
                                        concurrency=concurrency, get_scorer=get_scorer),
            out=args.out, db=store.path or args.db, progress=args.progress, postfix=postfix, line=line,
            concurrency=concurrency)
    finally:
        store.close()
    if status != 130:
        print(f"wrote {counts['done'] + counts['cached']} record(s) to {args.out}: {counts['done']} searched, "
              f"{counts['cached']} already finished in {args.db}, {counts['failed']} failed", file=sys.stderr)
    return status


def add_reer_parser(sub, default_db: str) -> None:
    """Register `reer run` on the top-level subparsers (called from studio.cli.main.build_parser);
    its search settings are ReerConfig's fields (quality filters under --quality-)."""
    from core.reer.config import ReerConfig
    from core.settings import add_arguments

    r = sub.add_parser("reer", help="REER: reverse-engineer thinking trajectories for query/reference pairs")
    rsub = r.add_subparsers(dest="action", required=True)
    rr = rsub.add_parser("run", help="run (or resume) REER on every item of a file; one JSON line per item",
                         description="Every event is saved in --db as it happens: items already finished with "
                                     "the same settings and model are not searched again (their records are "
                                     "still written), and an interrupted item resumes where it stopped.")
    rr.add_argument("--input", required=True, help=INPUT_HELP)
    rr.add_argument("--out", required=True, help="output JSONL, one record per item; written as OUT.partial as items "
                                                 "finish and renamed to OUT at the end (also on Ctrl-C or an error), "
                                                 "so OUT is never half-written; after a kill, OUT is as it was and "
                                                 "every finished item is in --db (rerun to write them)")
    rr.add_argument("--model", action="append", default=None,
                    help="model spec (alias, folder, hub id or server URL; default smollm2-135m); repeat it with "
                         "server URLs of replicas serving one model to spread the items over them (the same as one "
                         "spec listing the URLs with commas, docs/serving.md)")
    rr.add_argument("--limit", type=int, default=None, help="only the first N items")
    rr.add_argument("--db", default=default_db, help="SQLite store (default $PALIMPSEST_DB or "
                                                     "~/.local/share/palimpsest/palimpsest.db)")
    rr.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    rr.add_argument("--concurrency", type=int, default=None, metavar="N", help=CONCURRENCY_HELP)
    search = rr.add_argument_group("search settings (ReerConfig)")
    flags = add_arguments(search, ReerConfig, nested={"quality": {"prefix": "quality-"}})
    rr.set_defaults(func=cmd_reer, setting_flags=flags)
