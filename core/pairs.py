"""Preference pairs from everything the studio records, in the layout TRL's DPOTrainer reads.

Knows the four sources of a pair (`SOURCES`) and how each is built:
- `reer-step`: one REER step is a ranked set of texts of one segment under one context (the
  segment's text before the step and its K candidates, each scored with the rest of the
  trajectory as it stood at that step). Every two of them with different texts make a pair, the
  lower REER score chosen (REER's scale: lower is better). A step a person skipped makes none.
- `reer-human`: a person's force or edit is a stated preference: the person's text chosen over
  the texts it beat (force: every other text of that step, and the step pairs touching the forced
  text are dropped since the person overruled them; edit: the segment's text it replaced). Human
  pairs are kept whatever their score margin (a person's choice is not a near-tie of scores).
- `r2-revision`: an R2 round whose revision the judge scored higher than its draft.
- `people`: two drafts of the same prompt in one judging queue whose people's consensus (the
  median of the people's overall scores, or the newest lead resolution's score when there is one)
  differs by at least the margin; and two drafts of a pairwise queue (core.judging.pairwise) whose
  people's majority preferred one (margin: the winner's votes minus the loser's, over all votes).

Each record (one JSON line): id, source, prompt = [{"role": "user", "content": query}],
chosen / rejected = [{"role": "assistant", "content": ...}] in core.format's training layout,
run, step, segment, chosen_score, rejected_score, margin, scale, annotator, trajectory_id.
A REER step pair's assistant content is the turn up to the segment (`<think>\\n` and the earlier
segments, each followed by a blank line) and then the segment's text: TRL's conversational
prompt cannot end inside an assistant turn (DPOTrainer renders it with a generation prompt), so
the shared part rides at the head of both answers, where its log-probabilities are the same in
chosen and rejected and cancel exactly in the DPO loss. R2 and people pairs: an empty think
block and the draft (`<think>\\n\\n</think>\\n` + text), as the SFT export writes a turn without thinking.

margin is always > 0 for score-ordered pairs: REER: rejected score - chosen score (0 to 2);
judge and people: (chosen - rejected) / (scale high - low), so 0 to 1. `--min-margin` (default
DEFAULT_MIN_MARGIN) drops score-ordered pairs below it.

Does not know: the export's folders and cards (core.export), trainers (core.train.dpo).
"""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Iterable, Sequence

from core import events as ev
from core.format import THINK_OPEN, turn_head
from core.segments import SEP

SOURCES = ("reer-step", "reer-human", "r2-revision", "people")
# 0.001 REER units (a mean per-token log-prob): about one nat over a 1000-token reference, the closest
# calls of fp32 scoring (measured on HelloBench with the built-in model, candidates of one step differ
# by 0.001 to 0.007; 0.01 would keep none). Runs scored in bf16 want 0.01 (ScoringConfig.recheck_margin).
# On judge and people scales (normalised to 0..1) it drops only exact ties.
DEFAULT_MIN_MARGIN = 0.001


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def record(id: str, source: str, query: str, chosen: str, rejected: str, *, run: str | None, step: int | None,
           segment: int | None, chosen_score: float | None, rejected_score: float | None, margin: float | None,
           scale: str, annotator: str | None = None, trajectory_id: int | None = None) -> dict:
    """One pair in TRL's conversational preference layout, with where it came from."""
    return {"id": id, "source": source, "prompt": [{"role": "user", "content": query}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "run": run, "step": step, "segment": segment, "chosen_score": chosen_score,
            "rejected_score": rejected_score, "margin": margin, "scale": scale, "annotator": annotator,
            "trajectory_id": trajectory_id}


def turn_prefix(segments: Sequence[str], i: int) -> str:
    """The assistant turn up to segment i in the training layout: `<think>\\n` and segments 0..i-1, each
    followed by the blank line that joins segments."""
    return THINK_OPEN + "\n" + "".join(s.strip() + SEP for s in segments[:i])


def reer_pairs(events: Iterable[ev.Event], min_margin: float = DEFAULT_MIN_MARGIN, query: str | None = None,
               trajectory_id: int | None = None) -> list[dict]:
    """Step and human pairs of one REER run's events (module docstring). `query` defaults to the run's."""
    out: list[dict] = []
    segments: list[str] | None = None
    score: float | None = None  # the current trajectory's score
    run_id, q = "", query
    step = None  # {"step", "segment", "context", "texts": {key: text}, "scores": {key: score}}
    for e in events:
        if isinstance(e, ev.ReerStarted):
            run_id, q = e.run_id, q if q is not None else e.query
        elif isinstance(e, ev.InitialDraft):
            segments, score = list(e.segments), e.score.get("score")
        elif isinstance(e, ev.SegmentStarted) and segments is not None:
            step = {"step": e.step, "segment": e.segment, "context": list(segments),
                    "texts": {"current": e.text}, "scores": {"current": score}}
        elif isinstance(e, ev.CandidateGenerated) and step and e.step == step["step"] and e.text is not None:
            step["texts"][e.index] = e.text
        elif isinstance(e, ev.CandidateScored) and step and e.step == step["step"] and e.index >= 0:
            step["scores"][e.index] = e.score.get("score")
        elif isinstance(e, ev.SegmentDecided) and segments is not None:
            i = e.segment
            if e.action == "edit":  # the person's text over the one it replaced, in the context before the edit
                old = segments[i]
                if old.strip() != e.text.strip():
                    out += _pairs(q, run_id, e.step, i, segments, [("edit", e.text, e.score.get("score"))],
                                  [("old", old, score)], "reer-human", e.annotator, trajectory_id, None)
            elif step is not None and e.step == step["step"] and e.action != "skip":
                texts = [(k, t, step["scores"].get(k)) for k, t in step["texts"].items()
                         if _finite(step["scores"].get(k))]
                if e.action == "force" and e.chosen in step["texts"]:
                    mine = [x for x in texts if x[0] == e.chosen]
                    rest = [x for x in texts if x[0] != e.chosen]
                    out += _pairs(q, run_id, e.step, i, step["context"], mine, rest, "reer-human", e.annotator,
                                  trajectory_id, None)
                    texts = rest  # the step pairs the person did not overrule
                out += _ranked(q, run_id, e.step, i, step["context"], texts, min_margin, trajectory_id)
            if e.action != "edit":
                step = None
            segments, score = list(e.segments), e.score.get("score")
    return out


def _ranked(q, run_id, step, i, context, texts, min_margin, trajectory_id) -> list[dict]:
    """Every two texts of one step, the lower score chosen, margin at least min_margin."""
    out = []
    for a, b in itertools.combinations(sorted(texts, key=lambda x: (x[2], str(x[0]))), 2):
        out += _pairs(q, run_id, step, i, context, [a], [b], "reer-step", None, trajectory_id, min_margin)
    return out


def _pairs(q, run_id, step, i, context, chosen, rejected, source, annotator, trajectory_id, min_margin) -> list[dict]:
    head = turn_prefix(context, i)
    out = []
    for (ka, ta, sa), (kb, tb, sb) in itertools.product(chosen, rejected):
        if ta.strip() == tb.strip():
            continue  # the same text twice says nothing
        margin = round(sb - sa, 9) if _finite(sa) and _finite(sb) else None
        if min_margin is not None and (margin is None or margin <= 0 or margin < min_margin):  # a tie prefers nothing
            continue
        out.append(record(f"{run_id}-s{step}-g{i}-{ka}-{kb}", source, q, head + ta.strip(), head + tb.strip(),
                          run=run_id, step=step, segment=i, chosen_score=sa, rejected_score=sb,
                          margin=margin, scale="reer",
                          annotator=annotator, trajectory_id=trajectory_id))
    return out


def r2_pairs(ex_id: str, query: str, rounds: Sequence[dict], final_overall: float | None = None,
             run: str | None = None, trajectory_id: int | None = None,
             min_margin: float = DEFAULT_MIN_MARGIN) -> list[dict]:
    """Revision-over-draft pairs of one R2 trajectory's rounds: margin = the judged improvement
    (scale-normalised, core.r2.reward); scores = the judge's overall of the draft and of the revision
    (the next round's judgment, or the final one)."""
    out = []
    for n, r in enumerate(rounds):
        reward = r.get("reward") if isinstance(r.get("reward"), dict) else {}
        gain = reward.get("improvement")
        if not (isinstance(r.get("draft"), str) and isinstance(r.get("revision"), str) and _finite(gain)):
            continue
        if gain <= 0 or gain < min_margin or not r["draft"].strip() or not r["revision"].strip() \
                or r["draft"] == r["revision"]:
            continue
        before = (r.get("judgment") or {}).get("overall") if isinstance(r.get("judgment"), dict) else None
        nxt = rounds[n + 1].get("judgment") if n + 1 < len(rounds) else None
        after = nxt.get("overall") if isinstance(nxt, dict) else final_overall
        out.append(record(f"{ex_id}-r{r.get('round', n + 1)}", "r2-revision", query, turn_head("") + r["revision"].strip(),
                          turn_head("") + r["draft"].strip(), run=run, step=r.get("round", n + 1), segment=None,
                          chosen_score=after if _finite(after) else None,
                          rejected_score=before if _finite(before) else None, margin=float(gain), scale="judge",
                          trajectory_id=trajectory_id))
    return out


def consensus(people: Sequence[float], resolution: float | None) -> float | None:
    """An item's consensus score: the lead's resolution when there is one, else the median of people's."""
    if _finite(resolution):
        return float(resolution)
    vals = [float(v) for v in people if _finite(v)]
    return statistics.median(vals) if vals else None


def people_pairs(items: Sequence[dict], min_margin: float = DEFAULT_MIN_MARGIN, extra: Sequence[dict] = ()) -> list[dict]:
    """Pairs from scored judging queues. `items`: {queue, item_id, ref, prompt_id, query, text, low, high,
    people: [overall...], resolution: overall or None}. Two items of one queue and one prompt whose
    consensus differs by at least min_margin of the scale make a pair. `extra`: pairs already decided
    elsewhere (a pairwise queue's), appended as they are."""
    groups: dict[tuple, list[dict]] = {}
    for it in items:
        c = consensus(it.get("people") or [], it.get("resolution"))
        if c is not None and it.get("prompt_id") and (it.get("text") or "").strip():
            groups.setdefault((it["queue"], it["prompt_id"]), []).append({**it, "consensus": c})
    out = []
    for (queue, _), members in sorted(groups.items()):
        for a, b in itertools.combinations(members, 2):
            if a["consensus"] < b["consensus"]:
                a, b = b, a
            span = float(a["high"]) - float(a["low"])
            margin = (a["consensus"] - b["consensus"]) / span if span > 0 else 0.0
            if margin <= 0 or margin < min_margin or a["text"].strip() == b["text"].strip():
                continue
            out.append(record(f"{queue}-{a['item_id']}-{b['item_id']}", "people", a.get("query") or "",
                              turn_head("") + a["text"].strip(), turn_head("") + b["text"].strip(),
                              run=queue, step=None, segment=None, chosen_score=a["consensus"],
                              rejected_score=b["consensus"], margin=round(margin, 6), scale="people"))
    return out + list(extra)


def options(sources, min_margin) -> tuple[tuple[str, ...], float]:
    """(`--sources` parsed, `--min-margin` checked); ValueError naming the flag and the fix."""
    if isinstance(min_margin, bool) or not _finite(min_margin) or min_margin < 0:
        raise ValueError(f"--min-margin: {min_margin!r}; give a number 0 or above (default {DEFAULT_MIN_MARGIN})")
    return parse_sources(sources), float(min_margin)


def parse_sources(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """`--sources` as given ("all", or comma-separated names from SOURCES); ValueError naming the fix."""
    if text is None or text == "all" or text == ("all",):
        return SOURCES
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s and s.strip()]
    bad = [s for s in names if s not in SOURCES]
    if bad or not names:
        raise ValueError(f"--sources: {', '.join(bad) or repr(text)} is not a pair source; use all or a comma-separated "
                         f"list of {', '.join(SOURCES)}")
    return tuple(dict.fromkeys(names))


# ---- from the store (core.export calls this for --format dpo) ------------------------------

def queue_items(store, trajectory_ids: set[int]) -> list[dict]:
    """The scored judging-queue items whose draft is in the export, as `people_pairs` reads them."""
    from core.judging import queue as jq
    from core.judging.agreement import resolutions
    from core.judging.export import exported_items

    queues = {q["name"]: q for q in jq.list_queues(store)}
    out = []
    for it in exported_items(store, trajectory_ids):
        q = queues.get(it["queue"])
        if q is None:
            continue
        people = [j["overall"] for j in jq.judgments(store, it["id"], as_lead=True) if j.get("role") == "person"]
        res = [r["overall"] for r in resolutions(store, it["id"]) if _finite(r.get("overall"))]
        out.append({"queue": it["queue"], "item_id": it["id"], "ref": it["ref"], "prompt_id": it["prompt_id"],
                    "query": it.get("query") or "", "text": it.get("text") or "", "low": q["low"], "high": q["high"],
                    "people": people, "resolution": res[-1] if res else None})
    return out


def preference_rows(store, examples: Sequence[dict], min_margin: float = DEFAULT_MIN_MARGIN,
                    sources: Sequence[str] = SOURCES) -> tuple[list[dict], "Counter"]:
    """Every pair of the chosen sources from the exported trajectories (core.export's examples),
    and trajectory counts left out by reason."""
    from collections import Counter

    rows, skipped = [], Counter()
    for ex in examples:
        got = []
        if ex.get("kind") == "reer" and ({"reer-step", "reer-human"} & set(sources)):
            got = [r for r in reer_pairs(store.events(ex["run_id"]), min_margin, trajectory_id=ex["trajectory_id"])
                   if r["source"] in sources]
            why = "without REER steps that make preference pairs"
        elif ex.get("rounds") and "r2-revision" in sources:
            got = r2_pairs(ex["id"], ex["query"], ex["rounds"], ex["scores"].get("final_overall"),
                           run=ex.get("run_id"), trajectory_id=ex["trajectory_id"], min_margin=min_margin)
            why = "without R2 rounds that make preference pairs"
        else:
            why = "without REER steps or R2 rounds that make preference pairs of the chosen sources"
        if not got:
            skipped[why] += 1
        rows += got
    if "people" in sources and examples:
        ids = {ex["trajectory_id"] for ex in examples}
        rows += people_pairs(queue_items(store, ids), min_margin, extra=pairwise_people(store, ids, min_margin))
    return rows, skipped


def pairwise_people(store, trajectory_ids: set[int], min_margin: float = DEFAULT_MIN_MARGIN) -> list[dict]:
    """Pairs people settled in pairwise queues where at least one of the two drafts is in the export
    (the other may be, say, the prompt's reference), as `people` records; margin = (winner's votes -
    loser's votes) / all votes on the pair, ties included."""
    from core.judging import pairwise, queue as jq
    from core.judging.export import covered_refs

    refs = covered_refs(store, trajectory_ids)
    out = []
    for q in jq.list_queues(store):
        if not pairwise.is_pairwise(q):
            continue
        for p in pairwise.preference_pairs(store, q["name"]):
            if not (refs(p["chosen_ref"]) or refs(p["rejected_ref"])):
                continue
            v = p["votes"]
            won, lost = sorted((v["a"], v["b"]), reverse=True)
            margin = (won - lost) / max(1, v["a"] + v["b"] + v["tie"])
            if margin < min_margin or p["chosen"].strip() == p["rejected"].strip():
                continue
            out.append(record(f"{q['name']}-{p['chosen_ref']}-{p['rejected_ref']}", "people", p["prompt"],
                              turn_head("") + p["chosen"].strip(), turn_head("") + p["rejected"].strip(),
                              run=q["name"], step=None, segment=None, chosen_score=float(won),
                              rejected_score=float(lost), margin=round(margin, 6), scale="votes"))
    return out

