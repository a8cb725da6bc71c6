"""The Judge tab: judging queues made from the page, keyboard-first judging of one task at a time by
the logged-in person (a pairwise queue's two drafts side by side, ←/→/t), and progress per queue and
per annotator; the Agreement and Calibration sub-tabs come from studio.pages.agreement, Ranking from
studio.pages.ranking.

Knows: the layout (sub-tabs Judge, Queues, Agreement, Calibration), which drafts a new queue can
take (`refs_for`: the texts of picked R2 runs, the trajectories of picked runs, of a source, all
accepted ones, the R2 texts waiting for a person) and how each action maps onto core.judging.queue:
a task comes from `next_task` for THIS person (studio.identity.annotator_of(request)), a submit is
`submit`, a skip is `release` (the item is not handed to them again while other tasks wait for them; the store remembers it).
Other people's scores of an item are drawn only after this person's own submit, read through
`judgments(viewer=...)`, which raises ScoresHidden before that: the page has no other way to read
them. Queues made here score 1 to 5 (SCALE), so the keys 1–5 cover the scale.

Does not know: the statistics (core.judging.agreement, calibration), how keys reach the buttons
(assets/keys.js, through the legend of studio.views.judging), or logins (the launcher's auth).
"""
from __future__ import annotations

import html
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from core.judging import pairwise as pw
from core.judging import queue as jq
from core.judging.feed import waiting_refs
from core.r2.judge import DEFAULT_RUBRIC
from core.store import NotFound, Store, StoreError
from studio.identity import annotator_of
from studio.views import judging as view
from studio.views import pairwise as pview

SCALE = (1, 5)  # the score scale of queues made on this page: keys 1-5 cover it
MAX_CRITERIA = 8  # score rows on the page (core.r2.judge.JudgeConfig.max_criteria)
SOURCES = ("", "reer", "r2", "import")  # trajectories' kinds ("" = none picked)


class PageError(ValueError):
    """Bad input on the page; the message names the field and the fix."""


def _msg(text: str, kind: str = "ok") -> str:
    return f'<div class="lib-msg {kind}" role="{"alert" if kind == "error" else "status"}">{html.escape(text)}</div>'


# ---- drafts for a new queue ----------------------------------------------------------------------

def r2_versions(store: Store, run_id: str) -> list[str]:
    """`r2:RUN:VERSION` of every text an R2 run wrote (0 = the first draft, r = round r's revision)."""
    out = []
    for e in store.events(run_id):
        if e.kind == "r2_drafted":
            out.append(f"r2:{run_id}:0")
        elif e.kind == "r2_revised":
            out.append(f"r2:{run_id}:{e.round}")
    return list(dict.fromkeys(out))


def refs_for(store: Store, r2_runs=(), traj_runs=(), source: str = "", accepted: bool = False,
             waiting: bool = False) -> list[str]:
    """The drafts the picks name, each once, in pick order."""
    out: list[str] = []
    for run_id in r2_runs or ():
        out += r2_versions(store, run_id)
    if traj_runs:
        wanted = set(traj_runs)
        out += [f"traj:{t['id']}" for t in store.list_trajectories() if t["run_id"] in wanted]
    if source:
        if source not in SOURCES:
            raise PageError(f"Source: {source!r} is not one of {', '.join(s for s in SOURCES if s)}; pick one")
        out += [f"traj:{t['id']}" for t in store.list_trajectories(kind=source)]
    if accepted:
        out += [f"traj:{t['id']}" for t in store.list_trajectories(status="accepted")]
    if waiting:
        out += waiting_refs(store)
    return list(dict.fromkeys(out))


def run_choices(store: Store, kind: str | None = None) -> list[tuple[str, str]]:
    """(label, run id) of stored runs (of `kind`), newest first."""
    prompts = {}
    out = []
    for r in store.list_runs(kind=kind):
        pid = r.get("prompt_id")
        if pid and pid not in prompts:
            try:
                prompts[pid] = " ".join((store.get_prompt(pid)["query"] or "").split())[:50]
            except NotFound:
                prompts[pid] = ""
        out.append((f"{r['kind']} {r['id']} · {r['status']} · {prompts.get(pid, '')}", r["id"]))
    return out


def parse_rubric(text: str) -> list[str]:
    """One criterion per line; blank lines dropped; PageError naming the field when none is left."""
    crit = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not crit:
        raise PageError("Rubric: empty; write one criterion per line (or keep the R2 judge's)")
    if len(crit) > MAX_CRITERIA:
        raise PageError(f"Rubric: {len(crit)} criteria; the page scores at most {MAX_CRITERIA}, one per line")
    return crit


def make_queue(store: Store, name: str, rubric_text: str, overlap, refs: list[str], by: str) -> dict:
    """Create the queue and put the drafts in it; PageError/JudgingError naming the field and the fix.
    Every draft is read first, so a bad one leaves no half-made queue."""
    crit = parse_rubric(rubric_text)
    if overlap is None or float(overlap) != int(float(overlap)):
        raise PageError(f"Overlap: {overlap!r}; give a whole number of people per item, e.g. 2")
    if not refs:
        raise PageError("Drafts: none picked; pick R2 runs, runs, a source, all accepted or the waiting R2 texts")
    for ref in refs:
        if not jq.draft(store, ref)["text"].strip():
            raise PageError(f"Drafts: {ref} has an empty text; leave it out")
    q = jq.create_queue(store, (name or "").strip(), crit, overlap=int(float(overlap)), low=SCALE[0], high=SCALE[1],
                        created_by=by)
    jq.add_items(store, q["name"], refs, added_by=by)
    return q


def queue_names(store: Store) -> list[str]:
    return [q["name"] for q in jq.list_queues(store)]


# ---- the page ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JudgingPage:
    """What studio.app wires: `refresh()` redraws the queue menus and progress on tab select."""
    refresh: Callable[[], dict]
    outputs: list


def build(ctx) -> JudgingPage:
    from studio.pages import agreement, ranking

    store = ctx.store
    stamps = itertools.count(1)
    with gr.Tabs(elem_id="judge-tabs"):
        with gr.Tab("Judge", id="judge-work", elem_id="tab-judge-work"):
            with gr.Row(equal_height=True):
                queue = gr.Dropdown(queue_names(store), value=None, label="Queue", elem_id="judge-queue", scale=2,
                                    allow_custom_value=True)  # a queue made in another tab or process
                start = gr.Button("Next task", variant="primary", elem_id="judge-next", scale=0, min_width=140)
            who = gr.HTML("", elem_id="judge-who")
            task = gr.HTML(view.task_html(None, 0, "Pick a queue, then Next task."), elem_id="judge-task",
                           padding=False)
            with gr.Row():
                with gr.Column(scale=3, elem_id="judge-scores"):
                    radios = [gr.Radio([str(v) for v in range(SCALE[0], SCALE[1] + 1)], value=None,
                                       label=f"criterion {i + 1}", visible=False,
                                       elem_id=f"judge-c{i + 1}", elem_classes=["jd-crit"])
                              for i in range(MAX_CRITERIA)]
                    critique = gr.Textbox(label="Critique or note (key n): what should change; optional",
                                          elem_id="judge-note", lines=2, max_lines=6)
                    with gr.Row(visible=False, elem_id="judge-pair-row") as pair_row:
                        first = gr.Button("← First is better", variant="primary", elem_id="judge-first", scale=0,
                                          min_width=170)
                        tie = gr.Button("Tie (t)", elem_id="judge-tie", scale=0, min_width=100)
                        second = gr.Button("Second is better →", variant="primary", elem_id="judge-second",
                                           scale=0, min_width=170)
                    with gr.Row():
                        submit = gr.Button("Submit (Enter)", variant="primary", elem_id="judge-submit",
                                           min_width=180, scale=0)
                        skip = gr.Button("Skip (s)", elem_id="judge-skip", min_width=110, scale=0)
                with gr.Column(scale=2, min_width=300):
                    legend = gr.HTML(view.legend(), elem_id="judge-legend", padding=False)
                    pair_legend = gr.HTML(pview.legend(), elem_id="judge-pair-legend", padding=False, visible=False)
            msg = gr.HTML("", elem_id="judge-msg")
            after = gr.HTML("", elem_id="judge-after")
            item = gr.Number(None, precision=0, visible=False, elem_id="judge-item")
            skipped = gr.State([])
        with gr.Tab("Queues", id="judge-queues", elem_id="tab-judge-queues"):
            progress = gr.HTML(view.progress_html([], []), elem_id="judge-progress")
            refresh_btn = gr.Button("Refresh progress", size="sm", elem_id="judge-refresh", scale=0)
            gr.Markdown("### New queue")
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="e.g. week-12", elem_id="queue-name", scale=2)
                overlap = gr.Number(jq.DEFAULT_OVERLAP, precision=0,
                                    label="Overlap k (people per draft)", elem_id="queue-overlap", scale=1)
            rubric = gr.Textbox("\n".join(DEFAULT_RUBRIC), lines=5, label=f"Rubric: one criterion per line "
                                f"(scored {SCALE[0]}–{SCALE[1]})", elem_id="queue-rubric")
            gr.Markdown("Drafts: any mix of these")
            with gr.Row():
                r2_runs = gr.Dropdown(run_choices(store, "r2"), multiselect=True,
                                      label="R2 runs: every text they wrote",
                                      elem_id="queue-r2-runs")
                traj_runs = gr.Dropdown(run_choices(store), multiselect=True, label="Runs: their trajectories",
                                        elem_id="queue-runs")
            with gr.Row():
                source = gr.Dropdown([("(none)", ""), ("REER", "reer"), ("R2", "r2"), ("imported", "import")],
                                     value="", label="Every trajectory from a source", elem_id="queue-source")
                accepted = gr.Checkbox(False, label="All accepted trajectories", elem_id="queue-accepted")
                waiting = gr.Checkbox(False, label="R2 runs waiting for a person", elem_id="queue-waiting")
            count = gr.HTML('<div class="jd-meta" data-count="0">0 drafts picked.</div>', elem_id="queue-count")
            create = gr.Button("Create queue", variant="primary", elem_id="queue-create", scale=0)
            qmsg = gr.HTML("", elem_id="queue-msg")
        ag = agreement.build(ctx)
        rk = ranking.build(ctx)

    picks = [r2_runs, traj_runs, source, accepted, waiting]

    # ---- judging ---------------------------------------------------------------------------------
    def draw(t: jq.Task | pw.PairTask | None, why: str = "") -> dict:
        paired = isinstance(t, pw.PairTask)
        out = {item: None if t is None else t.item_id, critique: "", pair_row: gr.Row(visible=paired),
               submit: gr.Button(visible=not paired), legend: gr.HTML(visible=not paired),
               pair_legend: gr.HTML(visible=paired),
               task: pview.pair_html(t.as_dict(), next(stamps)) if paired else
               view.task_html(None if t is None else t.as_dict(), next(stamps), why)}
        if paired:
            return {**out, **{r: gr.Radio(visible=False, value=None) for r in radios}}
        low, high = SCALE if t is None else (int(t.low), int(t.high))
        choices = [str(v) for v in range(low, high + 1)]
        for i, r in enumerate(radios):
            shown = t is not None and i < len(t.rubric)
            out[r] = gr.Radio(choices=choices, value=None, visible=shown,
                              label=f"{i + 1}. {t.rubric[i]}" if shown else f"criterion {i + 1}")
        return out

    def next_for(q: str, me: str, skip_ids: list[int], said: str = "", skipping: int | None = None) -> dict:
        if not q:
            raise PageError("Queue: none picked; pick one (or make one under Queues)")
        take = pw.next_pair if pw.is_pairwise(jq.get_queue(store, q)) else jq.next_task
        t = take(store, q, me, exclude=skip_ids)
        if t is None and skip_ids:
            t = take(store, q, me)  # only skipped ones are left: hand them again
            skip_ids = []
        if t is not None and skipping is not None and t.item_id == skipping:  # nothing else to hand
            said = (f"Item #{skipping} is the last task left for you in queue {q}, so it is shown again: "
                    "judge it, or come back to it later.")
        why = f"Nothing left for {me} in queue {q}: every draft has its {jq.get_queue(store, q)['overlap']} people."
        return {**draw(t, why), skipped: skip_ids, who: view.STYLE + f'<div class="jd-meta">Judging as '
                f'<b id="judge-me">{html.escape(me)}</b></div>',
                msg: _msg(said or ((f"Pair #{t.item_id}: ← or → for the better draft, t for a tie."
                                    if isinstance(t, pw.PairTask) else f"Item #{t.item_id}: score each criterion, "
                                    "then Enter.") if t else why))}

    def failure(e: Exception) -> dict:
        gr.Warning(str(e))
        return {msg: _msg(str(e), "error")}

    def do_next(q, skip_ids, request: gr.Request):
        try:
            return {**next_for(q, annotator_of(request), list(skip_ids or [])), after: ""}
        except (StoreError, PageError, ValueError) as e:
            return failure(e)

    def do_submit(q, item_id, c1, c2, c3, c4, c5, c6, c7, c8, text, skip_ids, request: gr.Request):
        values = [c1, c2, c3, c4, c5, c6, c7, c8]  # MAX_CRITERIA rows (Gradio finds the request by name)
        me = annotator_of(request)
        try:
            if item_id in (None, "", 0):
                raise PageError("Nothing to submit: take a task first (Next task)")
            it = jq.get_item(store, int(item_id))
            crit = jq.get_queue(store, it["queue"])["rubric"]
            missing = [i + 1 for i in range(len(crit)) if values[i] in (None, "")]
            if missing:
                raise PageError(f"Scores: criterion {', '.join(map(str, missing))} has no score; press 1–5 on it "
                                "(↑↓ or Tab to reach it)")
            scores = {c: float(values[i]) for i, c in enumerate(crit)}
            jq.submit(store, int(item_id), me, scores, None, critique=(text or "").strip())
            seen = jq.judgments(store, int(item_id), viewer=me)  # visible now: this person has submitted
            rows = [[j["annotator"] + (" (you)" if j["annotator"] == me else ""), j["role"], f"{j['overall']:g}"
                     if j["overall"] is not None else "–"] + [f"{j['scores'].get(c):g}" if j["scores"].get(c) is not
                                                                None else "–" for c in crit] for j in seen]
            table = view.STYLE + view.table_html(["annotator", "role", "overall"] + [f"c{i + 1}" for i in
                                                                                    range(len(crit))], rows,
                                                 f"Scores of item #{int(item_id)} so far (shown after your own)",
                                                 num=tuple(range(2, 3 + len(crit))))
            out = next_for(it["queue"], me, list(skip_ids or []), f"Item #{int(item_id)} saved.")
            return {**out, after: table}
        except (StoreError, PageError, ValueError) as e:
            return failure(e)

    def do_skip(q, item_id, skip_ids, request: gr.Request):
        me = annotator_of(request)
        try:
            ids = list(skip_ids or [])
            if item_id not in (None, "", 0):
                jq.release(store, int(item_id), me)
                ids.append(int(item_id))
            return {**next_for(q, me, ids, f"Item #{int(item_id)} skipped." if item_id else "",
                               int(item_id) if item_id else None), after: ""}
        except (StoreError, PageError, ValueError) as e:
            return failure(e)

    def do_prefer(choice: str, q, item_id, text, skip_ids, request: gr.Request):
        me = annotator_of(request)
        try:
            if item_id in (None, "", 0):
                raise PageError("Nothing to judge: take a pair first (Next task)")
            pw.submit_pair(store, int(item_id), me, choice, note=(text or "").strip())
            seen = jq.judgments(store, int(item_id), viewer=me)  # visible now: this person has chosen
            it = jq.get_item(store, int(item_id))
            name = {"a": it["ref_a"], "b": it["ref_b"], "tie": "tie"}
            table = view.STYLE + view.table_html(
                ["annotator", "preferred", "saw first"],
                [[j["annotator"] + (" (you)" if j["annotator"] == me else ""), name.get(j.get("prefer"), "–"),
                  it["ref_b"] if j.get("swapped") else it["ref_a"]] for j in seen],
                f"Choices on pair #{int(item_id)} so far (shown after your own)")
            out = next_for(it["queue"], me, list(skip_ids or []), f"Pair #{int(item_id)} saved ({choice}).")
            return {**out, after: table}
        except (StoreError, PageError, ValueError) as e:
            return failure(e)

    outs = [item, task, critique, *radios, skipped, who, msg, pair_row, submit, legend, pair_legend, after]
    quick = dict(concurrency_limit=None, show_progress="hidden")
    start.click(do_next, [queue, skipped], outs, api_name="judge_next", **quick)
    queue.input(do_next, [queue, skipped], outs, api_visibility="private", **quick)
    submit.click(do_submit, [queue, item, *radios, critique, skipped], outs, api_name="judge_submit", **quick)
    skip.click(do_skip, [queue, item, skipped], outs, api_name="judge_skip", **quick)
    def prefer(choice: str):
        def handler(q, item_id, text, skip_ids, request: gr.Request):
            return do_prefer(choice, q, item_id, text, skip_ids, request)
        return handler

    for btn, choice in ((first, "first"), (second, "second"), (tie, "tie")):
        btn.click(prefer(choice), [queue, item, critique, skipped], outs, api_name=f"judge_prefer_{choice}", **quick)

    # ---- queues ----------------------------------------------------------------------------------
    def draw_progress() -> str:
        return view.progress_html([jq.progress(store, n) for n in queue_names(store)], waiting_refs(store))

    def do_count(*p):
        try:
            n = len(refs_for(store, *p))
            return {count: f'<div class="jd-meta" data-count="{n}">{n:,} draft(s) picked.</div>'}
        except (StoreError, PageError, ValueError) as e:
            return {count: _msg(str(e), "error")}

    def do_create(name_, rubric_, overlap_, r2_, runs_, source_, accepted_, waiting_, request: gr.Request):
        me = annotator_of(request)
        try:
            refs = refs_for(store, r2_, runs_, source_, accepted_, waiting_)
            q = make_queue(store, name_, rubric_, overlap_, refs, me)
            names = queue_names(store)
            return {qmsg: _msg(f"Queue {q['name']}: {len(refs)} draft(s), each judged by {q['overlap']} people. "
                               "Judge them on the Judge tab."), progress: draw_progress(),
                    queue: gr.Dropdown(choices=names, value=q["name"]), **ag.menus(names, q["name"])}
        except (StoreError, PageError, ValueError) as e:
            return {qmsg: _msg(str(e), "error")}

    for p in picks:
        p.change(do_count, picks, count, api_visibility="private", **quick)
    create.click(do_create, [name, rubric, overlap, *picks], [qmsg, progress, queue, *ag.menu_outputs],
                 api_name="judge_create_queue", concurrency_limit=1)

    def refresh() -> dict:
        names = queue_names(store)
        return {progress: draw_progress(), queue: gr.Dropdown(choices=names),
                r2_runs: gr.Dropdown(choices=run_choices(store, "r2")),
                traj_runs: gr.Dropdown(choices=run_choices(store)),
                rk.menu: gr.Dropdown(choices=ranking.pairwise_names(store)), **ag.menus(names)}

    refresh_btn.click(lambda: {progress: draw_progress()}, None, progress, api_name="judge_progress", **quick)
    return JudgingPage(refresh=refresh, outputs=[progress, queue, r2_runs, traj_runs, rk.menu, *ag.menu_outputs])
