"""Running R2 over stored prompts: every event saved as it happens, runs resumed, people's
judgments stored as events (so any process, tab or page reload can give one).

`r2_job` is what the CLI and the studio call: it finds this prompt's unfinished R2 run with
the same settings and models (or creates one), replays its history, continues the loop,
appends each event to the store before passing it on, and on `R2Finished` saves the
trajectory with the run's whole record as `details` (the same object `palimpsest r2 run`
writes). A run waiting for a person ends the job with `RunPaused`; `submit_judgment`
appends that person's judgment, and the next `r2_job` call continues. `r2_items` is the
batch form the CLI uses (skips finished items, one outcome per item).

Does not know: the loop itself (core.r2.loop), argument parsing or progress bars.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Sequence

from core import events as ev
from core.data.items import Item
from core.models.lm import LM
from core.r2.config import R2Config
from core.r2.judge import BadJudgment, Judgment
from core.r2.loop import Controls, r2_loop
from core.r2.state import R2State, record_from_events
from core.store import BadValue, Store, StoreError, settings_key


class NoPendingJudgment(StoreError):
    """The run is not waiting for a judgment."""


def models_name(writer: str, judge: str) -> str:
    """The runs.model value of an R2 run: both specs."""
    return f"writer={writer};judge={judge}"


def open_run_for(store: Store, prompt_id: str, cfg: R2Config, model: str) -> tuple[str, list[ev.Event]]:
    """(run id, history): the newest unfinished R2 run of this prompt, settings and models, or a new one."""
    key = settings_key(cfg.as_dict())
    for run in store.list_runs(kind="r2", prompt_id=prompt_id):
        if run.get("settings_key") == key and run["status"] in ("running", "paused") and run["model"] == model:
            return run["id"], store.events(run["id"])
    return store.create_run("r2", prompt_id, cfg.as_dict(), model), []


def r2_job(store: Store, writer_lm: LM, judge_lm: LM | None, prompt_id: str, cfg: R2Config = R2Config(),
           controls: Controls | None = None, run_id: str | None = None) -> Iterator[ev.Event]:
    """Run or resume R2 on a stored prompt; yields each event after it is saved. The rubric is the
    prompt's own (e.g. HelloBench checklists) or the default one (core.r2.judge.rubric_for)."""
    prompt = store.get_prompt(prompt_id)
    if run_id is None:
        model = models_name(writer_lm.name, judge_lm.name if judge_lm else "")
        run_id, history = open_run_for(store, prompt_id, cfg, model)
    else:
        history = store.events(run_id)
        cfg = R2Config.from_dict(store.get_run(run_id)["settings"])
    for event in r2_loop(writer_lm, judge_lm, run_id, prompt_id, prompt["query"], prompt.get("rubric"), cfg,
                         controls=controls, history=history):
        store.append_event(event)
        if isinstance(event, ev.R2Finished):
            save_trajectory(store, run_id)
        yield event


def run_record(store: Store, run_id: str) -> dict:
    """The output record of a stored run (core.r2.state.record_from_events)."""
    return record_from_events(store.events(run_id))


def save_trajectory(store: Store, run_id: str) -> int:
    """Write (or refresh) the trajectory row of a finished run; `details` is the whole record."""
    rec = run_record(store, run_id)
    return store.save_trajectory(run_id, thinking=rec["thinking"], answer=rec["final"],
                                 initial_score=rec["initial_overall"], final_score=rec["final_overall"],
                                 filters=trajectory_filters(rec), details=rec)


def trajectory_filters(rec: dict) -> dict:
    """{"passed", "reasons"} of an R2 record: it needs a final draft and at least one reflection
    (a first draft already at the threshold teaches little: DESIGN.md's difficulty filter)."""
    reasons = []
    if not rec["final"]:
        reasons.append("no final draft")
    if not rec["rounds"]:
        reasons.append("no reflection: the first draft already met the threshold" if
                       rec["finish_reason"] == "threshold" else "no reflection")
    return {"passed": not reasons, "reasons": reasons}


def pending_request(store: Store, run_id: str) -> ev.JudgmentRequested | None:
    """The judgment request the run waits on (its text, and the model's proposal if any), or None."""
    return R2State.from_events(store.events(run_id)).pending_request()


def submit_judgment(store: Store, run_id: str, judgment: Judgment | dict) -> int:
    """Store a judgment (a person's, an override, or the accepted proposal) for the run's open
    request; returns the event's seq. Raises NoPendingJudgment or BadJudgment naming the fix."""
    j = judgment if isinstance(judgment, Judgment) else Judgment.from_dict(judgment)
    state = R2State.from_events(store.events(run_id))
    req = state.pending_request()
    if req is None:
        raise NoPendingJudgment(f"run {run_id!r} is not waiting for a judgment; run it (r2_job) until it "
                                "emits judgment_requested")
    unknown = [c for c in j.scores if c not in state.started.rubric]
    if unknown:
        raise BadJudgment(f"judgment.scores: {unknown[0][:60]!r} is not a criterion of run {run_id!r}'s rubric")
    scale = tuple(state.started.settings["judge"][k] for k in ("low", "high"))
    if tuple(j.scale) != scale:
        raise BadJudgment(f"judgment.scale: {tuple(j.scale)} differs from the run's {scale}; rescale the scores")
    return store.append_event(ev.JudgmentGiven(run_id, version=req.version, judgment=j.to_dict()))


def submit_reflection(store: Store, run_id: str, text: str) -> int:
    """Store a person's edit (or approval: the same text) of the reflection the run waits on
    (R2Config.review_reflections); the next r2_job call revises with it. Returns the event's seq.
    Raises NoPendingJudgment when no reflection waits, BadJudgment when the text is empty."""
    refl = R2State.from_events(store.events(run_id)).pending_reflection()
    if refl is None:
        raise NoPendingJudgment(f"run {run_id!r} is not waiting for a reflection to be edited")
    text = (text or "").strip()
    if len(text.split()) < 3:
        raise BadJudgment("reflection: too short; write (or keep) the writer's first-person thought, a sentence or more")
    return store.append_event(ev.Reflected(run_id, round=refl.round, text=text, raw=refl.raw, dropped=refl.dropped,
                                           by="human"))


def accept_proposed(store: Store, run_id: str) -> int:
    """Let the model's proposed judgment stand for the open request (it stays judge "model")."""
    req = pending_request(store, run_id)
    if req is None or req.proposed is None:
        raise NoPendingJudgment(f"run {run_id!r} has no model proposal waiting; give a human judgment instead")
    return submit_judgment(store, run_id, Judgment.from_dict(req.proposed))


# ---- many items (the CLI) ---------------------------------------------------------------------

@dataclass(frozen=True)
class ItemOutcome:
    item: Item  # the input item
    prompt_id: str  # its id in the store
    status: Literal["done", "cached", "paused", "failed"]  # run now / finished before / waits for a person / failed
    run_id: str | None = None
    record: dict | None = None  # the output line (None when failed)
    error: str | None = None


def import_item(store: Store, item: Item, source: str | None = None) -> str:
    """The item's prompt id (stored now, or the existing prompt with the same content)."""
    kwargs = dict(category=item.category, rubric=list(item.rubric) or None, source=source)
    try:
        pid, _ = store.add_prompt(item.query, item.reference, id=item.id, **kwargs)
    except BadValue:  # the id names another prompt already
        pid, _ = store.add_prompt(item.query, item.reference, **kwargs)
    return pid


def finished_run(store: Store, prompt_id: str, cfg: R2Config, model: str) -> dict | None:
    key = settings_key(cfg.as_dict())
    return next((r for r in store.list_runs(kind="r2", status="finished", prompt_id=prompt_id)
                 if r["settings_key"] == key and r["model"] == model), None)


def r2_items(store: Store, items: Sequence[Item], cfg: R2Config, writer: str, judge: str,
             get_lms: Callable[[], tuple[LM, LM | None]], source: str | None = None,
             on_event: Callable[[Item, ev.Event], None] | None = None) -> Iterator[ItemOutcome]:
    """One outcome per item, in order. `writer`/`judge` are the specs the loaded models carry;
    `get_lms` is called only when some item needs running. A model error on one item is an
    outcome ("failed"), not an exception; KeyboardInterrupt passes through (all saved stays)."""
    model = models_name(writer, judge)
    for item in items:
        pid = import_item(store, item, source)
        done = finished_run(store, pid, cfg, model)
        if done is not None:
            yield ItemOutcome(item, pid, "cached", done["id"], run_record(store, done["id"]))
            continue
        writer_lm, judge_lm = get_lms()
        run_id, error, last = open_run_for(store, pid, cfg, model)[0], None, None
        try:
            for event in r2_job(store, writer_lm, judge_lm, pid, cfg, run_id=run_id):
                last = event
                if on_event is not None:
                    on_event(item, event)
                if isinstance(event, ev.RunError) and event.fatal:
                    error = f"{event.where or 'model'} error: {event.message}"
        except Exception as exc:  # noqa: BLE001  (one item's failure must not end the batch)
            error = f"{type(exc).__name__}: {exc}"
        if error is None and isinstance(last, ev.R2Finished):
            yield ItemOutcome(item, pid, "done", run_id, run_record(store, run_id))
        elif error is None and store.get_run(run_id)["status"] == "paused":
            yield ItemOutcome(item, pid, "paused", run_id, run_record(store, run_id))
        else:
            yield ItemOutcome(item, pid, "failed", run_id, None, error or "the run ended without finishing")
