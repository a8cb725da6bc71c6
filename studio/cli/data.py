"""`palimpsest import`, `palimpsest review ...` and `palimpsest export`: the library from the shell.

Thin: parses arguments, calls core.data.imports, core.data.curation and core.export, prints. Registered by
studio.cli.main.build_parser through `add_commands`. A user error is one line on stderr and exit
status 2 (studio.cli.main.main prints studio.cli.common.CLIError); bad records of an import are listed one per line
(file:line field: reason) and the good ones are still imported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from studio.cli.common import DB_HELP, CLIError


@contextmanager
def _store(path: str, error: type[Exception]):
    from core.store import StoreError, open_store

    # the CLI prints its own summary; datasets' per-file progress bars are noise here (set, not
    # imported: importing datasets costs a read-only command over a second)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    try:
        store = open_store(path)
    except StoreError as exc:
        raise error(str(exc)) from None
    try:
        yield store
    except StoreError as exc:  # NotFound, BadValue, ImportFailed, ExportError: one readable line
        raise error(str(exc)) from None
    finally:
        store.close()


# ---- import ----------------------------------------------------------------------------------

def cmd_import(args) -> int:
    from core.data.imports import import_files

    with _store(args.db, CLIError) as store:
        report = import_files(store, args.files, format=args.format)
    for p in report.problems:
        print(f"skipped {p}", file=sys.stderr)
    for path, c in report.files.items():
        print(f"{path}: {c.read} good record(s): {c.prompts} new prompt(s), {c.trajectories} trajectory(ies), "
              f"{c.duplicates} duplicate(s); {c.skipped} skipped", file=sys.stderr)
    print(report.summary() + f" into {args.db}")
    if report.total("read") == 0 and report.problems:
        raise CLIError(f"nothing imported: every record or file was rejected ({len(report.problems)} problem(s) above)")
    stopped = [path for path, c in report.files.items() if c.stopped]
    if stopped:  # the good records before the problem are stored; a rerun counts them as duplicates
        raise CLIError(f"{', '.join(stopped)}: reading stopped at the problem above, so the rest of the file is "
                         "not imported; fix the file and import it again (what is stored counts as duplicates)")
    return 0


# ---- review ----------------------------------------------------------------------------------

def _short(text: str, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cmd_review(args) -> int:
    from core.data import curation as cur
    from core import annotators as who

    try:  # every act below records who did it (--annotator, default the OS user)
        name = who.clean(args.annotator, where="--annotator") if args.annotator is not None else who.os_user()
    except who.BadAnnotator as exc:
        raise CLIError(str(exc)) from None
    with _store(args.db, CLIError) as store, who.acting_as(name):
        a = args.action
        if a == "list":
            flt = cur.TrajectoryFilter(status=args.status, kind=args.kind, source=args.source, min_score=args.min_score,
                                       max_score=args.max_score, min_judge=args.min_judge, max_judge=args.max_judge,
                                       min_chars=args.min_chars, max_chars=args.max_chars,
                                       passed_filters=args.passed, tags=tuple(args.tag or ()), search=args.search,
                                       limit=args.limit)
            rows = cur.list_trajectories(store, flt)
            if args.json:
                for r in rows:
                    print(json.dumps({k: r.get(k) for k in ("id", "prompt_id", "kind", "source", "status", "rating",
                                                            "tags", "scale", "reer_score", "judge_score", "final_score",
                                                            "final_ppl", "version")}))
                return 0
            print(f"{'id':>5} {'status':9} {'source':8} {'REER↓':>7} {'judge↑':>6} {'rating':>6} {'v':>2}  {'chars':>6}  "
                  "tags / query")
            for r in rows:
                q = store.get_prompt(r["prompt_id"])["query"] if r.get("prompt_id") else ""
                reer = f"{r['reer_score']:.4f}" if r.get("reer_score") is not None else "-"
                judge = f"{r['judge_score']:g}" if r.get("judge_score") is not None else "-"
                print(f"{r['id']:>5} {r['status']:9} {r['source'][:8]:8} {reer:>7} {judge:>6} {r.get('rating') or '-':>6} "
                      f"{r['version']:>2}  {len(r['thinking']):>6}  {','.join(r['tags'])} {_short(q)}")
            print(f"{len(rows)} trajectory(ies)", file=sys.stderr)
        elif a == "show":
            r = cur.show(store, args.id)
            if args.json:
                print(json.dumps({k: v for k, v in r.items() if k != "details"} | {"details": r.get("details")},
                                 ensure_ascii=False, default=str, indent=1))
                return 0
            p = r["prompt"] or {}
            print(f"trajectory {r['id']} ({r['source']}, run {r['run_id']}, model {r['run'].get('model')})")
            print(f"status {r['status']}, rating {r.get('rating') or '-'}, tags {', '.join(r['tags']) or '-'}, "
                  f"version {r['version']} of {len(r['versions'])} edit(s)")
            judged = r["scale"] == "judge"  # REER's score (lower is better) or the judge's (higher is better)
            get = cur.judge_score if judged else cur.reer_score
            path = " -> ".join(f"{v:.4g}" for v in (get(r, "initial"), get(r)) if v is not None)
            ppl = " -> ".join(f"{r[k]:.4f}" for k in ("initial_ppl", "final_ppl") if r.get(k) is not None)
            if path or ppl:
                print("; ".join(x for x in ((("judge score (higher is better) " if judged else
                                              "REER score (lower is better) ") + path) if path else "",
                                            f"ppl {ppl}" if ppl else "") if x))
            if r.get("notes"):
                print(f"notes: {r['notes']}")
            print(f"\n--- query ---\n{p.get('query', '')}\n\n--- thinking ---\n{r['thinking']}\n\n--- answer ---\n{r['answer']}")
        elif a in ("accept", "reject", "reset"):
            # one transaction, the studio's bulk rule: accept skips failed-filter ones unless --include-failed
            res = cur.bulk(store, args.ids, a, reason=getattr(args, "reason", None),
                           include_failed=getattr(args, "include_failed", False))
            skipped = {t for t, _ in res.skipped}
            done = [t for t in dict.fromkeys(args.ids) if t not in skipped]
            print(f"{a}{'ed' if a != 'reset' else ''}: {', '.join(map(str, done)) or '(none)'}")
            if res.skipped:
                print(f"{res.skipped_text()}; give --include-failed to accept them anyway", file=sys.stderr)
        elif a in ("tag", "untag"):
            tags = getattr(cur, a)(store, args.id, *args.tags)
            print(f"trajectory {args.id} tags: {', '.join(tags) or '(none)'}")
        elif a == "rate":
            rating = None if args.rating.lower() == "none" else _int(args.rating, "rating", CLIError)
            cur.rate(store, args.id, rating)
            print(f"trajectory {args.id} rating: {rating if rating is not None else '(none)'}")
        elif a == "note":
            cur.note(store, args.id, args.text, replace=args.replace)
            print(f"trajectory {args.id}: note saved")
        elif a == "edit":
            thinking = _text(args.thinking, args.thinking_file, "thinking", CLIError)
            answer = _text(args.answer, args.answer_file, "answer", CLIError)
            if thinking is None and answer is None:
                raise CLIError("review edit: give --thinking/--thinking-file and/or --answer/--answer-file")
            v = cur.edit(store, args.id, thinking, answer, author=args.author, note=args.note)
            print(f"trajectory {args.id}: saved version {v} (the original and earlier versions are kept)")
        elif a == "revert":
            v = cur.revert(store, args.id, args.version)
            print(f"trajectory {args.id}: version {args.version} is current again as version {v}")
    return 0


def _int(value: str, name: str, error: type[Exception]) -> int:
    try:
        return int(value)
    except ValueError:
        raise error(f"{name}: {value!r} is not a whole number") from None


def _text(inline: str | None, path: str | None, name: str, error: type[Exception]) -> str | None:
    if inline is not None and path is not None:
        raise error(f"review edit: give --{name} or --{name}-file, not both")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise error(f"--{name}-file {path}: no such file")
        return p.read_text(encoding="utf-8")
    return inline


# ---- export ----------------------------------------------------------------------------------

def cmd_export(args) -> int:
    from core.export import export
    from core.outputs import OutputError, check_folder_out

    try:  # before any work: not a file, not holding the store (an earlier export there is replaced)
        check_folder_out(args.out, {"--db": args.db}, replaces=True)
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    tokenizer = None
    if args.check_template and args.tokenizer:
        from core.data.template_check import load_tokenizer

        try:
            tokenizer = load_tokenizer(args.tokenizer)
        except (OSError, ValueError) as exc:
            raise CLIError(f"--tokenizer {args.tokenizer}: cannot load a tokenizer there ({exc})") from None
    with _store(args.db, CLIError) as store:
        report = export(store, args.format, args.out, status=args.status, source=args.source,
                        check_template=args.check_template, tokenizer=tokenizer, min_margin=args.min_margin,
                        sources=args.sources)
    for issue in report.template_issues:
        print(f"template check: {issue}", file=sys.stderr)
    print(report.summary())
    print(f"data: {', '.join(report.files)}; card: {report.card}")
    return 1 if report.template_issues else 0


# ---- wiring ----------------------------------------------------------------------------------

def add_commands(sub, default_db: str) -> None:
    """Register import, review and export on the `palimpsest` subparsers."""
    from core.export import FORMATS as EXPORT_FORMATS
    from core.export import SOURCE_CHOICES, STATUS_CHOICES
    from core.pairs import DEFAULT_MIN_MARGIN
    from core.pairs import SOURCES as PAIR_SOURCES
    from core.data.records import FORMATS as IMPORT_FORMATS

    db_help = DB_HELP
    i = sub.add_parser("import", help="import prompts, references and finished trajectories from files",
                       description="JSONL/JSON/CSV/Parquet (query/reference or instruction/response, prompt/completion, "
                                   "question/solution, chat messages), datasets folders, a folder of .txt references, "
                                   "HelloBench files or folder, REER release outputs, DeepWriting parquet, and "
                                   "Palimpsest's own exports. Duplicates (same content) are not stored twice; bad "
                                   "records are listed and skipped; the import is one transaction.")
    i.add_argument("files", nargs="+", help="files or folders")
    i.add_argument("--format", choices=IMPORT_FORMATS, default="auto", help="how to read them (default: by suffix)")
    i.add_argument("--db", default=default_db, help=db_help)
    i.set_defaults(func=cmd_import)

    r = sub.add_parser("review", help="curate trajectories: list, show, accept, reject, tag, rate, note, edit")
    rs = r.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=default_db, help=db_help)
    common.add_argument("--annotator", default=None, metavar="NAME",
                        help="who is reviewing (default: the OS user); recorded with every decision, rating, tag, note and edit")
    ls = rs.add_parser("list", parents=[common], help="trajectories matching filters")
    ls.add_argument("--status", choices=["pending", "accepted", "rejected"], help="review status")
    ls.add_argument("--kind", choices=["reer", "r2", "import"], help="how the trajectory was made")
    ls.add_argument("--source", help="reer, r2, or an import's source")
    ls.add_argument("--min-score", type=float, help="REER score (lower is better) at least this; REER trajectories only")
    ls.add_argument("--max-score", type=float, help="REER score (lower is better) at most this; REER trajectories only")
    ls.add_argument("--min-judge", type=float, help="judge score (higher is better) at least this; judged (R2) ones only")
    ls.add_argument("--max-judge", type=float, help="judge score (higher is better) at most this; judged (R2) ones only")
    ls.add_argument("--min-chars", type=int, help="thinking at least this many characters")
    ls.add_argument("--max-chars", type=int, help="thinking at most this many characters")
    ls.add_argument("--passed", action="store_true", default=None, help="only those whose quality filters passed")
    ls.add_argument("--failed", dest="passed", action="store_false", help="only those whose quality filters failed")
    ls.add_argument("--tag", action="append", help="carries this tag (repeat for several)")
    ls.add_argument("--search", help="text in the query, thinking or answer")
    ls.add_argument("--limit", type=int, help="at most this many rows")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    sh = rs.add_parser("show", parents=[common], help="one trajectory, its prompt and its current text")
    sh.add_argument("id", type=int, help="trajectory id")
    sh.add_argument("--json", action="store_true", help="the whole record as JSON")
    for name, helptext in (("accept", "mark accepted"), ("reject", "mark rejected"), ("reset", "back to pending")):
        x = rs.add_parser(name, parents=[common], help=helptext)
        x.add_argument("ids", type=int, nargs="+", help="trajectory ids")
        if name == "reject":
            x.add_argument("--reason", help="appended to the notes")
        if name == "accept":
            x.add_argument("--include-failed", action="store_true",
                           help="accept trajectories whose quality filters failed too (a dropped run); "
                                "without it they are skipped and listed")
    for name in ("tag", "untag"):
        x = rs.add_parser(name, parents=[common], help=f"{name} a trajectory")
        x.add_argument("id", type=int, help="trajectory id")
        x.add_argument("tags", nargs="+", help="one or more tags")
    x = rs.add_parser("rate", parents=[common], help="rate 1..5 (none clears)")
    x.add_argument("id", type=int, help="trajectory id")
    x.add_argument("rating", help="1 to 5, or none to clear")
    x = rs.add_parser("note", parents=[common], help="append a note")
    x.add_argument("id", type=int, help="trajectory id")
    x.add_argument("text", help="the note")
    x.add_argument("--replace", action="store_true", help="replace the notes instead of appending")
    x = rs.add_parser("edit", parents=[common], help="save an edited thinking and/or answer as a new version")
    x.add_argument("id", type=int, help="trajectory id")
    x.add_argument("--thinking", help="the new thinking text")
    x.add_argument("--thinking-file", help="read the new thinking from this file")
    x.add_argument("--answer", help="the new answer text")
    x.add_argument("--answer-file", help="read the new answer from this file")
    x.add_argument("--note", help="why it was edited")
    x.add_argument("--author", default="human", help="who edited it (default human)")
    x = rs.add_parser("revert", parents=[common], help="make an earlier version (0 = original) current again")
    x.add_argument("id", type=int, help="trajectory id")
    x.add_argument("version", type=int, help="the version to restore (0 = the original)")
    r.set_defaults(func=cmd_review)

    e = sub.add_parser("export", help="write curated trajectories in a training format, with a dataset card",
                       description="Writes a folder: the data file(s) and README.md (the dataset card). Formats: "
                                   "chat (messages JSONL), sharegpt / alpaca (LLaMA-Factory JSON + dataset_info.json), "
                                   "parquet, hf (datasets save_to_disk), prm (R2 step labels), dpo (preference pairs "
                                   "for TRL's DPOTrainer: REER steps, people's forces and edits, R2 revisions over "
                                   "drafts, judging queues; docs/formats.md).")
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the training format (see above)")
    e.add_argument("--out", required=True, help="output folder (created; written beside it and renamed into place, "
                                                "so a kill or a full disk leaves the earlier export whole; an earlier "
                                                "export there is replaced, a folder holding other files is refused)")
    e.add_argument("--status", choices=STATUS_CHOICES, default="accepted", help="which review status (default accepted)")
    e.add_argument("--source", choices=SOURCE_CHOICES, default="all", help="which trajectories (default all)")
    e.add_argument("--check-template", action="store_true",
                   help="render the records through a chat template and report lost or changed think blocks")
    e.add_argument("--tokenizer", help="local model folder whose chat template to check (default: the built-in model)")
    e.add_argument("--sources", default="all",
                   help=f"dpo: which pair sources, comma-separated: {', '.join(PAIR_SOURCES)} (default all)")
    e.add_argument("--min-margin", type=float, default=DEFAULT_MIN_MARGIN,
                   help=f"dpo: leave out score-ordered pairs whose scores differ by less (REER score units; judge and "
                        f"people scores as a share of their scale; default {DEFAULT_MIN_MARGIN}: about one nat over a "
                        "1000-token reference; use 0.01 for runs scored in bf16; docs/formats.md)")
    e.add_argument("--db", default=default_db, help=db_help)
    e.set_defaults(func=cmd_export)
