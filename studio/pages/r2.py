"""The R2 page: run the writer-judge loop on one stored prompt, and judge it as a person.

Knows: the layout (prompt picker, judge mode and judge model (locked while a person judges
alone), rounds / threshold / seed, Run, Pause and Stop, an inline check of the settings (R2Config's own
refusal, redrawn as they change), status line, plot of judged scores by round with the reward
components, the judgment form with one score box per rubric criterion (labelled with the
criterion's words and the scale) plus overall and critique, the rounds as cards,
accept / reject) and how to turn a person's form into a `core.r2.judge.Judgment` (a fresh human
judgment, or an override of the model's proposal that keeps the original). It never keeps a
run's state itself: a gr.Timer polls the STORE and redraws on news, so a reload or a second tab
reattaches, including to a run that waits for a judgment. The session's run id lives in gr.State.
A run driven by this process also shows its TRANSIENT progress (never stored: the progress line
under the status, the text being written in a "writing now" box under the plot) and what a
person asked and the loop has not yet reached ("pausing at the next judgment…", "stopping…",
the buttons relabelled and disabled until the run confirms), redrawn on each tick when they
change (studio.views.progress).

What both run pages share (menus, Run / Pause / Stop, the status and progress lines, the tick's redraw,
accept / reject) is the run-page scaffold's (studio.pages.run_page.RunPage); this page adds the judge
fields and the two forms.

Does not know: the loop (core.r2.loop), how runs are driven (studio.runners.r2.R2Runner), drawing
details (studio.views.r2). With "Let me edit each reflection" (human modes), the run pauses
after each reflection (R2Config.review_reflections) and the page shows it in an editable box;
the person's text (or approval) is stored as a `Reflected` event by "human" and the revision is
written from it. Every human act (a judgment, an override, a reflection, accept / reject) runs as the
request's person (studio.users.by_person), so it records its annotator. Under the judge fields, one
line says how far the chosen model judge agrees with people on the prompt's rubric
(core.judging.calibration.trust), a warning when unknown or low, pointing to Judge → Calibrate.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from core.judging.calibration import trust
from core.r2.config import R2Config
from core.r2.jobs import NoPendingJudgment
from core.r2.judge import (
    BadJudgment,
    JudgeConfig,
    Judgment,
    human_judgment,
    override_judgment,
    rubric_for,
)
from core.r2.state import R2State
from core.store import NotFound, StoreError
from studio import forms
from studio.context import StudioContext
from studio.pages.run_page import QUICK, RunPage
from studio.pages.runs import queued_html
from studio.runners.r2 import R2Runner, R2RunnerError
from studio.users import by_person
from studio.views import r2 as r2_render

REAL = R2Config()
# small budgets so a CPU demo finishes a round in about a minute; the labels give the real defaults
DEMO = dict(max_rounds=1, threshold=REAL.threshold, seed=REAL.seed, plan=False, draft_max_new_tokens=160,
            reflection_max_new_tokens=80, revision_max_new_tokens=192, judge_max_new_tokens=160)
MAX_CRITERIA = JudgeConfig().max_criteria  # score boxes on the form (rubrics are cut to this many)
MODE_CHOICES = [("model", "model"), ("human: you judge", "human"), ("model + your override", "model_then_human")]
# the form's settings, in the order of the r2_run API's inputs (then review_reflections, judge tokens)
SETTINGS = ("judge_mode", "max_rounds", "threshold", "seed", "plan", "draft_max_new_tokens",
            "reflection_max_new_tokens", "revision_max_new_tokens")
PAUSE_POINT = "at the next judgment (you can then accept or override it)"  # where R2 pauses (core.r2.loop)


@dataclass(frozen=True)
class R2Page:
    """Handles the app needs to link this page with others."""

    prompt: gr.Dropdown  # r2-prompt
    run_state: gr.State  # the session's run id
    attach: object  # attach(prompt_id | None) -> {component: value}
    attach_outputs: list


def judge_model_props(mode: str) -> dict:
    """The judge model menu's state for a judge mode: a person judging alone needs no model, so the
    menu is not editable then (and says why)."""
    human = mode == "human"
    return dict(interactive=not human, info="not used: you judge" if human else "empty: the writer's model judges")


def judge_model_field(mode: str) -> gr.Dropdown:
    """The update of the judge model menu when the judge mode changes (judge_model_props)."""
    return gr.Dropdown(**judge_model_props(mode))


def judge_trust_html(store, mode: str, spec: str | None, prompt_id: str | None, app_model: str) -> str:
    """One line under the judge fields: how far the model judge (`spec`, empty: the app's model) agrees
    with people on the prompt's rubric (core.judging.calibration.trust), a warning when that is unknown
    or low; "" when a person judges alone."""
    if mode == "human":
        return ""
    spec = (spec or "").strip() or app_model
    criteria = None
    if prompt_id:
        try:
            criteria = store.get_prompt(prompt_id).get("rubric")
        except StoreError:
            criteria = None
    try:
        t = trust(store, spec, rubric_for(criteria))
    except (StoreError, ValueError) as exc:  # a spec no model name takes, a store that cannot say
        t = {"level": "unknown", "message": f"agreement of {spec} with people is unknown ({exc})"}
    warn = t["level"] in ("unknown", "low")
    see = " — see Judge → Calibrate" if warn else ""
    return (f'<div class="r2-judge-trust {"warn" if warn else "ok"}" data-level="{t["level"]}" '
            f'style="margin: 2px 0 6px; {"color: #b45309;" if warn else "opacity: .75;"}">'
            f'{"⚠ " if warn else ""}{html.escape(t["message"])}{see}</div>')


def box_label(criterion: str, n: int, jcfg: JudgeConfig) -> str:
    """A criterion's score box label: its number, its own words and the scale."""
    return f"{n}. {criterion} ({jcfg.low:g}-{jcfg.high:g}, optional)"


def _score(value, field: str, jcfg: JudgeConfig):
    """A box's value as a judgment wants it (whole numbers as int); BadJudgment naming `field` and
    the scale when it is not a number on it."""
    try:
        x = None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if x is not None and not jcfg.low <= x <= jcfg.high:  # NaN fails too
        raise BadJudgment(f"{field}: {value!r} is off the scale; give a score from {jcfg.low:g} to {jcfg.high:g}")
    return int(x) if x is not None and x.is_integer() else x


def judgment_from_form(state: R2State, version: int, scores: list, overall, critique: str) -> Judgment:
    """The Judgment a person's form gives for `version` of the run in `state`: an override of
    the model's proposal when there is a readable one (unchanged: the proposal itself, still the
    model's), else a person's judgment. Raises BadJudgment naming the field (a criterion by its
    own words) and the fix."""
    if state.started is None:
        raise BadJudgment("the run has not started")
    rubric = tuple(state.started.rubric)
    jcfg = JudgeConfig(**state.started.settings.get("judge", {}))
    if overall is None:
        raise BadJudgment(f"Overall: give a score from {jcfg.low:g} to {jcfg.high:g}")
    given = {c: _score(s, f"Criterion {i + 1} “{c[:80]}”", jcfg) for i, (c, s) in enumerate(zip(rubric, scores))}
    overall = _score(overall, "Overall", jcfg)
    req = state.requests.get(version)
    proposed = req.proposed if req is not None else None
    if proposed and proposed.get("parsed"):
        model = Judgment.from_dict(proposed)
        j = override_judgment(model, overall=overall, critique=critique or "", scores=given)
        return model if not j.changes else j
    return human_judgment(rubric, overall, critique or "", {c: s for c, s in given.items() if s is not None}, jcfg)


def _values(mode_, rounds_, thr_, seed_, plan_, draft_, refl_, rev_, edit_refl_=False, judge_t_=None) -> dict:
    """The form's settings by field path. Editing reflections applies to the human modes only."""
    values = dict(zip(SETTINGS, (mode_, rounds_, thr_, seed_, plan_, draft_, refl_, rev_)))
    values["review_reflections"] = bool(edit_refl_) and mode_ != "model"
    if judge_t_ is not None:
        values["judge.max_new_tokens"] = judge_t_
    return values


def build(ctx: StudioContext, runner: R2Runner | None = None) -> R2Page:
    """Create the page's components (inside the caller's Tab) on the run-page scaffold
    (studio.pages.run_page) and wire what is R2's own: the judge fields, the judgment and reflection forms."""
    store = ctx.store
    runner = runner or ctx.runners.r2  # shares the app's run slots with REER (studio.runners.hub)
    page = RunPage(ctx, "r2", runner, R2Config, _values, lambda: r2_render.status_html(None, [], False),
                   lambda p: PAUSE_POINT, R2RunnerError)
    run_state, seen, live_seen = page.run_state, page.seen, page.live_seen
    form_for = gr.State("")  # "run:version" the form was filled for ("" when hidden)

    page.top(scale=2, min_width=200)
    prompt, runs = page.prompt, page.runs
    with gr.Row(equal_height=True, elem_id="r2-settings-row"):
        # labels, help, bounds and real defaults [in brackets] come from R2Config
        mode = forms.widget(R2Config, "judge_mode", value="human", choices=MODE_CHOICES, show_default=False,
                            info="", elem_id="r2-judge-mode", scale=5, min_width=420)
        judge_spec = gr.Dropdown(choices=ctx.model_choices(), value="", label="Judge model", elem_id="r2-judge-model",
                                 allow_custom_value=ctx.model_free_text, scale=3, min_width=200,
                                 **judge_model_props("human"))
        rounds = forms.widget(R2Config, "max_rounds", value=DEMO["max_rounds"], info="",  # the config checks it
                              elem_id="r2-rounds-n", scale=1, min_width=110)
        thr = forms.widget(R2Config, "threshold", value=DEMO["threshold"], step=0.5, info="", elem_id="r2-threshold",
                           scale=1, min_width=110)
        seed = forms.widget(R2Config, "seed", value=DEMO["seed"], show_default=False, info="", elem_id="r2-seed",
                            scale=1, min_width=90)
    with gr.Accordion(f"Writer token budgets · model {ctx.model_name} (small demo budgets, real defaults in brackets)",
                      open=False, elem_id="r2-settings"):
        with gr.Row():
            edit_refl = forms.widget(R2Config, "review_reflections", value=True, show_default=False,
                                     elem_id="r2-edit-reflections")
            plan = forms.widget(R2Config, "plan", value=DEMO["plan"], elem_id="r2-plan")
            draft_t = forms.widget(R2Config, "draft_max_new_tokens", value=DEMO["draft_max_new_tokens"],
                                   elem_id="r2-draft-tokens")
            refl_t = forms.widget(R2Config, "reflection_max_new_tokens", value=DEMO["reflection_max_new_tokens"],
                                  elem_id="r2-reflection-tokens")
            rev_t = forms.widget(R2Config, "revision_max_new_tokens", value=DEMO["revision_max_new_tokens"],
                                 elem_id="r2-revision-tokens")
            judge_t = forms.widget(R2Config, "judge.max_new_tokens", value=DEMO["judge_max_new_tokens"],
                                   elem_id="r2-judge-tokens")
    trust_line = gr.HTML("", elem_id="r2-judge-trust", padding=False)  # how far the model judge agrees with people
    page.status_lines()
    check, status, live = page.check, page.status, page.live
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=460):
            with gr.Column(visible=False, elem_id="r2-judge-form", elem_classes=["r2-form"]) as form:
                form_head = gr.HTML("", elem_id="r2-judge-text", padding=False)
                boxes = []  # labelled with their criteria when a request fills the form; judgment_from_form
                for row_start in range(0, MAX_CRITERIA, 2):  # checks the scale (naming the criterion)
                    with gr.Row(equal_height=True):
                        for i in range(row_start, row_start + 2):
                            boxes.append(gr.Number(value=None, label=f"Criterion {i + 1}", step=1,
                                                   elem_id=f"r2-judge-score-{i + 1}", visible=False, min_width=200))
                with gr.Row(equal_height=True):
                    overall = gr.Number(value=None, label=f"Overall ({REAL.judge.low:g}-{REAL.judge.high:g})",
                                        step=0.5, elem_id="r2-judge-overall", scale=1, min_width=110)
                    critique = gr.Textbox(label="Critique: what should change (the writer reflects on it)", lines=3,
                                          max_lines=8, elem_id="r2-judge-critique", scale=5)
                with gr.Row():
                    submit = gr.Button("Submit judgment", variant="primary", elem_id="r2-judge-submit")
            with gr.Column(visible=False, elem_id="r2-reflection-form", elem_classes=["r2-form"]) as refl_form:
                refl_head = gr.HTML("", elem_id="r2-reflection-head", padding=False)
                refl_text = gr.Textbox(label="Reflection (first person: the writer's own thought; the revision follows it)",
                                       lines=4, max_lines=12, elem_id="r2-reflection-text")
                refl_btn = gr.Button("Use this reflection", variant="primary", elem_id="r2-reflection-submit")
            gr.HTML('<div class="sub">Judged score by version, and each round\'s reward</div>', padding=False)
            plot = gr.Plot(value=r2_render.empty_figure(), elem_id="r2-plot", show_label=False)
            page.writing_box()  # the plan / draft / judgment being written
            writing = page.writing
            with gr.Row(equal_height=True, elem_id="r2-review-row"):
                page.review_buttons()
                review = page.review
        with gr.Column(scale=5, min_width=420):
            gr.HTML('<div class="sub">Rounds (newest first)</div>', padding=False)
            rounds_view = gr.HTML(r2_render.rounds_html([]), elem_id="r2-rounds")

    # ---- views from the store ----------------------------------------------------------------
    def hidden_form() -> dict:
        return {form: gr.Column(visible=False), refl_form: gr.Column(visible=False), form_for: ""}

    def fill_form(run_id, evs) -> dict:
        """The form the run waits on: the judgment (prefilled with the model's proposal) or the
        reflection to edit; both hidden when it waits for nothing."""
        s = R2State.from_events(evs)
        req = s.pending_request()
        if s.started is None or runner.is_driving(run_id):
            return hidden_form()
        refl = s.pending_reflection()
        if req is None and refl is not None:
            head = (f'<div class="r2-ask" data-round="{refl.round}"><b>The writer\'s reflection, round {refl.round}</b>'
                    ' · <span class="hint">Edit it or use it as it is: the revision is written from it, and it goes '
                    "into the trajectory in the writer's voice (no judge, no scores).</span></div>")
            return {form: gr.Column(visible=False), refl_form: gr.Column(visible=True), refl_head: head,
                    refl_text: refl.text, form_for: f"{run_id}:r{refl.round}"}
        if req is None:
            return hidden_form()
        rubric = list(s.started.rubric)[:MAX_CRITERIA]
        jcfg = JudgeConfig(**s.started.settings.get("judge", {}))
        prop = req.proposed if req.proposed and req.proposed.get("parsed") else None
        pscores = (prop or {}).get("scores") or {}
        what = "the first draft" if req.version == 0 else f"revision {req.version}"
        note = ("The model's judgment is filled in: change what you disagree with, or submit it as it is."
                if prop else f"Score each criterion below (optional, {jcfg.low:g} to {jcfg.high:g}), give an overall "
                             "score and a critique.")
        head = (f'<div class="r2-ask" data-version="{req.version}"><b>Your judgment of {what}</b> · '
                f'<span class="hint">{html.escape(note)}</span>'
                f'<details open><summary>The text to judge</summary><div class="t">{html.escape(req.text)}</div>'
                f"</details></div>")
        out = {form: gr.Column(visible=True), refl_form: gr.Column(visible=False), form_head: head, form_for: f"{run_id}:{req.version}",
               overall: gr.Number(value=(prop or {}).get("overall"), label=f"Overall ({jcfg.low:g}-{jcfg.high:g})"),
               critique: (prop or {}).get("critique") or ""}
        for i, box in enumerate(boxes):
            if i < len(rubric):
                out[box] = gr.Number(value=pscores.get(rubric[i]), visible=True, label=box_label(rubric[i], i + 1, jcfg))
            else:
                out[box] = gr.Number(value=None, visible=False)
        return out

    def show(run_id) -> dict:
        if not run_id:
            return {status: r2_render.status_html(None, [], False), plot: r2_render.empty_figure(),
                    rounds_view: r2_render.rounds_html([]), review: ""}
        try:
            run, evs = store.get_run(run_id), store.events(run_id)
        except NotFound:
            return {status: r2_render.status_html(None, [], False)}
        return {status: queued_html(runner, run_id)
                or r2_render.status_html(run, evs, runner.is_driving(run_id), runner.error(run_id)),
                plot: r2_render.r2_figure(evs), rounds_view: r2_render.rounds_html(evs), review: page.review_html(run_id)}

    def tick(run_id, seen_key, filled, live_key=""):
        out = page.redraw(run_id, seen_key, live_key)
        k_ = out[seen]
        if k_ == seen_key:
            return out
        if run_id and k_ not in ("none", "gone"):
            f = fill_form(run_id, store.events(run_id))
            if f.get(form_for) != filled:  # a new request (or none): never overwrite a form being typed in
                out.update(f)
        elif filled:
            out.update(hidden_form())
        return out

    def attach(prompt_id=None) -> dict:
        """Show `prompt_id` and its newest R2 run; with none, the newest live (or waiting) R2 run."""
        return {**page.attach(prompt_id, ("paused", "running")), form_for: "x"}

    attach_outputs = [prompt, run_state, seen, form_for, runs]

    # ---- commands ----------------------------------------------------------------------------
    def do_run(prompt_id, run_id, judge_, *settings):
        def launch() -> str:
            cfg = page.cfg(*settings)
            if cfg.judge_mode != "human" and (judge_ or "").strip():
                runner.judge_lm(judge_)  # load it now, so a bad spec is reported here
            return runner.start(prompt_id, cfg, judge_)

        def started(new_id) -> dict:  # "starting: loading the model" at once
            # live_seen "" makes the next tick redraw the live parts (the run may pause before it comes)
            return {**hidden_form(), **page.live_view(new_id), live_seen: ""}

        # a run waiting for a judgment is not resumed: it waits for the form (an interrupted one continues)
        return page.start(prompt_id, run_id, launch, runner.resume, then=started,
                          resumable=lambda r: not R2State.from_events(store.events(r)).pending_request())

    def do_judge(run_id, filled, ov, crit, *scores):
        if not run_id:
            return page.err("No run on screen: start one first.")
        try:
            s = R2State.from_events(store.events(run_id))
            req = s.pending_request()
            if req is None:
                raise NoPendingJudgment("This run is not waiting for a judgment (someone may have judged it in "
                                        "another tab).")
            if filled and filled != f"{run_id}:{req.version}":
                raise NoPendingJudgment("The form is for another request: it has been refreshed, check it and "
                                        "submit again.")
            j = judgment_from_form(s, req.version, list(scores), ov, crit)
            shown = int(filled.rsplit(":", 1)[1]) if filled else req.version  # the version the form showed
            runner.judge(run_id, j, version=shown)  # refused if another version waits by the time it lands
        except (BadJudgment, NoPendingJudgment, R2RunnerError, StoreError, ValueError) as e:
            out = page.err(str(e))
            if isinstance(e, NoPendingJudgment):
                out[form_for] = "x"  # refill (or hide) at the next tick
            return out
        return {seen: "", **hidden_form(), **show(run_id)}

    def do_reflect(run_id, filled, text):
        if not run_id:
            return page.err("No run on screen: start one first.")
        try:
            refl = R2State.from_events(store.events(run_id)).pending_reflection()
            if refl is None:
                raise NoPendingJudgment("This run is not waiting for a reflection (it may have moved on in another tab).")
            if filled and filled != f"{run_id}:r{refl.round}":
                raise NoPendingJudgment("The form is for another step: it has been refreshed, check it and submit again.")
            runner.reflect(run_id, text)
        except (BadJudgment, NoPendingJudgment, R2RunnerError, StoreError) as e:
            out = page.err(str(e))
            if isinstance(e, NoPendingJudgment):
                out[form_for] = "x"
            return out
        return {seen: "", **hidden_form(), **show(run_id)}

    # ---- listeners -----------------------------------------------------------------------------
    settings = [mode, rounds, thr, seed, plan, draft_t, refl_t, rev_t, edit_refl, judge_t]
    shown = [status, plot, rounds_view, review]
    form_out = [form, form_head, form_for, overall, critique, *boxes, refl_form, refl_head, refl_text]
    timer = page.wire(show, settings, pick_outputs=[form_for], on_pick=lambda: {form_for: "x"},
                      stop_outputs=form_out, on_stop=hidden_form)
    quick = QUICK
    page.run_btn.click(do_run, [prompt, run_state, judge_spec, *settings],
                       [run_state, seen, runs, *shown, *form_out, live, writing, check, live_seen], api_name="r2_run",
                       concurrency_limit=2, show_progress="hidden")
    mode.change(judge_model_field, mode, judge_spec, api_visibility="private", **quick)
    gr.on([mode.change, judge_spec.change, prompt.change],
          lambda m, j, p: judge_trust_html(store, m, j, p, ctx.model_name), [mode, judge_spec, prompt], trust_line,
          api_name="r2_judge_trust", **quick)
    submit.click(by_person(do_judge), [run_state, form_for, overall, critique, *boxes], [seen, *shown, *form_out],
                 api_name="r2_judge", **quick)
    refl_btn.click(by_person(do_reflect), [run_state, form_for, refl_text], [seen, *shown, *form_out],
                   api_name="r2_reflect", **quick)
    timer.tick(tick, [run_state, seen, form_for, live_seen],
               [*shown, seen, runs, *form_out, live, writing, page.pause_btn, page.stop_btn, live_seen],
               api_visibility="private", **quick)
    # a script's view of any run by id (gradio_client): the same drawing the timer does
    run_id_box = gr.Textbox(visible=False)

    def show_by_id(r):  # shows the run in this session too (a script attaches to a run by its id)
        return {**show(r), **(fill_form(r, store.events(r)) if r else hidden_form()), run_state: r or None, seen: "",
                **page.live_view(r)}

    run_id_box.submit(show_by_id, run_id_box, [*shown, *form_out, run_state, seen, live, writing], api_name="r2_show",
                      **quick)
    return R2Page(prompt=prompt, run_state=run_state, attach=attach, attach_outputs=attach_outputs)
