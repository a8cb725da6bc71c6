"""A model judge on a pairwise queue, calibrated against the people who judged the same pairs.

Knows:
- `model_choice`: the model is shown the task and the two drafts as "Response 1" and "Response 2"
  with the queue's question, and its choice is read from its log-probabilities of answering "1" or
  "2" (core.models.optionscore.option_logprobs), not from generated text: a small model that
  breaks any answer format still chooses, and nothing goes unparsed.
- `iter_calibrate_pairs`: every pair of the queue is asked in both orders (a first, then b first),
  which cancels position bias: the model prefers a draft when it chose that draft both times; when
  it chose the same position both times (it follows the position, not the text) it is stored as a
  tie. Stored as the annotator "model:<spec>" with role "model" (never counted towards k), each
  order's answer kept in `scores` ({"a_first": "first"|"second", "b_first": ...}).
- `report_pairs`: over the pairs both the model and people judged: the model's agreement with the
  people's majority (a, b or tie; a split vote is a tie), with a seeded 95% bootstrap interval over
  pairs; beside it, comparable with each other, the model against each person (share of (model,
  person) couples that chose alike) and the people-versus-people agreement, the ceiling (share of
  couples of people on the same pair who chose alike, pairs with two or more people), each with its
  interval (the bootstrap resamples pairs, keeping each pair's couples together); the share of "first"
  among the model's answers and among the people's non-tie choices (0.5 = no position bias); and
  how often the model chose the same draft in both orders.

Does not know: how pairs are handed to people (core.judging.pairwise), the ranking.
"""
from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

from core import annotators as who
from core.judging import pairwise as pw
from core.judging import queue as jq
from core.store import Store, now

RESAMPLES = 1000  # bootstrap resamples of the pairs for the agreement intervals
PROMPT = ("Here is a writing task and two responses to it.\n\nTask:\n{query}\n\nResponse 1:\n{first}\n\n"
          "Response 2:\n{second}\n\n{criterion} Answer with the number of the better response, 1 or 2.")
ANSWER = "The better response is Response "


@dataclass(frozen=True)
class PairJudged:
    """One pair asked in both orders during `iter_calibrate_pairs`."""
    done: int  # pairs judged so far (this one included)
    total: int  # pairs to judge
    item_id: int  # the queue item
    ref: str  # the pair ("A vs B")
    prefer: str  # a, b or tie (the model chose a position, not a draft)
    a_first: str  # its answer with a shown first: "first" or "second"
    b_first: str  # its answer with b shown first


def model_choice(lm, query: str, first: str, second: str, criterion: str) -> str:
    """"first" or "second": the option ("1" or "2") the model gives more probability after ANSWER."""
    from core.models.optionscore import option_logprobs

    msgs = [{"role": "user", "content": PROMPT.format(query=query, first=first, second=second, criterion=criterion)}]
    context = lm.chat_text(msgs, add_generation_prompt=True) + ANSWER
    one, two = option_logprobs(lm, [context], ["1", "2"])[0]
    return "first" if one >= two else "second"


def record_model_pair(store: Store, item_id: int, model: str, prefer: str, answers: dict) -> int:
    """Save (or replace) a model judge's choice of a pair as annotator `model` ("model:<spec>")."""
    if not who.is_model(model):
        raise jq.JudgingError(f"model judge {model!r}: name it model:<spec> (core.annotators.model_name)")
    with store.transaction():
        item = jq.get_item(store, item_id)
        store.db.execute("DELETE FROM judging_judgments WHERE item_id = ? AND annotator = ?", [item_id, model])
        return store.db["judging_judgments"].insert({
            "item_id": item_id, "queue": item["queue"], "annotator": model, "role": "model",
            "scores": json.dumps(answers), "overall": None, "critique": "", "note": "", "prefer": prefer,
            "created_at": now()}).last_pk


def iter_calibrate_pairs(store: Store, lm, spec: str, queue: str) -> Iterator[PairJudged]:
    """Ask the model about every pair of the pairwise queue in both orders, storing each pair's
    result as soon as it is read (a kill keeps the ones stored; a rerun asks again and replaces)."""
    q = pw.pairwise_queue(store, queue)
    name = who.model_name(spec)
    todo = jq.items(store, queue)
    for n, it in enumerate(todo, 1):
        ab = model_choice(lm, it["query"] or "", it["text"], it["text_b"], q["rubric"][0])
        ba = model_choice(lm, it["query"] or "", it["text_b"], it["text"], q["rubric"][0])
        a_wins = (ab == "first") + (ba == "second")
        prefer = "a" if a_wins == 2 else "b" if a_wins == 0 else "tie"
        record_model_pair(store, it["id"], name, prefer, {"a_first": ab, "b_first": ba})
        yield PairJudged(n, len(todo), it["id"], it["ref"], prefer, ab, ba)


def _majority(votes: list[str]) -> str:
    top = Counter(votes).most_common()
    return "tie" if len(top) > 1 and top[0][1] == top[1][1] else top[0][0]


def _boot(units: list[list[int]], resamples: int, seed: int) -> tuple[float | None, float | None]:
    """95% interval of the pooled share of 1s, resampling `units` (one list of 0/1 per pair)."""
    if not units:
        return None, None
    rng = random.Random(seed)
    got = []
    for _ in range(resamples):
        pick = [units[rng.randrange(len(units))] for _ in units]
        flat = [x for u in pick for x in u]
        got.append(sum(flat) / len(flat))
    got.sort()
    return round(got[int(0.025 * (len(got) - 1))], 4), round(got[int(round(0.975 * (len(got) - 1)))], 4)


def report_pairs(store: Store, queue: str, model: str, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """{queue, model, pairs (judged by both), agreement, agreement_ci (vs the majority), model_vs_people,
    model_vs_people_ci, ceiling, ceiling_ci, ceiling_pairs,
    model_first_share, people_first_share, consistent_share, resamples}; None where undefined."""
    pw.pairwise_queue(store, queue)
    people: dict[int, list[dict]] = {}
    for j in jq.queue_judgments(store, queue, role="person"):
        people.setdefault(j["item_id"], []).append(j)
    mine = {j["item_id"]: j for j in jq.queue_judgments(store, queue, role="model") if j["annotator"] == model}
    both = sorted(set(people) & set(mine))
    agree = [[int(mine[i]["prefer"] == _majority([p["prefer"] for p in people[i]]))] for i in both]
    vs_people = [[int(mine[i]["prefer"] == p["prefer"]) for p in people[i]] for i in both]
    ceiling = [[int(x["prefer"] == y["prefer"]) for x, y in itertools.combinations(js, 2)]
               for js in people.values() if len(js) >= 2]
    answers = [v for j in mine.values() for v in (j["scores"] or {}).values()]
    firsts = [int((p["prefer"] == "a") == (not p.get("swapped"))) for js in people.values() for p in js
              if p["prefer"] in ("a", "b")]
    share = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    flat = lambda units: [x for u in units for x in u]  # noqa: E731
    return {"queue": queue, "model": model, "pairs": len(both), "judged_by_model": len(mine),
            "agreement": share(flat(agree)), "agreement_ci": _boot(agree, resamples, seed),
            "model_vs_people": share(flat(vs_people)), "model_vs_people_ci": _boot(vs_people, resamples, seed + 2),
            "ceiling": share(flat(ceiling)), "ceiling_ci": _boot(ceiling, resamples, seed + 1),
            "ceiling_pairs": len(ceiling),
            "model_first_share": share([int(a == "first") for a in answers]),
            "people_first_share": share(firsts),
            "consistent_share": share([int(j["prefer"] != "tie") for j in mine.values()]),
            "resamples": resamples, "seed": seed}
