"""The batch loop `reer run` and `r2 run` share: read the input, open the store, run every item
with a progress bar, write one JSON line per finished item, report done/cached/failed, exit status.

Knows: files, the tqdm bar, the shape of an item outcome (`status` done | cached | failed |
paused | held, `item`, `record`, `error`, `run_id`, `holder`: core.runs.batch.ItemOutcome), and
the exit statuses (0 all written, or skipped only because another process holds them, 1 some
item failed, 130 interrupted; user errors, a busy store included, are CLIError, printed by
studio.cli.main as one line with status 2). Does not know either engine: the command
hands it the outcomes iterator (core.reer.jobs.reer_items / core.r2.jobs.r2_items), the bar's
postfix for an event and the line that reports an outcome.
"""
from __future__ import annotations

import json
import sys
from typing import Callable, Iterator, Sequence

INPUT_HELP = ("any file `import` reads: JSONL/JSON/CSV/Parquet with query/reference or an alias (q/ref, "
              "instruction/output, prompt/completion, ...), optional thinking; a HelloBench task file or folder")


def read_items(path: str, limit: int | None):
    """Items of --input (every shape `import` reads, core.data.records); bad records are printed and skipped.
    CLIError when nothing is usable or --limit is below 1."""
    from core.data.items import InputError
    from core.data.items import read_items as read
    from studio.cli.main import CLIError

    if limit is not None and limit < 1:
        raise CLIError(f"--limit {limit}: must be at least 1")
    try:
        items, problems = read(path)
    except InputError as exc:
        raise CLIError(str(exc)) from None
    if not items:
        more = f" (and {len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        why = f"; first bad line: {problems[0]}{more}" if problems else "; the file is empty"
        raise CLIError(f"{path}: no usable items{why}")
    for p in problems:
        print(f"skipped {p}", file=sys.stderr)
    return items[:limit] if limit is not None else items


def open_store(db: str):
    """The store at --db, or CLIError saying why not."""
    from core.store import StoreError
    from core.store import open_store as open_
    from studio.cli.main import CLIError

    try:
        return open_(db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None


def run_batch(command: str, items: Sequence, start: Callable[[Callable], Iterator], *, out: str, db: str,
              progress: bool, postfix: Callable[[object, object], dict], line: Callable[[object], str],
              statuses: Sequence[str] = ("done", "cached", "failed")) -> tuple[int, dict]:
    """Drive `start(on_event)` (the engine's outcomes, one per item) to the end: done and cached
    records go to `out` one JSON line each, as they come (through OUT.partial, renamed over OUT at
    the end); failed, held and paused items are reported and not written. `line(outcome)` is the
    report of a written or paused item. Returns (exit status, {status: count}, "held" always
    counted); on Ctrl-C the status is 130 and what was saved stays. A store that stays busy past its
    timeout is a CLIError."""
    from tqdm import tqdm

    from core.outputs import OutputFile
    from core.store import StoreBusy
    from studio.cli.main import CLIError

    show = sys.stderr.isatty() or progress
    bar = tqdm(total=len(items), desc=command, unit="item", file=sys.stderr, disable=not show)
    say = (lambda msg: bar.write(msg, file=sys.stderr)) if show else (lambda msg: print(msg, file=sys.stderr))

    def on_event(item, event) -> None:
        bar.set_postfix(postfix(item, event), refresh=True)

    counts = dict.fromkeys([*statuses, "held"], 0)
    holders: list[str] = []
    f = OutputFile(out)  # OUT.partial, renamed over OUT by close() (core.outputs)
    try:
        for o in start(on_event):
            counts[o.status] = counts.get(o.status, 0) + 1
            bar.update(1)
            if o.status == "failed":
                say(f"failed {o.item.id}: {o.error}")
                continue
            if o.status == "held":
                holders += [o.holder] if o.holder not in holders else []
                say(f"held {o.item.id}: run {o.run_id} is held by {o.holder}, which is running it; skipped, not written")
                continue
            if o.status in ("done", "cached"):
                f.write(json.dumps(o.record, ensure_ascii=False) + "\n")
                f.flush()
            say(line(o))
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: every event so far is saved in {db} and finished items are in {out}; run the same "
              "command again to resume where it stopped", file=sys.stderr)
        return 130, counts
    except StoreBusy as exc:
        raise CLIError(f"{exc}; finished items are in {out}, run the same command again to go on") from None
    finally:
        bar.close()
        f.close()
    if counts["held"]:
        say(f"{counts['held']} item(s) held by {', '.join(holders)} were skipped: that process finishes them; "
            f"run this command again once it has ended to write their records to {out}")
    return (1 if counts.get("failed") else 0), counts


def num(x, digits: int = 4) -> str:
    """A score for a report line ("?" when missing)."""
    return "?" if x is None else f"{x:.{digits}f}"
