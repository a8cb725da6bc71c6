"""Running R2 over stored prompts, one or many: every event saved as it happens, runs resumed,
people's judgments stored as events (so any process, tab or page reload can give one).

`r2_job` is what the CLI and the studio call: it finds this prompt's unfinished R2 run with the
same settings and models (or creates one), and drives `core.r2.loop.r2_loop` on it through the
shared machinery (core.runs.driver.drive): under the run's lease (a second driver gets
`core.runs.lease.RunBusy`), resumed from the stored history, each event appended to the store
before it is passed on, and on `R2Finished` the trajectory saved with the run's whole record as
`details` (the same object `palimpsest r2 run` writes). A run waiting for a person ends the job
with `RunPaused`; `submit_judgment` appends that person's judgment, and the next `r2_job` call
continues. `run_record` and `save_trajectory` rebuild a stored run's record and trajectory row.

`r2_items` is the batch form `palimpsest r2 run` uses (core.runs.batch.run_items: skips
finished items, one outcome per item).

REER's jobs module is its mirror. Does not know: the loop itself (core.r2.loop), argument parsing
or progress bars.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

from core import events as ev
from core.item import Item
from core.models.lm import LM, require
from core.r2.config import R2Config
from core.r2.judge import BadJudgment, Judgment
from core.r2.loop import Controls, r2_loop
from core.r2.state import R2State, record_from_events, trajectory_fields
from core.runs.batch import ItemOutcome, run_items
from core.runs.driver import drive, open_run_for
from core.runs.engine import Engine
from core.runs.lease import LEASE_TTL_S
from core.store import Store, StoreError

R2 = Engine(kind="r2", finish=ev.R2Finished, record=record_from_events, trajectory=trajectory_fields)


class NoPendingJudgment(StoreError):
    """The run is not waiting for a judgment."""


def models_name(writer: str, judge: str) -> str:
    """The runs.model value of an R2 run: both specs."""
    return f"writer={writer};judge={judge}"


def r2_job(store: Store, writer_lm: LM, judge_lm: LM | None, prompt_id: str, cfg: R2Config = R2Config(),
           controls: Controls | None = None, run_id: str | None = None, owner: str | None = None,
           lease_ttl_s: float = LEASE_TTL_S) -> Iterator[ev.Event]:
    """Run or resume R2 on a stored prompt; yields each event after it is saved. The rubric is the
    prompt's own (e.g. HelloBench checklists) or the default one (core.r2.judge.rubric_for). `run_id`:
    drive that run with its own stored settings. Raises RunBusy before any event when another live
    owner drives the run; `owner` defaults to a fresh lease owner."""
    prompt = store.get_prompt(prompt_id)
    if run_id is not None:
        cfg = R2Config.from_dict(store.get_run(run_id)["settings"])
    require(writer_lm, {"prefix", "count_tokens"}, "the R2 writer")  # before any work (core.models.lm.require)
    if cfg.judge_mode != "human":  # no judge model: the writer judges
        logprob = {"chat_template", "score"} if cfg.judge.method != "generate" else set()
        require(judge_lm or writer_lm, {"prefix"} | logprob, "the R2 judge")
    if run_id is None:
        model = models_name(writer_lm.name, judge_lm.name if judge_lm else "")
        run_id, _ = open_run_for(store, R2.kind, prompt_id, cfg.as_dict(), model)

    def loop(history: Sequence[ev.Event]) -> Iterator[ev.Event]:
        return r2_loop(writer_lm, judge_lm, run_id, prompt_id, prompt["query"], prompt.get("rubric"), cfg,
                       controls=controls, history=history)

    yield from drive(store, R2, run_id, loop, owner, lease_ttl_s)


# run_record(store, run_id): a stored run's output record (core.r2.state.record_from_events);
# save_trajectory(store, run_id): write or refresh its trajectory row (core.r2.state.trajectory_fields)
run_record, save_trajectory = R2.run_record, R2.save_trajectory


def pending_request(store: Store, run_id: str) -> ev.JudgmentRequested | None:
    """The judgment request the run waits on (its text, and the model's proposal if any), or None."""
    return R2State.from_events(store.events(run_id)).pending_request()


def submit_judgment(store: Store, run_id: str, judgment: Judgment | dict, version: int | None = None) -> int:
    """Store a judgment (a person's, an override, or the accepted proposal) for the run's open
    request; returns the event's seq. `version`: the version the person judged (what they were
    shown); refused with NoPendingJudgment when another version waits, never applied to it (the
    check and the append share one write transaction). Raises NoPendingJudgment or BadJudgment
    naming the fix."""
    with store.transaction():
        return _submit_judgment(store, run_id, judgment, version)


def _submit_judgment(store: Store, run_id: str, judgment: Judgment | dict, version: int | None) -> int:
    j = judgment if isinstance(judgment, Judgment) else Judgment.from_dict(judgment)
    state = R2State.from_events(store.events(run_id))
    req = state.pending_request()
    if req is None:
        raise NoPendingJudgment(f"run {run_id!r} is not waiting for a judgment; run it (r2_job) until it "
                                "emits judgment_requested")
    if version is not None and req.version != version:
        raise NoPendingJudgment(f"run {run_id[:8]}: your judgment is of version {version}, which no longer waits "
                                f"(version {req.version} does now); nothing was stored: judge the text now shown")
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
    words = len(text.split())  # words, not tokens: a person's sentence, whatever the model's tokenizer
    if words < 3:
        raise BadJudgment(f"reflection: too short ({words} words, at least 3); write (or keep) the writer's "
                          "first-person thought, a sentence or more")
    return store.append_event(ev.Reflected(run_id, round=refl.round, text=text, raw=refl.raw, dropped=refl.dropped,
                                           by="human", annotator=Controls.person()))


def accept_proposed(store: Store, run_id: str, version: int | None = None) -> int:
    """Let the model's proposed judgment stand for the open request (it stays judge "model");
    `version`: the one the person saw (refused when another waits)."""
    req = pending_request(store, run_id)
    if req is None or req.proposed is None:
        raise NoPendingJudgment(f"run {run_id!r} has no model proposal waiting; give a human judgment instead")
    return submit_judgment(store, run_id, Judgment.from_dict(req.proposed), req.version if version is None else version)


# ---- many items (the CLI) ---------------------------------------------------------------------

def r2_items(store: Store, items: Sequence[Item], cfg: R2Config, writer: str, judge: str,
             get_lms: Callable[[], tuple[LM, LM | None]], source: str | None = None,
             on_event: Callable[[Item, ev.Event], None] | None = None,
             concurrency: int = 1) -> Iterator[ItemOutcome]:
    """One outcome per item (core.runs.batch: in order with `concurrency` 1, else as items finish,
    each with its `index`; "paused" when the run waits for a person).
    `writer`/`judge` are the specs the loaded models carry; `get_lms` is called only when some item
    needs running."""
    def get_job():
        writer_lm, judge_lm = get_lms()
        return lambda prompt_id, run_id: r2_job(store, writer_lm, judge_lm, prompt_id, cfg, run_id=run_id)

    return run_items(store, items, R2, cfg.as_dict(), models_name(writer, judge), get_job, source, on_event,
                     concurrency=concurrency)
