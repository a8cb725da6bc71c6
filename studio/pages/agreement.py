"""The Agreement and Calibration sub-tabs of the Judge tab.

Knows: per queue, core.judging.agreement's report (Krippendorff's alpha per criterion and overall,
pairwise agreement, judgments per annotator) and its high-disagreement list, with a resolve step
(a lead's overall score and/or a discussion note, saved by agreement.resolve under the logged-in
person's name); and calibration: a model judge (the page's model dropdown, ctx.model_choices(),
checked by the studio's model policy) asked about a seeded sample of a queue's drafts in a thread
(studio.runners.judging), its progress polled by a timer, then core.judging.calibration.report as
a table and a scatter per criterion (studio.views.judging). The figures are the core's: the page
computes none of its own.

Does not know: how judgments are collected (studio.pages.judging), the statistics' formulas.
"""
from __future__ import annotations

import html
import random
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from core.judging import agreement as agr
from core import annotators as who
from core.judging import calibration as cal
from core.judging import queue as jq
from core.store import StoreError
from studio.identity import annotator_of
from studio.runners.judging import CalibrationRequest, CalibrationRunner
from studio.views import judging as view

POLL_S = 1.0  # how often the page reads a running calibration's progress
METHODS = ("generate", "logprob", "auto")  # core.r2.judge.JudgeConfig.method


def _msg(text: str, kind: str = "ok") -> str:
    return f'<div class="lib-msg {kind}" role="{"alert" if kind == "error" else "status"}">{html.escape(text)}</div>'


class PageError(ValueError):
    """Bad input on the page; the message names the field and the fix."""


def sample(store, queue: str, n, seed: int = 0) -> list[str]:
    """A seeded sample of `n` of the queue's drafts (all when n is at least their number), in item order."""
    if not queue:
        raise PageError("Queue: none picked; pick the queue whose drafts the model should judge")
    refs = [i["ref"] for i in jq.items(store, queue)]
    if not refs:
        raise PageError(f"Queue {queue}: it has no drafts; add some under Queues")
    if n is None or float(n) != int(float(n)) or int(float(n)) < 1:
        raise PageError(f"Sample size: {n!r}; give a whole number of drafts, 1 or more")
    k = min(int(float(n)), len(refs))
    keep = set(random.Random(seed).sample(range(len(refs)), k))
    return [r for i, r in enumerate(refs) if i in keep]


def _score(text) -> float | None:
    """The lead's typed score: None when empty; PageError naming the field when not a number."""
    raw = str(text if text is not None else "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise PageError(f"Lead's overall score: {raw[:20]!r} is not a number; type one on the queue's scale, "
                        "or leave it empty for a note only") from None


@dataclass(frozen=True)
class AgreementPage:
    """`menus(names, value)`: the queue dropdowns' updates; `menu_outputs`: those dropdowns."""
    menus: Callable[..., dict]
    menu_outputs: list


def build(ctx) -> AgreementPage:
    store = ctx.store
    runner = CalibrationRunner(store, ctx.models.lm)
    names = [q["name"] for q in jq.list_queues(store)]
    with gr.Tab("Agreement", id="judge-agreement", elem_id="tab-judge-agreement"):
        with gr.Row(equal_height=True):
            a_queue = gr.Dropdown(names, value=None, label="Queue", elem_id="agree-queue", scale=2,
                                  allow_custom_value=True)
            a_show = gr.Button("Show agreement", variant="primary", elem_id="agree-show", scale=0, min_width=190)
        a_report = gr.HTML("", elem_id="agree-report")
        a_dis = gr.HTML("", elem_id="agree-disagreements")
        gr.Markdown("#### Resolve an item: a lead's judgment, a discussion note, or both")
        with gr.Row(equal_height=True):
            r_item = gr.Dropdown([], value=None, label="Item", elem_id="agree-item", scale=1,
                                 allow_custom_value=True)
            r_overall = gr.Textbox("", label="Lead's overall score",
                                   placeholder="on the queue's scale; empty: a note only",
                                   elem_id="agree-overall", scale=1)
            r_note = gr.Textbox(label="Discussion note", elem_id="agree-note", scale=3)
            r_btn = gr.Button("Resolve", variant="primary", elem_id="agree-resolve", scale=0, min_width=110)
        a_msg = gr.HTML("", elem_id="agree-msg")
    with gr.Tab("Calibration", id="judge-calibration", elem_id="tab-judge-calibration"):
        with gr.Row(equal_height=True):
            c_model = gr.Dropdown(ctx.model_choices(), value="", label="Model judge", elem_id="cal-model",
                                  allow_custom_value=ctx.model_free_text, scale=2)
            c_queue = gr.Dropdown(names, value=None, label="Queue (its drafts)", elem_id="cal-queue",
                                  scale=2, allow_custom_value=True)
            c_n = gr.Number(6, precision=0, minimum=1, label="Sample size", elem_id="cal-n", scale=1)
            c_method = gr.Dropdown(list(METHODS), value="generate", label="How scores are read", elem_id="cal-method",
                                   scale=1)
        with gr.Row():
            c_go = gr.Button("Calibrate", variant="primary", elem_id="cal-go", scale=0, min_width=130)
            c_stop = gr.Button("Stop", variant="stop", elem_id="cal-stop", scale=0, min_width=90)
            c_show = gr.Button("Show report", elem_id="cal-show", scale=0, min_width=160)
        c_status = gr.HTML("", elem_id="cal-status")
        c_report = gr.HTML("", elem_id="cal-report")
        c_plot = gr.Plot(view.empty_figure("Calibrate a model judge to see its scores against people's."),
                         elem_id="cal-plot", show_label=False)
        c_job = gr.State(None)
        timer = gr.Timer(POLL_S, active=False)

    quick = dict(concurrency_limit=None, show_progress="hidden")

    # ---- agreement --------------------------------------------------------------------------------
    def visible(q: str, me: str) -> set[int] | None:
        """The items whose scores `me` may see: all (None) for a lead, else those they judged."""
        return None if ctx.is_lead(me) else jq.judged_items(store, q, me)

    def draw_agreement(q: str, me: str, said: str = "") -> dict:
        if not q:
            raise PageError("Queue: none picked; pick the queue to measure")
        only = visible(q, me)
        rep = agr.report(store, q, only)
        counts = {a: v["judged"] for a, v in jq.progress(store, q)["annotators"].items()}
        dis = agr.disagreements(store, q, only=only)
        choices = [(f"#{i['id']} {i['ref']}" + (" (disagreement)" if i["id"] in {d["item_id"] for d in dis} else ""),
                    i["id"]) for i in jq.items(store, q) if only is None or i["id"] in only]
        first = dis[0]["item_id"] if dis else None
        if only is not None:
            said = (f"Showing the {len(only)} item(s) you have judged: scores of an item are shown only to the people "
                    "who judged it, and to a lead. " + said).strip()
        return {a_report: view.agreement_html(rep, counts), a_dis: view.disagreements_html(dis),
                r_item: gr.Dropdown(choices=choices, value=first), a_msg: _msg(said) if said else ""}

    def do_show(q, request: gr.Request):
        try:
            return draw_agreement(q, annotator_of(request))
        except (StoreError, PageError, ValueError) as e:
            gr.Warning(str(e))
            return {a_msg: _msg(str(e), "error")}

    def do_resolve(q, item_id, overall, note, request: gr.Request):
        me = annotator_of(request)
        try:
            if item_id in (None, ""):
                raise PageError("Item: none picked; pick the item to resolve")
            if not ctx.is_lead(me):
                raise PageError(f"Resolve: {me} is not a lead; a lead resolves disagreements (the role `lead` in the "
                                "users file, `palimpsest users add NAME --lead`, or `palimpsest app --lead NAME`)")
            agr.resolve(store, int(item_id), resolver=me, overall=_score(overall), note=note or "")
            return {**draw_agreement(q, me, f"Item #{int(item_id)} resolved by {me}."), r_note: "", r_overall: ""}
        except (StoreError, PageError, ValueError) as e:
            gr.Warning(str(e))
            return {a_msg: _msg(str(e), "error")}

    a_outs = [a_report, a_dis, r_item, a_msg]
    a_show.click(do_show, a_queue, a_outs, api_name="judge_agreement", **quick)
    a_queue.input(do_show, a_queue, a_outs, api_visibility="private", **quick)
    r_btn.click(do_resolve, [a_queue, r_item, r_overall, r_note], [*a_outs, r_note, r_overall],
                api_name="judge_resolve", **quick)

    # ---- calibration ------------------------------------------------------------------------------
    def draw_report(q: str, spec: str, me: str) -> dict:
        name = who.model_name(ctx.models.spec(spec))
        rep = cal.report(store, q, name, only=visible(q, me))
        qrow = jq.get_queue(store, q)
        fig = (view.scatter(rep, qrow["low"], qrow["high"]) if rep["judged_by_model"]
               else view.empty_figure(f"{name} has judged no draft of queue {q} yet."))
        return {c_report: view.calibration_html(rep), c_plot: fig}

    def status_html(job) -> str:
        state = "error" if job.error else "ok"
        if not job.finished:
            text = f"Calibrating {job.model}: {job.done} of {job.total or '?'} drafts · {job.last}"
        elif job.error:
            text = f"{job.model}: {job.error}"
        else:
            text = f"{job.model}: {job.done} draft(s) judged. People's judgments of the same drafts are in queue " \
                   f"{job.request.queue}."
        return (f'<div data-job="{html.escape(job.id)}" data-done="{job.done}" data-total="{job.total}" '
                f'data-finished="{int(job.finished)}">{_msg(text, state)}</div>')

    def do_calibrate(spec, q, n, method, request: gr.Request):
        me = annotator_of(request)
        try:
            spec = ctx.models.spec(spec)  # refused here when the policy does not allow it
            if method not in METHODS:
                raise PageError(f"How scores are read: {method!r}; pick one of {', '.join(METHODS)}")
            refs = sample(store, q, n)
            job = runner.start(CalibrationRequest(queue=q, spec=spec, refs=tuple(refs), method=method, by=me),
                               who.model_name(spec))
            return {c_job: job.id, c_status: status_html(job), timer: gr.Timer(active=True)}
        except (StoreError, PageError, ValueError) as e:
            gr.Warning(str(e))
            return {c_status: _msg(str(e), "error")}

    def do_tick(job_id, spec, request: gr.Request):
        job = runner.get(job_id)
        if job is None:
            return {timer: gr.Timer(active=False)}
        out = {c_status: status_html(job)}
        if job.finished:
            out[timer] = gr.Timer(active=False)
            try:
                out.update(draw_report(job.request.queue, job.request.spec, annotator_of(request)))
            except (StoreError, ValueError) as e:
                out[c_status] = _msg(str(e), "error")
        return out

    def do_stop(job_id):
        return {c_status: _msg("Stopping after the draft being judged..." if runner.stop(job_id)
                               else "No calibration is running.")}

    def do_report(spec, q, request: gr.Request):
        try:
            if not q:
                raise PageError("Queue: none picked; pick the queue the model judged")
            return {**draw_report(q, spec, annotator_of(request)), c_status: ""}
        except (StoreError, PageError, ValueError) as e:
            gr.Warning(str(e))
            return {c_status: _msg(str(e), "error")}

    c_go.click(do_calibrate, [c_model, c_queue, c_n, c_method], [c_job, c_status, timer], api_name="judge_calibrate",
               concurrency_limit=1)
    timer.tick(do_tick, [c_job, c_model], [timer, c_status, c_report, c_plot], api_visibility="private", **quick)
    c_stop.click(do_stop, c_job, c_status, api_name="judge_calibrate_stop", **quick)
    c_show.click(do_report, [c_model, c_queue], [c_report, c_plot, c_status], api_name="judge_calibration", **quick)

    def menus(names_: list[str], value: str | None = None) -> dict:
        upd = (lambda: gr.Dropdown(choices=names_, value=value)) if value else (lambda: gr.Dropdown(choices=names_))
        return {a_queue: upd(), c_queue: upd()}

    return AgreementPage(menus=menus, menu_outputs=[a_queue, c_queue])
