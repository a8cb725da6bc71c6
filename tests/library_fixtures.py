"""Hand-made store contents for the library tests: REER and R2 trajectories of the shapes their
engines save (REER: core.reer.state.record_from_events; R2: {id, query, rounds: [...], thinking,
final}). Written for these tests; no third-party text."""
from __future__ import annotations

from core.store import Store, open_store

REER_ITEMS = [
    ("Write a short essay on why tides matter to coastal towns.",
     "Hmm, who reads this? Town planners, maybe.\n\nWait, I should start from the harbour, not the moon.",
     "Tides set the rhythm of a harbour town: boats leave on the ebb and return on the flood."),
    ("Describe a lighthouse keeper's last night on duty.",
     "I want quiet, not drama.\n\nMaybe the lamp itself should be the last thing he touches.",
     "He polished the lens one final time, and the beam swept out over a sea that did not know him."),
    ("Argue for keeping the village library open on Sundays.",
     "Who loses most when it closes? Shift workers.\n\nI should lead with them, then the cost.",
     "For people who work the week, Sunday is the only day the library is theirs."),
]


def add_reer(store: Store, query: str, thinking: str, answer: str, score: float = 0.31, model: str = "smollm2-135m") -> int:
    pid, _ = store.add_prompt(query, answer, category="essay", rubric=["clear", "vivid"], source="test")
    settings = {"candidates": 2, "max_steps": 3, "threshold": 0.25}
    run = store.create_run("reer", pid, settings, model)
    details = {"id": f"item-{pid[:6]}", "run_id": run, "query": query, "reference": answer,
               "initial_thinking": thinking.split("\n\n")[0], "thinking": thinking, "initial_ppl": 2.5,
               "final_ppl": 1.9, "initial_score": 0.52, "final_score": score,
               "steps": [{"step": 1, "segment": 0, "original": "x", "chosen": "y", "action": "accept", "by": "search",
                          "candidates": [{"text": "y", "raw": "<rewrite>y</rewrite>", "ppl": 1.9, "score": score,
                                          "accepted": True, "error": None}], "seconds": 1.0}],
               "filters": {"passed": True, "reasons": []}, "finish_reason": "threshold", "model": model,
               "settings": settings}
    return store.save_trajectory(run, thinking, answer, initial_score=0.52, final_score=score, initial_ppl=2.5,
                                 final_ppl=1.9, filters={"passed": True, "reasons": []}, details=details)


def add_reer_items(store: Store, n: int) -> list[int]:
    """n REER trajectories from REER_ITEMS, each query and answer made distinct by its number (the
    answer ends "marker-i", which scripted judges read)."""
    ids = []
    for i in range(n):
        q, thinking, answer = REER_ITEMS[i % 3]
        ids.append(add_reer(store, f"{q} ({i})", thinking, f"{answer} marker-{i}"))
    return ids


def reer_db(path, n: int) -> str:
    """A store file at `path` holding add_reer_items(n), closed; its path as text (for --db)."""
    with open_store(path) as s:
        add_reer_items(s, n)
    return str(path)


def r2_details(query: str) -> dict:
    """Two rounds: the first revision improves (+1.5), the second gets worse (-0.5)."""
    rounds = [
        {"round": 1, "draft": "Draft one: the sea is big.",
         "judgment": {"scores": {"clear": 5, "vivid": 4}, "overall": 4.5, "critique": "No concrete image.",
                      "judge": "model", "parsed": True},
         "reflection": "Rereading my draft, nothing in it can be seen; I should give the reader one harbour.",
         "revision": "Draft two: the harbour empties at ebb and the gulls wait on the mud.",
         "reward": {"improvement": 1.5, "redundancy": 0.0, "circularity": 0.0, "length": 0.0, "total": 1.5}},
        {"round": 2, "draft": "Draft two: the harbour empties at ebb and the gulls wait on the mud.",
         "judgment": {"scores": {"clear": 6, "vivid": 6}, "overall": 6.0, "critique": "Ending is flat.",
                      "judge": "human", "parsed": True},
         "reflection": "The ending just stops; I keep circling the gulls again.",
         "revision": "Draft three: gulls, mud, and then nothing.",
         "reward": {"improvement": -0.5, "redundancy": 0.2, "circularity": 0.3, "length": 0.0, "total": -1.0}},
    ]
    thinking = "I plan a harbour scene.\n\n" + "\n\n".join(f"{r['draft']}\n\n{r['reflection']}" for r in rounds)
    return {"id": "r2-tides", "query": query, "rounds": rounds, "thinking": thinking,
            "final": rounds[0]["revision"]}


def add_r2(store: Store, query: str = "Write four sentences about a harbour at low tide.") -> int:
    d = r2_details(query)
    pid, _ = store.add_prompt(query, d["final"], source="test")
    run = store.create_run("r2", pid, {"rounds": 2, "judge": "model"}, "smollm2-135m")
    return store.save_trajectory(run, d["thinking"], d["final"], details=d)


def filled_store(store: Store) -> dict:
    """Three REER trajectories (first two accepted) and one accepted R2 trajectory; returns their ids."""
    ids = [add_reer(store, *item, score=0.3 + i / 10) for i, item in enumerate(REER_ITEMS)]
    r2 = add_r2(store)
    for t in (ids[0], ids[1], r2):
        store.set_status(t, "accepted")
    return {"reer": ids, "r2": r2}
