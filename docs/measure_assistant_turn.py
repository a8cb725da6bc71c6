"""Does REER's choice of z change when y is scored in the exact training layout?

For a few HelloBench items (read from shared/data/hellobench beside the repo, never copied):
y = the item's reference answer cut at a paragraph end near `--ref-chars` (scoring cost grows
with y); a draft thinking of `--segments` planning paragraphs built from the task and that answer
(core.bench.planning_trajectory); and for its last `--steps` segments the options REER would
choose between: the segment as it is, five edits of it (two different reflection cues appended,
its last sentence dropped, a sentence of the answer's matching paragraph quoted, the same
paragraph of another item's draft) and, with `--k`, K rewrites written by the built-in model
(seeded, core.bench.candidates_for; costly on a CPU). Every option is scored under the `chat`
template (y wrapped in <answer> tags) and the `train` template (the assistant turn as trained),
fp32. Reported: how often the option REER would keep (the lowest score) differs between the
two (also among the changed options only, and with the quoting option left out, since quoting
the answer wins most steps), how many option pairs both order the same way, the Spearman rank
correlation of the options' scores per step, and the mean shift of the scores.

Run from the repository root (about 10 CPU-minutes with the defaults on a busy 2-core machine;
only the decisions are meaningful, not the times):
    python docs/measure_assistant_turn.py [--items 8] [--segments 6] [--steps 1] [--k 0] [--ref-chars 600]
        [--data DIR] [--out FILE]
Results: docs/assistant-turn.md.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.bench import HELLOBENCH, candidates_for, hellobench_items, planning_trajectory  # noqa: E402
from core.models.lm import DEFAULT_MODEL  # noqa: E402
from core.models.load import load_lm
from core.models.scoring import ScoringConfig, score_candidates  # noqa: E402
from core.segments import answer_part  # noqa: E402

LAYOUTS = ("chat", "train")


def ranks(xs: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 1.0


def _sentences(text: str) -> list[str]:
    return [t for t in re.split(r"(?<=[.!?])\s+", text.strip()) if t]


def options_for(segs: list[str], i: int, reference: str, other: list[str], rewrites: list[str]) -> list[tuple[str, str]]:
    """(kind, text) of every option for segment i; option 0 keeps the segment as it is."""
    seg = segs[i]
    paras = [p for p in reference.split("\n\n") if p.strip()] or [reference]
    quote = _sentences(paras[i * len(paras) // len(segs)])[0][:200]
    opts = [("keep", seg)] + [("rewrite", r) for r in rewrites]
    opts += [("cue", seg + " Hmm, wait: maybe I should say this more plainly."),
             ("cue 2", seg + " Let me check that against the task before I go on."),
             ("shorter", " ".join(_sentences(seg)[:-1]) or seg[: len(seg) // 2]),
             ("quote", seg + f' I could open this part with: "{quote}"'),
             ("other item", other[i % len(other)])]
    return opts


def cut(text: str, chars: int) -> str:
    """`text` up to the first paragraph end at or after `chars` characters."""
    end = text.find("\n\n", chars)
    return text if end < 0 else text[:end]


def pairs_same_order(a: list[float], b: list[float]) -> tuple[int, int]:
    """(option pairs ordered the same way by both score lists, all pairs)."""
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    return sum((a[i] < a[j]) == (b[i] < b[j]) for i, j in pairs), len(pairs)


def summary(rows: list[dict]) -> dict:
    """The figures of a list of measured steps (rows as `measure` makes them)."""
    def kept(r, name, skip=()):
        s = r["scores"][name]
        return min((j for j in range(len(s)) if r["kinds"][j] not in skip), key=lambda j: s[j])

    same = [pairs_same_order(r["scores"]["chat"], r["scores"]["train"]) for r in rows]
    return {
        "steps": len(rows), "options_per_step": len(rows[0]["kinds"]),
        "kept_option_differs": sum(kept(r, "chat") != kept(r, "train") for r in rows),
        "best_changed_option_differs": sum(kept(r, "chat", ("keep",)) != kept(r, "train", ("keep",)) for r in rows),
        "kept_option_differs_without_quote": sum(kept(r, "chat", ("quote",)) != kept(r, "train", ("quote",))
                                                 for r in rows),
        "kept_by_train": dict(Counter(r["kinds"][kept(r, "train")] for r in rows)),
        "pairs_same_order": f"{sum(a for a, _ in same)}/{sum(n for _, n in same)}",
        "spearman_mean": statistics.fmean(r["rho"] for r in rows),
        "spearman_min": min(r["rho"] for r in rows),
        "mean_shift_train_minus_chat": statistics.fmean(r["shift"] for r in rows),
        "closest_gap_train": min(r["gap"] for r in rows),
    }


def measure(lm, items: int, steps: int, k: int, ref_chars: int, n_segments: int, data: Path = HELLOBENCH,
            log=print) -> dict:
    pool = hellobench_items(Path(data))
    chosen = [pool[i * len(pool) // items] for i in range(items)]
    answers = [cut(answer_part(it.reference), ref_chars) for it in chosen]
    drafts = [planning_trajectory(it.query, a, n_segments) for it, a in zip(chosen, answers)]
    visit = list(range(n_segments - steps, n_segments))  # the last segments: the cheapest to re-score
    rows = []
    for n, item in enumerate(chosen):
        answer, segs = answers[n], drafts[n]
        for i in visit:
            t0 = time.perf_counter()
            rewrites = candidates_for(lm, item.query, segs[i], k, seed=n * 100 + i, max_new_tokens=64) if k else []
            t1 = time.perf_counter()
            kinds, options = zip(*options_for(segs, i, answer, drafts[(n + 1) % len(drafts)], rewrites))
            scores = {name: [s.score for s in score_candidates(
                lm, item.query, segs, i, list(options), answer, ScoringConfig(template=name, precision="fp32"))]
                for name in LAYOUTS}
            t2 = time.perf_counter()
            keep = {name: min(range(len(options)), key=lambda j: s[j]) for name, s in scores.items()}
            row = dict(item=item.id, segment=i, kinds=list(kinds),
                       rho=spearman(scores["chat"], scores["train"]),
                       shift=statistics.fmean(b - a for a, b in zip(scores["chat"], scores["train"])),
                       gap=min(abs(a - b) for x, a in enumerate(scores["train"]) for b in scores["train"][x + 1:]),
                       scores=scores)
            rows.append(row)
            log(f"item {n + 1}/{items} segment {i}: kept chat={kinds[keep['chat']]}#{keep['chat']} "
                f"train={kinds[keep['train']]}#{keep['train']}, rho={row['rho']:.2f}, shift={row['shift']:+.4f} "
                f"(generate {t1 - t0:.0f}s, score {t2 - t1:.0f}s)")
    return {"model": lm.name, "items": len(chosen), "model_rewrites_per_step": k, "reference_chars": ref_chars,
            "draft_segments": n_segments, **summary(rows), "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=8)
    p.add_argument("--segments", type=int, default=6, help="paragraphs of the draft thinking (10 at most)")
    p.add_argument("--steps", type=int, default=1, help="segments visited per item (the last ones)")
    p.add_argument("--k", type=int, default=0, help="model-written rewrites per step (0: edits only)")
    p.add_argument("--ref-chars", type=int, default=600, help="y is the reference cut at a paragraph end after this")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--data", default=str(HELLOBENCH), help="the HelloBench folder (default: shared/data/hellobench beside the repo)")
    p.add_argument("--out", help="write the full result (every step's scores) here as JSON")
    p.add_argument("--summarize", metavar="JSON", help="only print the figures of an earlier --out file")
    a = p.parse_args()
    if a.summarize:
        print(json.dumps(summary(json.loads(Path(a.summarize).read_text())["rows"]), indent=1))
        return 0
    result = measure(load_lm(a.model), a.items, a.steps, a.k, a.ref_chars, a.segments, a.data, log=lambda s: print(s, file=sys.stderr))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
