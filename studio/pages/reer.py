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
from core.settings import SettingError
from core.store import NotFound, StoreError
from studio import forms
from studio.context import StudioContext
from studio.pages.library import prompt_choices
from studio.pages.runs import (
    attach_view,
    error_block,
    menus,
    queued_html,
    review_badge,
    run_key,
    status_moved,
)
from studio.pages.runs import live_parts as runs_live_parts
from studio.pages.runs import runs_menu as _runs_menu
from studio.pages.runs import set_review as set_run_review
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
POLL_S = 1.0  # how often a page asks the store for news
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
    """Create the page's components (inside the caller's Tab) and wire its listeners."""
    store, runner = ctx.store, ctx.runners.reer
    run_state = gr.State(None)
    seen = gr.State("")
    on_screen = gr.State(None)  # what the page shows of the run (studio.views.reer.shown_of): a command names it
    heat_of = gr.State(None)  # the run the heat maps on screen were drawn for (None: none drawn)

    with gr.Row(equal_height=True, elem_id="reer-top"):
        prompt, runs = menus(store, "reer", prompt_choices(store))
        with gr.Column(scale=3, min_width=300):
            with gr.Row(elem_id="reer-buttons"):
                run_btn = gr.Button("Run", variant="primary", elem_id="reer-run", min_width=60)
                pause_btn = gr.Button("Pause", elem_id="reer-pause", min_width=60)
                step_btn = gr.Button("Step", elem_id="reer-step", min_width=60)
                stop_btn = gr.Button("Stop", variant="stop", elem_id="reer-stop", min_width=60)
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
    check = gr.HTML("", elem_id="reer-settings-check", padding=False)  # why the settings cannot run ("" when fine)
    status = gr.HTML(status_html(None, None, False), elem_id="reer-status")
    live = gr.HTML("", elem_id="reer-progress", padding=False)  # the progress line (transient, this process)
    live_seen = gr.State("")  # what the live parts last showed (studio.views.progress.live_key)
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=480):
            with gr.Row(equal_height=True):
                gr.HTML('<div class="sub">Score by step: every candidate</div>', padding=False)
                metric = gr.Radio([("score", "score"), ("perplexity", "ppl")], value="score", show_label=False,
                                  elem_id="reer-metric", container=False, min_width=200)
            plot = gr.Plot(value=plots.empty_figure(), elem_id="reer-plot", show_label=False)
            writing = gr.HTML("", elem_id="reer-writing", padding=False)  # the draft / candidates being written
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
        accept_btn = gr.Button("Accept trajectory", variant="primary", elem_id="reer-accept", size="sm", scale=2)
        reject_btn = gr.Button("Reject", variant="stop", elem_id="reer-reject", size="sm", scale=1)
        review = gr.HTML("", elem_id="reer-review", padding=False)
    gr.HTML(render.legend_html(), padding=False)
    with gr.Row(equal_height=False):
        heat_a = gr.HTML("", elem_id="reer-heat-initial")
        heat_b = gr.HTML("", elem_id="reer-heat-current")
    timer = gr.Timer(POLL_S)

    # ---- views from the store ----------------------------------------------------------------
    def _view(run_id):
        run = store.get_run(run_id)
        evs = store.events(run_id)
        return run, evs, fold(evs)

    def _review_html(run_id) -> str:
        return review_badge(store, run_id)

    def live_parts(run_id) -> tuple[str, dict]:
        """(key, {live line, writing box, buttons}) of the run's transient progress in this process."""
        return runs_live_parts(runner, run_id, pause_point, live, writing, pause_btn, stop_btn)

    def show(run_id, metric_value="score") -> dict:
        """Everything the page draws of a run, from the store (and `on_screen`: what it shows, by identity)."""
        if not run_id:
            return {status: status_html(None, None, False), plot: plots.empty_figure(), traj: trajectory_html(None),
                    cands: candidates_html(None), review: "", live: "", writing: "", on_screen: None}
        try:
            run, evs, v = _view(run_id)
        except NotFound:
            return {status: status_html(None, None, False), on_screen: None}
        editing = runner.editing(run_id)
        if editing is not None:  # an edit asked and not yet scored: the waiting candidates are stale already
            mark_editing(v, editing)
        _, parts = live_parts(run_id)
        return {
            live: parts[live], writing: parts[writing],
            status: queued_html(runner, run_id)
            or status_html(run, v, runner.is_driving(run_id), runner.error(run_id), run.get("model") or "",
                           scorer_of(run)),
            plot: plots.reer_figure(evs, metric_value) if evs else plots.empty_figure("Writing the initial draft…"),
            traj: trajectory_html(v), cands: candidates_html(v), review: _review_html(run_id),
            on_screen: shown_of(run_id, v),
        }

    def heat_cleared(run_id) -> dict:
        """The heat maps emptied: they were drawn for another run than `run_id` (now on screen)."""
        msg = "Press Heat map to draw this run's initial and current trajectories." if run_id else ""
        return {heat_a: "", heat_b: render.placeholder_html(msg) if msg else "", heat_of: None}

    def tick(run_id, seen_key, metric_value, heat_run=None, live_key=""):
        k_ = run_key(store, runner, run_id, metric_value)
        stale = heat_cleared(run_id) if heat_run and heat_run != run_id else {}  # another run's numbers
        lk, parts = live_parts(run_id)
        fresh = {**parts, live_seen: lk} if lk != live_key else {}  # the live parts, when they moved
        if k_ == seen_key:
            return {seen: seen_key, **stale, **fresh}  # no stored news: only the live parts redrawn
        out = {**show(run_id, metric_value), seen: k_, **stale, **fresh}
        if run_id and status_moved(k_, seen_key):  # the run's status moved: relabel the menu
            out[runs] = runs_menu(store.get_run(run_id)["prompt_id"], run_id)
        return out

    def runs_menu(prompt_id, run_id=None):
        return _runs_menu(store, "reer", prompt_id, run_id)

    def attach(prompt_id=None) -> dict:
        """Show `prompt_id` and its newest run; with none, reattach to the newest live REER run."""
        menu, run_id, run_menu = attach_view(store, "reer", prompt_id, ("running", "paused"), prompt_choices(store))
        return {prompt: menu, run_state: run_id, seen: "", runs: run_menu, **box_cleared()}

    def box_cleared(note: str = "") -> dict:
        """The edit box emptied: another run is on screen, and typing for one run never edits another."""
        return {edit_text: "", edit_note: note}

    attach_outputs = [prompt, run_state, seen, runs, edit_text, edit_note]

    # ---- commands ----------------------------------------------------------------------------
    def _cfg(*values) -> ReerConfig:
        """The run's settings from the form; the config checks them (SettingError names the field)."""
        return forms.config(ReerConfig, dict(zip(SETTINGS, values)))

    def check_settings(*values) -> dict:
        """The inline check under the settings: the config's refusal, before any Run."""
        text = forms.problem(ReerConfig, dict(zip(SETTINGS, values)))
        return {check: error_block(text) if text else ""}

    def _err(message: str) -> dict:
        gr.Warning(message)
        return {status: status_html(None, None, False) + error_block(message), seen: ""}

    def start(prompt_id, run_id, steps_n, model_spec, *values):
        settings, scorer_spec = values[:len(SETTINGS)], (values[len(SETTINGS):] or ("",))[0]
        if not prompt_id:
            return _err("Pick a prompt first (import some on the Library page).")
        try:
            if run_id:
                run = store.get_run(run_id)
                if run["status"] in ("running", "paused") and run["prompt_id"] == prompt_id:
                    runner.resume(run_id, steps_n)  # continue the run on screen
                    return {run_state: run_id, seen: "", **show(run_id)}
            cfg = _cfg(*settings)
            spec = ctx.models.spec(model_spec)
            scorer = ctx.models.spec(scorer_spec) if (scorer_spec or "").strip() else ""  # the allow-list applies
            if scorer and scorer != spec:  # the same spec as the model: a one-model run, as before
                cfg = dataclasses.replace(cfg, scorer=scorer)
            new_id = runner.start(prompt_id, cfg, spec, steps_n)
        except SettingError as e:
            text = forms.error_text(e, ReerConfig)
            return {**_err(text), check: error_block(text)}
        except (ValueError, RunnerError, StoreError, LMError) as e:  # LMError: a model the app does not allow
            return _err(str(e))
        out = {run_state: new_id, seen: "", runs: runs_menu(prompt_id, new_id), check: "", **show(new_id)}
        if new_id != run_id:  # another run on screen: the box's text was for the one before
            out.update(box_cleared())
        return out

    def do_run(prompt_id, run_id, model_spec, *values):  # values: the settings, then the scorer (optional)
        return start(prompt_id, run_id, None, model_spec, *values)

    def do_step(prompt_id, run_id, model_spec, *values):
        return start(prompt_id, run_id, 1, model_spec, *values)

    def _cleared_note(box: str | None) -> str:
        if not (box or "").strip():
            return ""
        return ('<div class="reer-edit-note" data-cleared="1">The edit box was emptied: its text was for the run '
                "shown before, never for this one.</div>")

    def acknowledged(run_id) -> dict:
        """The page right after a Pause or Stop: the acknowledgement and the relabelled buttons, at once."""
        lk, parts = live_parts(run_id)
        return {seen: "", live_seen: lk, **parts}

    def do_pause(run_id):
        if not run_id or not runner.pause(run_id):
            return _err("Nothing to pause: no run of this page is being driven now.")
        return acknowledged(run_id)

    def do_stop(run_id):
        try:
            if not run_id or not runner.stop(run_id):
                return _err("Nothing to stop: the run has finished or was never started.")
        except (RunnerError, StoreError) as e:
            return _err(str(e))
        return acknowledged(run_id)

    def pick_prompt(prompt_id, box=""):
        rs = store.list_runs(kind="reer", prompt_id=prompt_id) if prompt_id else []
        run_id = rs[0]["id"] if rs else None
        return {run_state: run_id, seen: "", runs: runs_menu(prompt_id, run_id), **box_cleared(_cleared_note(box))}

    def pick_run(run_id, box=""):
        return {run_state: run_id, seen: "", **box_cleared(_cleared_note(box))}

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
            return _err("No run on screen: start one, then Pause while it writes candidates.")
        if not shown or shown.get("run") != run_id or not shown["cands"]:
            return _err("No candidates await a decision: press Pause while a step is writing candidates; "
                        "the step then holds its scored candidates for you.")
        k = int(n or 0) - 1
        if k not in shown["cands"]:
            have = ", ".join(str(i + 1) for i in sorted(shown["cands"]))
            return _err(f"Candidate {n} cannot be accepted: the scored candidates of this step are {have}.")
        ref = shown_candidate(shown, k)
        st = ReerState.from_events(store.events(run_id))  # checked here at once; the search checks again
        waiting = st.waiting()
        step, seg, _, pending = waiting or (ref.step, ref.segment, 0, None)
        if why := force_refused(ref, st, run_id, step, seg, k, pending):
            return {**_err(why), on_screen: None}
        try:
            runner.force(run_id, k, shown=ref)
        except (RunnerError, StoreError) as e:
            return _err(str(e))
        return {seen: ""}

    def do_skip(run_id, shown=None):
        if not run_id:
            return _err("No run on screen: start one first.")
        ref = None
        if shown and shown.get("run") == run_id:
            step, seg = shown["next"]
            ref = shown_segment(shown, seg, step)
        try:
            runner.skip(run_id, shown=ref)
        except (RunnerError, StoreError) as e:
            return _err(str(e))
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

    def set_review(run_id, verdict):
        why = set_run_review(store, run_id, verdict)
        return _err(why) if why else {review: _review_html(run_id), seen: ""}

    # ---- listeners -----------------------------------------------------------------------------
    settings = [k, steps, thr, draft_t, cand_t, seed, cues, prompt_set]
    shown = [status, plot, traj, cands, review, live, writing]  # the live parts last: scripts index the others
    # scripts read status.. from the front and live, writing, check from the end (on_screen is a State: not returned)
    cmd_out = [run_state, seen, runs, *shown[:5], edit_text, edit_note, live, writing, on_screen, check]
    ack_out = [status, seen, live, writing, pause_btn, stop_btn, live_seen]
    quick = dict(concurrency_limit=None, show_progress="hidden")
    # the scorer comes last, after the settings: scripts written before it existed still call reer_run
    run_btn.click(do_run, [prompt, run_state, model_box, *settings, scorer_box], cmd_out, api_name="reer_run",
                  **quick)
    step_btn.click(do_step, [prompt, run_state, model_box, *settings, scorer_box], cmd_out, api_name="reer_step",
                   **quick)
    gr.on([w.change for w in settings], check_settings, settings, [check], api_name="reer_check", **quick)
    pause_btn.click(do_pause, run_state, ack_out, api_name="reer_pause", **quick)
    stop_btn.click(do_stop, run_state, ack_out, api_name="reer_stop", **quick)
    prompt.input(pick_prompt, [prompt, edit_text], [run_state, seen, runs, edit_text, edit_note],
                 api_visibility="private", **quick)
    runs.input(pick_run, [runs, edit_text], [run_state, seen, edit_text, edit_note], api_visibility="private", **quick)
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
    accept_btn.click(by_person(lambda r: set_review(r, "accepted")), run_state, [status, review, seen],
                     api_name="reer_accept", **quick)
    reject_btn.click(by_person(lambda r: set_review(r, "rejected")), run_state, [status, review, seen],
                     api_name="reer_reject", **quick)
    # the tick also empties heat maps drawn for another run than the one now on screen (a run picked,
    # started, or attached from another page): never one run's numbers under another
    timer.tick(tick, [run_state, seen, metric, heat_of, live_seen],
               [*shown, seen, runs, heat_a, heat_b, heat_of, pause_btn, stop_btn, live_seen, on_screen],
               api_name="reer_tick", api_visibility="private", **quick)
    # a script's view of any run by id (gradio_client): the same drawing the timer does
    run_id_box = gr.Textbox(visible=False)

    def show_stored(run_id, metric_value="score") -> dict:  # also what the session saw (on_screen)
        out = show(run_id, metric_value)
        return {k: out[k] for k in (*shown[:5], on_screen) if k in out}

    def show_live(run_id) -> dict:  # the live parts alone: the progress line and the writing box
        parts = live_parts(run_id)[1] if run_id else {live: "", writing: ""}
        return {live: parts[live], writing: parts[writing]}

    run_id_box.submit(show_stored, [run_id_box, metric], [*shown[:5], on_screen], api_name="reer_show", **quick)
    live_box = gr.Textbox(visible=False)
    live_box.submit(show_live, live_box, [live, writing], api_name="reer_progress", **quick)
    return ReerPage(prompt=prompt, run_state=run_state, seen=seen, runs=runs, status=status, attach=attach,
                    attach_outputs=attach_outputs)
