"""The batch loop `reer run` and `r2 run` share: read the input, open the store, run every item
with a progress bar, write one JSON line per finished item, report done/cached/failed, exit status.

Knows: files, the tqdm bar, the shape of an item outcome (`status` done | cached | failed |
paused | held, `item`, `record`, `error`, `run_id`, `holder`, `index`: core.runs.batch.ItemOutcome),
the --concurrency default (`concurrency_for`: 16 when every model is a server, else 1), and
the exit statuses (0 all written, or skipped only because another process holds them, 1 some
item failed, 130 interrupted; user errors, a busy store included, are CLIError, printed by
studio.cli.main as one line with status 2). Does not know either engine: the command
hands it the outcomes iterator (core.reer.jobs.reer_items / core.r2.jobs.r2_items), the bar's
postfix for an event and the line that reports an outcome.

The output file keeps input order whatever the concurrency: a finished item's record waits in
memory until every item before it has ended, then the finished prefix is written (an item that
failed, is held or paused leaves no line and does not block the ones after it). So OUT.partial
is always a valid prefix of the input's records; items that finished after the prefix when a
run was killed are in the store, and the rerun writes them. With several items in flight the bar
shows done / in flight / failed; with one, the item and its step.
"""
from __future__ import annotations

import json
import sys
import threading
from typing import Callable, Iterator, Sequence

from studio.cli.common import CLIError

INPUT_HELP = ("any file `import` reads: JSONL/JSON/CSV/Parquet with query/reference or an alias (q/ref, "
              "instruction/output, prompt/completion, ...), optional thinking; a HelloBench task file or folder")


def read_items(path: str, limit: int | None):
    """Items of --input (every shape `import` reads, core.data.records); bad records are printed and skipped.
    CLIError when nothing is usable or --limit is below 1."""
    from core.data.items import InputError
    from core.data.items import read_items as read

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

    try:
        return open_(db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None


CONCURRENCY_HELP = ("items in flight at once (default: 16 when every model is a server URL, whose throughput "
                    "comes from many requests at once; 1 for a local or scripted model: a local model runs one "
                    "call at a time, so more items in flight only take turns). Records are written in input order")
SERVER_CONCURRENCY = 16  # the default for server specs: enough to keep a vLLM replica's batch busy


def concurrency_for(value: int | None, specs: Sequence[str]) -> int:
    """--concurrency as given, else the default for these model specs (module docstring). A local
    model with more than 1 is allowed (correct, no faster) and warned about once. CLIError out of range."""
    from core.models.load import is_scripted_spec
    from core.models.urls import is_server_spec
    from core.runs.batch import MAX_CONCURRENCY

    if value is None:
        return SERVER_CONCURRENCY if all(is_server_spec(s) for s in specs) else 1
    if not 1 <= value <= MAX_CONCURRENCY:
        raise CLIError(f"--concurrency {value}: must be between 1 and {MAX_CONCURRENCY}")
    local = [s for s in dict.fromkeys(specs) if not is_server_spec(s) and not is_scripted_spec(s)]
    if value > 1 and local:
        print(f"warning: --concurrency {value} with the local model {', '.join(local)}: it runs one call at a time, "
              "so items in flight take turns and the batch is no faster; concurrency pays with a server URL",
              file=sys.stderr)
    return value


def run_batch(command: str, items: Sequence, start: Callable[[Callable], Iterator], *, out: str, db: str,
              progress: bool, postfix: Callable[[object, object], dict], line: Callable[[object], str],
              statuses: Sequence[str] = ("done", "cached", "failed"), concurrency: int = 1) -> tuple[int, dict]:
    """Drive `start(on_event)` (the engine's outcomes, one per item, in any order) to the end: done
    and cached records go to `out` one JSON line each, in input order as the finished prefix grows
    (through OUT.partial, renamed over OUT at the end); failed, held and paused items are reported
    and not written. `concurrency` > 1: the bar shows done / in flight / failed. `line(outcome)` is the
    report of a written or paused item. Returns (exit status, {status: count}, "held" always
    counted); on Ctrl-C the status is 130 and what was saved stays. A store that stays busy past its
    timeout is a CLIError."""
    from tqdm import tqdm

    from core.outputs import OutputFile
    from core.store import StoreBusy

    show = sys.stderr.isatty() or progress
    bar = tqdm(total=len(items), desc=command, unit="item", file=sys.stderr, disable=not show)
    say = (lambda msg: bar.write(msg, file=sys.stderr)) if show else (lambda msg: print(msg, file=sys.stderr))

    counts = dict.fromkeys([*statuses, "held"], 0)
    lock = threading.Lock()  # on_event comes from the batch's worker threads
    in_flight: set[int] = set()  # id() of the items with an event and no outcome yet

    def progress_postfix() -> dict:
        return {"done": counts.get("done", 0) + counts.get("cached", 0), "in flight": len(in_flight),
                "failed": counts.get("failed", 0)}

    def on_event(item, event) -> None:
        with lock:
            in_flight.add(id(item))
            bar.set_postfix(postfix(item, event) if concurrency == 1 else progress_postfix(), refresh=True)

    holders: list[str] = []
    waiting: dict[int, str | None] = {}  # index -> its line (None: nothing to write) until the prefix reaches it
    written = 0  # items of the input's prefix that have ended
    f = OutputFile(out)  # OUT.partial, renamed over OUT by close() (core.outputs)
    outcomes = start(on_event)
    try:
        for o in outcomes:
            with lock:
                counts[o.status] = counts.get(o.status, 0) + 1
                in_flight.discard(id(o.item))
                bar.update(1)
                if concurrency > 1:
                    bar.set_postfix(progress_postfix(), refresh=True)
            keep = o.status in ("done", "cached")
            waiting[o.index] = json.dumps(o.record, ensure_ascii=False) + "\n" if keep else None
            while written in waiting:  # the finished prefix, in input order
                text = waiting.pop(written)
                if text is not None:
                    f.write(text)
                written += 1
            f.flush()
            if o.status == "failed":
                say(f"failed {o.item.id}: {o.error}")
                continue
            if o.status == "held":
                holders += [o.holder] if o.holder not in holders else []
                say(f"held {o.item.id}: run {o.run_id} is held by {o.holder}, which is running it; skipped, not written")
                continue
            say(line(o))
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: every event so far is saved in {db} and the finished items up to the first unfinished "
              f"one are in {out}; run the same command again to resume where it stopped", file=sys.stderr)
        return 130, counts
    except StoreBusy as exc:
        raise CLIError(f"{exc}; finished items are in {out}, run the same command again to go on") from None
    finally:
        getattr(outcomes, "close", lambda: None)()  # a concurrent batch's workers stop at their next event
        bar.close()
        f.close()
    if counts["held"]:
        say(f"{counts['held']} item(s) held by {', '.join(holders)} were skipped: that process finishes them; "
            f"run this command again once it has ended to write their records to {out}")
    return (1 if counts.get("failed") else 0), counts


def num(x, digits: int = 4) -> str:
    """A score for a report line ("?" when missing)."""
    return "?" if x is None else f"{x:.{digits}f}"


def join_specs(specs: list[str] | None, flag: str) -> str:
    """One model spec from a repeatable model flag: the built-in model when not given, the spec
    itself when given once, and server replicas joined into one comma list
    (`URL,URL#model`, core.models.server) when given several times. Several values that are not all
    server URLs cannot be replicas of one model: CLIError naming the flag."""
    from core.models.lm import DEFAULT_MODEL
    from core.models.urls import is_server_spec

    values = [s.strip() for s in (specs or []) if s and s.strip()]
    if not values:
        return DEFAULT_MODEL
    if len(values) == 1:
        return values[0]
    if not all(is_server_spec(v) for v in values):
        raise CLIError(f"{flag} given {len(values)} times: only server URLs (replicas of one model) may be repeated; "
                       f"got {', '.join(repr(v) for v in values)}")
    models = {v.partition("#")[2] for v in values} - {""}
    if len(models) > 1:
        raise CLIError(f"{flag}: the replicas name different models ({', '.join(sorted(models))}); give replicas "
                       "of one model, with its name after '#' once or on every URL alike")
    urls = [v.partition("#")[0] for v in values]
    tail = next((v.partition("#")[2] for v in values if "#" in v), "")
    return ",".join(urls) + (f"#{tail}" if tail else "")
