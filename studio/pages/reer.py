"""The REER page: run, watch and steer the search on one stored prompt.

Knows: the layout (prompt picker, model, scorer and settings, Run / Pause / Step / Stop, status line,
live plot, trajectory with the segment under work highlighted, candidate cards, accept a held
candidate or skip a segment, heat maps before/after, hand edits, accept/reject) and how to turn
stored events into those views (studio.views.plots, studio.views.reer). It never keeps a run's
state itself: a gr.Timer polls the STORE about once a second and redraws only when the run has
news, so a reload, a second tab or a run driven by another process shows the same thing. The
session's run id lives in gr.State. The live parts are the exception: a run driven by this
process also shows its TRANSIENT progress (the runner's, never stored: the progress line under
the status, the draft and candidates token by token in a "writing now" box under the plot) and
what a person asked and the engine has not yet reached ("pausing…", "stopping…", with the
Pause / Stop buttons relabelled and disabled until the run confirms), redrawn on each tick
when they change (studio.views.progress). A person's edit, forced candidate, skip, accept or
reject runs as the request's person (studio.users.by_person), so the SegmentDecided event or the
review act records its annotator. A force, edit or skip also names what the page showed (a
session State `on_screen`, drawn with the cards: studio.views.reer.shown_of), and the search refuses
it, in words on the page, when that is no longer what waits (core.reer.search). An edit while
candidates wait makes them stale at once (the cards say so; they cannot be accepted). The edit box
holds only what the person typed or loaded for the run on screen: picking a segment loads its text
in the browser (no late reply can overwrite typing), and a run or prompt picked clears the box.

What both run pages share (menus, Run / Pause / Stop, the status and progress lines, the tick's redraw,
accept / reject) is the run-page scaffold's (studio.pages.run_page.RunPage); this page adds Step, the
edit box, force and skip, the metric and the heat maps.

Does not know: the search (core.reer.search), how runs are driven (studio.runners.reer.ReerRunner, ctx.runners.reer),
or other pages (the app links them through `ReerPage`).
"""
from __future__ import annotations

import dataclasses
import html
import logging
from dataclasses import dataclass

import gradio as gr

from core.models.lm import LMError
from core.models.scoring import score, split_reference
from core.reer.config import ReerConfig
from core.store import NotFound, StoreError
from studio import forms
from studio.context import StudioContext
from studio.pages.run_page import QUICK, RunPage
from studio.pages.runs import queued_html
from studio.runners.reer import RunnerError
from studio.users import by_person
from studio.views import heatmap as render
from studio.views import plots
from core.reer.search import force_refused
from core.reer.state import ReerState
from studio.views.reer import (
    candidates_html,
    fold,
    mark_editing,
    shown_candidate,
    shown_of,
    shown_segment,
    status_html,
    trajectory_html,
)

log = logging.getLogger(__name__)
REAL = ReerConfig()  # the search's real defaults (docs/design.md), shown next to the demo defaults
# small budgets so a CPU demo shows points within a minute; the labels give the real defaults
DEMO = dict(candidates=2, max_steps=4, threshold=REAL.threshold, draft_max_new_tokens=192,
            candidate_max_new_tokens=96, seed=REAL.seed)
# the form's settings, in the order of its widgets (and of the reer_run API's inputs)
SETTINGS = ("candidates", "max_steps", "threshold", "draft_max_new_tokens", "candidate_max_new_tokens", "seed",
            "reflection_cues", "prompts")
# picking a segment number loads its text from the trajectory on screen, in the browser: at once, so
# no late reply overwrites what the person types next; typing not yet rescored is kept, with a note
LOAD_SEGMENT_JS = """(n, typed) => {
  const segs = [...document.querySelectorAll('#reer-trajectory .seg .t')].map(e => e.textContent);
  const i = Math.round(Number(n)) - 1, t = typed || '', last = window.__reerLoaded || '';
  if (t.trim() && t !== last && !segs.some(s => s.trim() === t.trim())) {
    return [t, '<div class="reer-edit-note" data-kept="1">Kept your text in the box: it replaces segment ' + (i + 1) +
      ' when you press Rescore my edit. To load segment ' + (i + 1) + "'s own text, clear the box and pick it again.</div>"];
  }
  const text = i >= 0 && i < segs.length ? segs[i] : '';
  window.__reerLoaded = text;
  return [text, text ? '' : '<div class="reer-edit-note">Segment ' + (i + 1) + ' does not exist: the trajectory has ' +
    segs.length + ' segment(s).</div>'];
}"""


@dataclass(frozen=True)
class ReerPage:
    """Handles the app needs to link this page with others."""

    prompt: gr.Dropdown  # reer-prompt
    run_state: gr.State  # the session's run id
    seen: gr.State  # what the page last drew (a key), so a tick redraws only on news
    runs: gr.Dropdown  # reer-runs: this prompt's runs
    status: gr.HTML
    attach: object  # attach(prompt_id | None) -> {component: value}: show a prompt and its newest run
    attach_outputs: list


def pause_point(p) -> str:
    """Where a REER Pause takes effect, in words, for what the run is doing now (core.reer.search:
    before the next expansion, or before the decision of the step under way)."""
    stage = p.stage if p is not None else ""
    if stage == "candidates" or (stage == "scoring" and "candidate" in p.phase):
        return "after these candidates are written and scored (they then wait for your decision)"
    if stage in ("loading", "draft") or (stage == "scoring" and "draft" in p.phase):
        return "once the draft is written and scored, before the first step"
    return "before the next step"


def scorer_choices(ctx: StudioContext) -> list[tuple[str, str]]:
    """(label, value) pairs of the Scorer menu: "" (the run's own model scores), then every allowed spec."""
    return [("the model above (one model writes and scores)", "")] + [(s, s) for s in ctx.models.policy.specs]


def scorer_of(run: dict) -> str:
    """The spec that scored a stored run: its settings' `scorer`, else its model."""
    return str((run.get("settings") or {}).get("scorer") or "").strip() or (run.get("model") or "")


def build(ctx: StudioContext) -> ReerPage:
    """Create the page's components (inside the caller's Tab) on the run-page scaffold
    (studio.pages.run_page) and wire what is REER's own: Step, the edit box, force and skip, heat maps."""
    store, runner = ctx.store, ctx.runners.reer
    page = RunPage(ctx, "reer", runner, ReerConfig, lambda *values: dict(zip(SETTINGS, values)),
                   lambda: status_html(None, None, False), pause_point, RunnerError)
    run_state, seen, live_seen = page.run_state, page.seen, page.live_seen
    on_screen = gr.State(None)  # what the page shows of the run (studio.views.reer.shown_of): a command names it
    heat_of = gr.State(None)  # the run the heat maps on screen were drawn for (None: none drawn)

    page.top(scale=3, min_width=300, step=True)
    prompt, runs = page.prompt, page.runs
    with gr.Accordion(f"Settings — model {ctx.model_name}; small demo budgets, real defaults in brackets",
                      open=False, elem_id="reer-settings"):
        model_box = gr.Dropdown(choices=ctx.model_choices(), value="", label="Model (loaded once, on Run)",
                                info="the models this studio was started with (palimpsest app --model, "
                                     "--allow-model)", allow_custom_value=ctx.model_free_text,
                                elem_id="reer-model")
        scorer_box = gr.Dropdown(choices=scorer_choices(ctx), value="", label="Scorer (the perplexity model)",
                                 info="the model that scores y under every thinking: the draft, each candidate, "
                                      "your edits, the threshold and the heat map (a base model scores with "
                                      "template none); the same allowed models as above",
                                 allow_custom_value=ctx.model_free_text, elem_id="reer-scorer")
        with gr.Row():  # labels, help, bounds and real defaults [in brackets] come from ReerConfig
            k = forms.widget(ReerConfig, "candidates", value=DEMO["candidates"], slider=True,
                             elem_id="reer-candidates-n")
            steps = forms.widget(ReerConfig, "max_steps", value=DEMO["max_steps"], elem_id="reer-max-steps")
            thr = forms.widget(ReerConfig, "threshold", value=DEMO["threshold"], elem_id="reer-threshold", step=0.01)
        with gr.Row():
            draft_t = forms.widget(ReerConfig, "draft_max_new_tokens", value=DEMO["draft_max_new_tokens"],
                                   elem_id="reer-draft-tokens")
            cand_t = forms.widget(ReerConfig, "candidate_max_new_tokens", value=DEMO["candidate_max_new_tokens"],
                                  elem_id="reer-candidate-tokens")
            seed = forms.widget(ReerConfig, "seed", value=DEMO["seed"], elem_id="reer-seed")
            cues = forms.widget(ReerConfig, "reflection_cues", elem_id="reer-cues", show_default=False)
        prompt_set = forms.widget(ReerConfig, "prompts", elem_id="reer-prompts")
    page.status_lines()
    check, status, live = page.check, page.status, page.live
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=480):
            with gr.Row(equal_height=True):
                gr.HTML('<div class="sub">Score by step: every candidate</div>', padding=False)
                metric = gr.Radio([("score", "score"), ("perplexity", "ppl")], value="score", show_label=False,
                                  elem_id="reer-metric", container=False, min_width=200)
            plot = gr.Plot(value=plots.empty_figure(), elem_id="reer-plot", show_label=False)
            page.writing_box()  # the draft / candidates being written
            writing = page.writing
            cands = gr.HTML(candidates_html(None), elem_id="reer-candidates")
            with gr.Row(equal_height=True, elem_id="reer-decide"):
                force_no = gr.Number(value=1, precision=0, minimum=1, label="Candidate #", show_label=False,
                                     container=False, elem_id="reer-force-n", scale=0, min_width=80)
                force_btn = gr.Button("← Accept candidate #", elem_id="reer-force", size="sm", scale=2)
                skip_btn = gr.Button("Skip this segment", elem_id="reer-skip", size="sm", scale=2)
        with gr.Column(scale=5, min_width=400):
            gr.HTML('<div class="sub">Current trajectory</div>', padding=False)
            traj = gr.HTML(trajectory_html(None), elem_id="reer-trajectory")
            with gr.Row(equal_height=False, elem_id="reer-edit"):
                seg_no = gr.Number(value=1, precision=0, minimum=1, label="Segment", elem_id="reer-edit-seg",
                                   scale=1, min_width=90)
                edit_text = gr.Textbox(label="Your text for that segment (pause first; it is scored at once)",
                                       lines=3, max_lines=8, elem_id="reer-edit-text", scale=5)
            edit_note = gr.HTML("", elem_id="reer-edit-note", padding=False)  # what became of the box's text
            edit_btn = gr.Button("Rescore my edit", elem_id="reer-edit-apply", size="sm")
    with gr.Row(equal_height=False, elem_id="reer-heat-row"):
        heat_btn = gr.Button("Heat map: initial vs current", elem_id="reer-heat-btn", size="sm", scale=2)
        page.review_buttons(accept_scale=2, reject_scale=1)
        review = page.review
    gr.HTML(render.legend_html(), padding=False)
    with gr.Row(equal_height=False):
        heat_a = gr.HTML("", elem_id="reer-heat-initial")
        heat_b = gr.HTML("", elem_id="reer-heat-current")

    # ---- views from the store ----------------------------------------------------------------
    def show(run_id, metric_value="score") -> dict:
        """Everything the page draws of a run, from the store (and `on_screen`: what it shows, by identity)."""
        if not run_id:
            return {status: status_html(None, None, False), plot: plots.empty_figure(), traj: trajectory_html(None),
                    cands: candidates_html(None), review: "", live: "", writing: "", on_screen: None}
        try:
            run, evs = store.get_run(run_id), store.events(run_id)
        except NotFound:
            return {status: status_html(None, None, False), on_screen: None}
        v = fold(evs)
        editing = runner.editing(run_id)
        if editing is not None:  # an edit asked and not yet scored: the waiting candidates are stale already
            mark_editing(v, editing)
        return {
            **page.live_view(run_id),
            status: queued_html(runner, run_id)
            or status_html(run, v, runner.is_driving(run_id), runner.error(run_id), run.get("model") or "",
                           scorer_of(run)),
            plot: plots.reer_figure(evs, metric_value) if evs else plots.empty_figure("Writing the initial draft…"),
            traj: trajectory_html(v), cands: candidates_html(v), review: page.review_html(run_id),
            on_screen: shown_of(run_id, v),
        }

    def heat_cleared(run_id) -> dict:
        """The heat maps emptied: they were drawn for another run than `run_id` (now on screen)."""
        msg = "Press Heat map to draw this run's initial and current trajectories." if run_id else ""
        return {heat_a: "", heat_b: render.placeholder_html(msg) if msg else "", heat_of: None}

    def tick(run_id, seen_key, metric_value, heat_run=None, live_key=""):
        stale = heat_cleared(run_id) if heat_run and heat_run != run_id else {}  # another run's numbers
        return {**page.redraw(run_id, seen_key, live_key, metric_value), **stale}

    def attach(prompt_id=None) -> dict:
        """Show `prompt_id` and its newest run; with none, reattach to the newest live REER run."""
        return {**page.attach(prompt_id, ("running", "paused")), **box_cleared()}

    def box_cleared(note: str = "") -> dict:
        """The edit box emptied: another run is on screen, and typing for one run never edits another."""
        return {edit_text: "", edit_note: note}

    attach_outputs = [prompt, run_state, seen, runs, edit_text, edit_note]

    # ---- commands ----------------------------------------------------------------------------
    def start(prompt_id, run_id, steps_n, model_spec, *values):
        settings, scorer_spec = values[:len(SETTINGS)], (values[len(SETTINGS):] or ("",))[0]

        def launch() -> str:
            cfg = page.cfg(*settings)
            spec = ctx.models.spec(model_spec)
            scorer = ctx.models.spec(scorer_spec) if (scorer_spec or "").strip() else ""  # the allow-list applies
            if scorer and scorer != spec:  # the same spec as the model: a one-model run, as before
                cfg = dataclasses.replace(cfg, scorer=scorer)
            return runner.start(prompt_id, cfg, spec, steps_n)

        # another run on screen: the box's text was for the one before
        return page.start(prompt_id, run_id, launch, lambda r: runner.resume(r, steps_n),
                          then=lambda new_id: box_cleared() if new_id != run_id else {},
                          errors=(LMError,))  # LMError: a model the app does not allow

    def do_run(prompt_id, run_id, model_spec, *values):  # values: the settings, then the scorer (optional)
        return start(prompt_id, run_id, None, model_spec, *values)

    def do_step(prompt_id, run_id, model_spec, *values):
        return start(prompt_id, run_id, 1, model_spec, *values)

    def _cleared_note(box: str | None = "") -> dict:
        """A prompt or run picked: the box emptied, with a note when it held text."""
        if not (box or "").strip():
            return box_cleared()
        return box_cleared('<div class="reer-edit-note" data-cleared="1">The edit box was emptied: its text was for '
                           "the run shown before, never for this one.</div>")

    def _note_err(message: str) -> dict:
        """A refusal of the edit box's text: a toast, and a line under the box that stays (the status redraws)."""
        gr.Warning(message)
        return {edit_note: f'<div class="reer-edit-note reer-error" role="alert">{html.escape(message)}</div>'}

    def do_edit(run_id, n, text, shown=None):
        if not run_id:
            return _note_err("No run on screen: start one, pause it, then edit a segment.")
        if not (text or "").strip():
            return _note_err("Your segment text is empty: write the replacement first.")
        v = fold(store.events(run_id))
        i = int(n or 0) - 1
        if not (0 <= i < len(v.segments)):
            return _note_err(f"Segment {n} does not exist: the trajectory has {len(v.segments)} segment(s).")
        if text.strip() == v.segments[i].strip():  # nothing changed: recording it would be a false human decision
            return _note_err(f"Your text is the same as segment {n}'s; change it, or use Accept / Skip for the "
                             "candidates instead.")
        ref = shown_segment(shown, i) if shown and shown.get("run") == run_id else None
        if ref is not None and ref.text_hash != shown_of(run_id, v)["segments"][i]:
            return _note_err(f"Segment {n} changed since it was shown to you (the search rewrote it): your text "
                             "is still in the box; look at the segment and press Rescore my edit again.")
        try:
            runner.edit(run_id, i, text, shown=ref)
        except (RunnerError, StoreError) as e:
            return _note_err(str(e))
        mark_editing(v, i)  # the waiting candidates are stale from now on: shown so at once
        stale = " The candidates that waited are stale now: they cannot be accepted." if v.stale_by is not None else ""
        return {seen: "", cands: candidates_html(v), on_screen: shown_of(run_id, v),
                edit_note: f'<div class="reer-edit-note" data-sent="1">Scoring your text for segment {n}…{stale}</div>'}

    def do_force(run_id, n, shown=None):
        if not run_id:
            return page.err("No run on screen: start one, then Pause while it writes candidates.")
        if not shown or shown.get("run") != run_id or not shown["cands"]:
            return page.err("No candidates await a decision: press Pause while a step is writing candidates; "
                        "the step then holds its scored candidates for you.")
        k = int(n or 0) - 1
        if k not in shown["cands"]:
            have = ", ".join(str(i + 1) for i in sorted(shown["cands"]))
            return page.err(f"Candidate {n} cannot be accepted: the scored candidates of this step are {have}.")
        ref = shown_candidate(shown, k)
        st = ReerState.from_events(store.events(run_id))  # checked here at once; the search checks again
        waiting = st.waiting()
        step, seg, _, pending = waiting or (ref.step, ref.segment, 0, None)
        if why := force_refused(ref, st, run_id, step, seg, k, pending):
            return {**page.err(why), on_screen: None}
        try:
            runner.force(run_id, k, shown=ref)
        except (RunnerError, StoreError) as e:
            return page.err(str(e))
        return {seen: ""}

    def do_skip(run_id, shown=None):
        if not run_id:
            return page.err("No run on screen: start one first.")
        ref = None
        if shown and shown.get("run") == run_id:
            step, seg = shown["next"]
            ref = shown_segment(shown, seg, step)
        try:
            runner.skip(run_id, shown=ref)
        except (RunnerError, StoreError) as e:
            return page.err(str(e))
        return {seen: ""}

    def do_heat(run_id):
        if not run_id:
            return {heat_a: "", heat_b: render.placeholder_html("No run on screen."), heat_of: None}
        v = fold(store.events(run_id))
        if not v.initial:
            return {heat_a: "", heat_b: render.placeholder_html("No initial draft yet: wait for the first point."),
                    heat_of: None}
        cfg = ReerConfig.from_dict(v.settings).scoring()
        try:
            lm = runner.scorer_for(store.get_run(run_id))  # the run's scorer draws its heat map
            out = {heat_of: run_id}
            for comp, segs, title in ((heat_a, v.initial, "initial trajectory"), (heat_b, v.segments, "current")):
                s = score(lm, v.query, segs, v.reference, cfg, keep_tokens=True)
                prefix, scored = split_reference(v.reference, cfg)
                out[comp] = (f'<div class="heat-title" data-run="{html.escape(run_id)}">Run '
                             f'{html.escape(run_id[:8])}: reference under the '
                             f'{title}: perplexity {s.ppl:,.2f} · '
                             f"score {s.score:.4f}</div>" +
                             render.heatmap_html(s.tokens or [], s.logprobs or [], cfg.clip_min, text=scored,
                                                 unscored_prefix=prefix))
            return out
        except (LMError, StoreError, RunnerError) as e:
            return {heat_a: "", heat_b: render.error_html(str(e)), heat_of: None}

    # ---- listeners -----------------------------------------------------------------------------
    settings = [k, steps, thr, draft_t, cand_t, seed, cues, prompt_set]
    shown = [status, plot, traj, cands, review, live, writing]  # the live parts last: scripts index the others
    # scripts read status.. from the front and live, writing, check from the end (on_screen is a State: not returned)
    cmd_out = [run_state, seen, runs, *shown[:5], edit_text, edit_note, live, writing, on_screen, check]
    timer = page.wire(show, settings, pick_inputs=[edit_text], pick_outputs=[edit_text, edit_note],
                      on_pick=_cleared_note)
    quick = QUICK
    # the scorer comes last, after the settings: scripts written before it existed still call reer_run
    page.run_btn.click(do_run, [prompt, run_state, model_box, *settings, scorer_box], cmd_out, api_name="reer_run",
                       **quick)
    page.step_btn.click(do_step, [prompt, run_state, model_box, *settings, scorer_box], cmd_out,
                        api_name="reer_step", **quick)
    metric.change(lambda: {seen: ""}, None, [seen], api_visibility="private", **quick)
    # only a person's change of the number loads a segment (.input, not .change), in the browser, never over typing
    seg_no.input(None, [seg_no, edit_text], [edit_text, edit_note], js=LOAD_SEGMENT_JS, api_visibility="private",
                 **quick)
    edit_btn.click(by_person(do_edit), [run_state, seg_no, edit_text, on_screen],
                   [status, seen, cands, on_screen, edit_note], api_name="reer_edit", **quick)
    force_btn.click(by_person(do_force), [run_state, force_no, on_screen], [status, seen, on_screen],
                    api_name="reer_force", **quick)
    skip_btn.click(by_person(do_skip), [run_state, on_screen], [status, seen], api_name="reer_skip", **quick)
    heat_btn.click(do_heat, run_state, [heat_a, heat_b, heat_of], api_name="reer_heatmap", concurrency_limit=2)
    # the tick also empties heat maps drawn for another run than the one now on screen (a run picked,
    # started, or attached from another page): never one run's numbers under another
    timer.tick(tick, [run_state, seen, metric, heat_of, live_seen],
               [*shown, seen, runs, heat_a, heat_b, heat_of, page.pause_btn, page.stop_btn, live_seen, on_screen],
               api_name="reer_tick", api_visibility="private", **quick)
    # a script's view of any run by id (gradio_client): the same drawing the timer does
    run_id_box = gr.Textbox(visible=False)

    def show_stored(run_id, metric_value="score") -> dict:  # also what the session saw (on_screen)
        out = show(run_id, metric_value)
        return {k: out[k] for k in (*shown[:5], on_screen) if k in out}

    run_id_box.submit(show_stored, [run_id_box, metric], [*shown[:5], on_screen], api_name="reer_show", **quick)
    live_box = gr.Textbox(visible=False)
    live_box.submit(page.live_view, live_box, [live, writing], api_name="reer_progress", **quick)
    return ReerPage(prompt=prompt, run_state=run_state, seen=seen, runs=runs, status=status, attach=attach,
                    attach_outputs=attach_outputs)
