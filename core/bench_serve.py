"""`palimpsest bench serve`: how `reer run`'s batch scales with items in flight against a server.

For each concurrency level (1, 4, 16, 64 by default) it runs a fresh batch of short REER items
(core.reer.jobs.reer_items: the machinery `reer run --concurrency N` uses, store writes included,
in a temporary store) against
  (b) the latency stand-in (core.serve_standin), started by the bench as a process of its own
      with a fixed per-request delay, so that scaling shows beyond what this machine's cores
      compute, and
  (a) a real server, when `url` is given (its own speed, whatever it is),
and reports items per hour, the speed-up over concurrency 1, and the driver's own CPU seconds
per request and per item (time.process_time of this process, every thread: the HTTP client,
the engine, the SQLite writes; the stand-in's CPU is its own process's and reported apart).
Each level runs max(`items`, 2 x concurrency) items, so every worker takes at least two.
The issue's target: with the stand-in, items/hour at 16 at least 12 x items/hour at 1.

The REER settings are small on purpose (one step, two candidates, short texts): about seven
requests an item, five of which wait for the stand-in's delay. A ratio measured here compares
levels measured side by side in one run on one machine; the load average is reported with it.
Knows the batch, the stand-in and the clock; knows nothing of the CLI.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from core.item import Item

LEVELS = (1, 4, 16, 64)  # items in flight, the curve's x
DELAY_S = 1.0  # the stand-in's seconds per (chat) completion request
ITEMS = 4  # items at concurrency 1 (each level runs max(ITEMS, 2 x level))
TARGET_16_VS_1 = 12.0  # items/hour at 16 over items/hour at 1, with the stand-in
START_TIMEOUT_S = 60.0  # the stand-in process has this long to print its URL

_SCENES = ("The ferry waited while the harbour lights came on one by one. Nobody on the quay spoke; the gulls "
           "did the talking. A boy counted the ropes twice and lost his place.",
           "My grandmother kept her letters in a biscuit tin, each dated on the back in pencil with one word: "
           "rain, wedding, fever, peace. She never opened them again.",
           "The night train stopped at a station with no name. A woman got off with a birdcage and no bird, "
           "and the conductor tipped his hat as if he knew her.")


class StandinFailed(RuntimeError):
    """The stand-in process did not start (its error output is in the message)."""


def bench_items(n: int, tag: str = "") -> list[Item]:
    """n short, distinct query/reference pairs (distinct content: no item is cached by another)."""
    return [Item(id=f"bench{tag}-{i}", query=f"Write a short scene ({tag}{i}).",
                 reference=f"{_SCENES[i % len(_SCENES)]} It was the {i + 1}th evening of the {tag or 'run'}.")
            for i in range(n)]


def bench_config():
    """The small REER settings every level runs with (module docstring)."""
    from core.reer.config import ReerConfig

    return ReerConfig(candidates=2, max_steps=1, draft_max_new_tokens=160, candidate_max_new_tokens=60)


def start_standin(delay: float) -> tuple[subprocess.Popen, str]:
    """The stand-in as a process of its own (scripted brain): (process, model spec)."""
    from core.serve_standin import MODEL

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "core.serve_standin", "--delay", str(delay), "--brain", "scripted"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    line = proc.stdout.readline()  # "URL http://127.0.0.1:PORT/v1", or "" when it died
    if not line.startswith("URL ") or time.monotonic() > deadline:
        proc.kill()
        raise StandinFailed(f"the stand-in server did not start: {proc.stderr.read()[-500:]}")
    return proc, f"{line.split()[1]}#{MODEL}"


def run_level(lm, spec: str, concurrency: int, n_items: int, counter: Callable[[], dict] | None = None) -> dict:
    """One point of the curve: `n_items` fresh REER items at `concurrency` through `lm` (a loaded
    LM), in a temporary store. `counter()`: the server's stats (requests, cpu_s), when it has them."""
    from core.reer.jobs import reer_items
    from core.store import open_store

    cfg = bench_config()
    items = bench_items(n_items, tag=f"c{concurrency}")
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        before = counter() if counter else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        outcomes = list(reer_items(store, items, cfg, spec, lambda: lm, concurrency=concurrency))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        after = counter() if counter else None
    done = sum(o.status == "done" for o in outcomes)
    point = {"concurrency": concurrency, "items": n_items, "done": done, "failed": n_items - done,
             "seconds": seconds, "items_per_hour": done * 3600 / seconds if seconds > 0 else 0.0,
             "driver_cpu_s_per_item": cpu / n_items}
    errors = sorted({o.error for o in outcomes if o.status == "failed"})
    if errors:
        point["first_error"] = errors[0][:300]
    if before is not None and after is not None:
        requests = after["total"] - before["total"] - 1  # less the stats request itself
        point.update(requests=requests, driver_cpu_s_per_request=cpu / max(requests, 1),
                     server_cpu_s_per_request=(after["cpu_s"] - before["cpu_s"]) / max(requests, 1),
                     server_max_in_flight=after["max_in_flight"])
    return point


def curve(lm, spec: str, levels: Sequence[int], items: int, counter=None, log=print, label: str = "") -> list[dict]:
    """run_level at each level, logged as it goes; each point gains its speed-up over the first level."""
    points = []
    for c in levels:
        p = run_level(lm, spec, c, max(items, 2 * c), counter)
        p["speedup"] = p["items_per_hour"] / points[0]["items_per_hour"] if points and points[0]["items_per_hour"] else 1.0
        points.append(p)
        per_req = f", driver {p['driver_cpu_s_per_request'] * 1000:.1f} ms CPU/request" if "requests" in p else ""
        log(f"{label}concurrency {c:>3}: {p['done']}/{p['items']} items in {p['seconds']:.1f} s = "
            f"{p['items_per_hour']:.0f} items/h ({p['speedup']:.1f}x){per_req}")
    return points


def bench_serve(delay: float = DELAY_S, items: int = ITEMS, levels: Sequence[int] = LEVELS, url: str | None = None,
                log: Callable[..., None] = print) -> dict:
    """The whole bench (module docstring): the stand-in curve, and a real server's when `url` is
    given. Returns a JSON-ready dict: the curves, the 16-vs-1 ratio and whether it meets the
    target, the machine's load average before and after."""
    from core.models.load import load_lm
    from core.serve_standin import stats

    if not levels or any(c < 1 for c in levels) or items < 1 or delay < 0:
        raise ValueError("levels must be positive, items at least 1, delay 0 or more")
    result: dict = {"bench": "serve", "delay_s": delay, "levels": list(levels), "cpus": os.cpu_count(),
                    "load_before": [round(x, 2) for x in os.getloadavg()]}
    proc, spec = start_standin(delay)
    try:
        lm = load_lm(spec)
        log(f"stand-in server at {spec} (delay {delay:g} s per completion request)")
        points = curve(lm, spec, levels, items, counter=lambda: stats(spec), log=log, label="stand-in ")
    finally:
        proc.kill()
        proc.wait()
    by_c = {p["concurrency"]: p for p in points}
    ratio = (by_c[16]["items_per_hour"] / by_c[1]["items_per_hour"]
             if 1 in by_c and 16 in by_c and by_c[1]["items_per_hour"] else None)
    result["standin"] = {"curve": points, "speedup_16_vs_1": ratio, "target_16_vs_1": TARGET_16_VS_1,
                         "target_met": None if ratio is None else ratio >= TARGET_16_VS_1}
    if url:
        lm = load_lm(url)
        log(f"server at {url}")
        result["url"] = {"spec": url, "curve": curve(lm, url, levels, items, log=log, label="server ")}
    else:
        result["url"] = None
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result
