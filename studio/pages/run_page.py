"""The run-page scaffold: what the REER and R2 pages are both made of, built and wired once.

Knows: the parts every run page has (the prompt and run menus, Run / Pause / Stop, the inline check of
the settings, the status line, the progress line and the "writing now" box, accept / reject with the
review badge, the timer), the session's run id and what the page last drew (gr.State), and their
handlers: Run starting a run or resuming the one on screen (the config's refusal shown in words
under the settings), Pause and Stop acknowledged at once (studio.pages.runs.live_parts), a prompt or
a run picked, accept / reject (studio.pages.runs.set_review), reattaching on load, and the tick's
redraw (`redraw`): on stored news the page's own view of the run, its menu relabelled when its status
moved, and the transient progress whenever it changed. Ids are `{kind}-…` (reer-run, r2-status, …)
and api names `{kind}_…` (reer_pause, r2_accept, …).

A page builds a `RunPage`, lays out its own parts between the scaffold's (`top`, `status_lines`,
`writing_box`, `review_buttons`), then hands `wire` its view of a run (`show`) and what a pick or a
Stop also resets; it wires its own Run, its tick and its own commands (REER: edit, force, skip, heat
maps; R2: the judgment and reflection forms).

Does not know: either algorithm, how a run is drawn (studio.views), the settings' widgets.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr

from core.settings import SettingError
from core.store import StoreError
from studio import forms
from studio.context import StudioContext
from studio.pages.library import prompt_choices
from studio.pages.runs import (
    attach_view,
    error_block,
    live_parts,
    menus,
    review_badge,
    run_key,
    runs_menu,
    set_review,
    status_moved,
)
from studio.users import by_person

POLL_S = 1.0  # how often a run page asks the store for news
QUICK = dict(concurrency_limit=None, show_progress="hidden")  # the listeners that answer at once


def _nothing(*_) -> dict:
    return {}


class RunPage:
    """The shared components and handlers of one run page (of `kind` "reer" or "r2")."""

    def __init__(self, ctx: StudioContext, kind: str, runner, config: type, values: Callable[..., dict],
                 idle_status: Callable[[], str], pause_point: Callable, runner_error: type[Exception]):
        self.ctx, self.store, self.kind, self.runner = ctx, ctx.store, kind, runner
        self.config = config  # the engine's config class (ReerConfig, R2Config): it checks the settings
        self.values = values  # values(*settings widgets' values) -> {field path: value}
        self.idle_status = idle_status  # the status line with no run on screen
        self.pause_point = pause_point  # pause_point(progress) -> where a Pause takes effect, in words
        self.runner_error = runner_error  # the runner's refusal (shown in words, never raised)
        self.run_state = gr.State(None)  # the session's run id
        self.seen = gr.State("")  # what the page last drew (a run_key), so a tick redraws only on news
        self.live_seen = gr.State("")  # what the live parts last showed (studio.views.progress.live_key)
        self.show: Callable[..., dict] = _nothing  # the page's view of a run, set by `wire`
        self.on_pick: Callable[..., dict] = _nothing  # what a prompt or run picked also resets
        self.on_stop: Callable[[], dict] = _nothing  # what a Stop also resets

    # ---- layout: the page calls these where the parts go ----------------------------------------
    def top(self, scale: int, min_width: int, step: bool = False) -> None:
        """The top row: the prompt and run menus, then Run, Pause, (Step,) Stop."""
        k = self.kind
        with gr.Row(equal_height=True, elem_id=f"{k}-top"):
            self.prompt, self.runs = menus(self.store, k, prompt_choices(self.store))
            with gr.Column(scale=scale, min_width=min_width):
                with gr.Row(elem_id=f"{k}-buttons"):
                    self.run_btn = gr.Button("Run", variant="primary", elem_id=f"{k}-run", min_width=60)
                    self.pause_btn = gr.Button("Pause", elem_id=f"{k}-pause", min_width=60)
                    self.step_btn = gr.Button("Step", elem_id=f"{k}-step", min_width=60) if step else None
                    self.stop_btn = gr.Button("Stop", variant="stop", elem_id=f"{k}-stop", min_width=60)

    def status_lines(self) -> None:
        """Under the settings: why they cannot run ("" when fine), the status line, the progress line
        (transient, this process)."""
        k = self.kind
        self.check = gr.HTML("", elem_id=f"{k}-settings-check", padding=False)
        self.status = gr.HTML(self.idle_status(), elem_id=f"{k}-status")
        self.live = gr.HTML("", elem_id=f"{k}-progress", padding=False)

    def writing_box(self) -> None:
        """The text being written now, token by token (transient, this process)."""
        self.writing = gr.HTML("", elem_id=f"{self.kind}-writing", padding=False)

    def review_buttons(self, accept_scale: int | None = None, reject_scale: int | None = None) -> None:
        """Accept / Reject the run's trajectory and its review badge (inside the page's row)."""
        k = self.kind
        self.accept_btn = gr.Button("Accept trajectory", variant="primary", elem_id=f"{k}-accept", size="sm",
                                    scale=accept_scale)
        self.reject_btn = gr.Button("Reject", variant="stop", elem_id=f"{k}-reject", size="sm", scale=reject_scale)
        self.review = gr.HTML("", elem_id=f"{k}-review", padding=False)

    # ---- views -----------------------------------------------------------------------------------
    def review_html(self, run_id) -> str:
        return review_badge(self.store, run_id)

    def runs_menu(self, prompt_id, run_id=None) -> gr.Dropdown:
        return runs_menu(self.store, self.kind, prompt_id, run_id)

    def live_parts(self, run_id) -> tuple[str, dict]:
        """(key, {live line, writing box, buttons}) of the run's transient progress in this process."""
        return live_parts(self.runner, run_id, self.pause_point, self.live, self.writing, self.pause_btn,
                          self.stop_btn)

    def live_view(self, run_id) -> dict:
        """The live line and the writing box alone (empty with no run)."""
        parts = self.live_parts(run_id)[1] if run_id else {self.live: "", self.writing: ""}
        return {self.live: parts[self.live], self.writing: parts[self.writing]}

    def acknowledged(self, run_id) -> dict:
        """The page right after a Pause or Stop: the acknowledgement and the relabelled buttons, at once."""
        lk, parts = self.live_parts(run_id)
        return {self.seen: "", self.live_seen: lk, **parts}

    def err(self, message: str) -> dict:
        """A refusal: a toast, and the message under an empty status line (the next tick redraws)."""
        gr.Warning(message)
        return {self.status: self.idle_status() + error_block(message), self.seen: ""}

    def redraw(self, run_id, seen_key: str, live_key: str = "", *view) -> dict:
        """What a tick changes: the page's view of the run (`show(run_id, *view)`) when the store has news
        (its menu relabelled when the run's status moved), the live parts when they moved. The new key
        is under `self.seen`."""
        key = run_key(self.store, self.runner, run_id, *view)
        lk, parts = self.live_parts(run_id)
        fresh = {**parts, self.live_seen: lk} if lk != live_key else {}  # the live parts, when they moved
        if key == seen_key:
            return {self.seen: seen_key, **fresh}  # no stored news: only the live parts redrawn
        out = {**self.show(run_id, *view), self.seen: key, **fresh}
        if run_id and status_moved(key, seen_key):  # the run's status moved: relabel the menu
            out[self.runs] = self.runs_menu(self.store.get_run(run_id)["prompt_id"], run_id)
        return out

    def attach(self, prompt_id, live: tuple[str, ...]) -> dict:
        """Show `prompt_id` and its newest run; with none, the newest run in the first status of `live`
        that has one (studio.pages.runs.attach_target)."""
        menu, run_id, run_menu = attach_view(self.store, self.kind, prompt_id, live, prompt_choices(self.store))
        return {self.prompt: menu, self.run_state: run_id, self.seen: "", self.runs: run_menu}

    # ---- commands --------------------------------------------------------------------------------
    def cfg(self, *settings):
        """The run's settings from the form; the config checks them (SettingError names the field)."""
        return forms.config(self.config, self.values(*settings))

    def check_settings(self, *settings) -> dict:
        """The inline check under the settings: the config's refusal, before any Run."""
        text = forms.problem(self.config, self.values(*settings))
        return {self.check: error_block(text) if text else ""}

    def start(self, prompt_id, run_id, launch: Callable[[], str], resume: Callable[[str], None],
              resumable: Callable[[str], bool] = lambda _: True, then: Callable[[str], dict] = _nothing,
              errors: tuple = ()) -> dict:
        """Run: resume the run on screen when it is live on this prompt (and `resumable`), else
        `launch()` a new one (its id) and show it, with `then(new_id)`. A refusal is shown, never raised:
        the config's under the settings too; `errors` adds exceptions to show in words."""
        if not prompt_id:
            return self.err("Pick a prompt first (import some on the Library page).")
        try:
            if run_id:
                run = self.store.get_run(run_id)
                if run["status"] in ("running", "paused") and run["prompt_id"] == prompt_id and resumable(run_id):
                    resume(run_id)  # continue the run on screen
                    return {self.run_state: run_id, self.seen: "", **self.show(run_id)}
            new_id = launch()
        except SettingError as e:
            text = forms.error_text(e, self.config)
            return {**self.err(text), self.check: error_block(text)}
        except (ValueError, self.runner_error, StoreError, *errors) as e:
            return self.err(str(e))
        return {self.run_state: new_id, self.seen: "", self.runs: self.runs_menu(prompt_id, new_id), self.check: "",
                **self.show(new_id), **then(new_id)}

    def pause(self, run_id) -> dict:
        if not run_id or not self.runner.pause(run_id):
            return self.err("Nothing to pause: no run of this page is being driven now.")
        return self.acknowledged(run_id)

    def stop(self, run_id) -> dict:
        try:
            if not run_id or not self.runner.stop(run_id):
                return self.err("Nothing to stop: the run has finished or was never started.")
        except (self.runner_error, StoreError) as e:
            return self.err(str(e))
        return {**self.acknowledged(run_id), **self.on_stop()}

    def pick_prompt(self, prompt_id, *kept) -> dict:
        rs = self.store.list_runs(kind=self.kind, prompt_id=prompt_id) if prompt_id else []
        run_id = rs[0]["id"] if rs else None
        return {self.run_state: run_id, self.seen: "", self.runs: self.runs_menu(prompt_id, run_id),
                **self.on_pick(*kept)}

    def pick_run(self, run_id, *kept) -> dict:
        return {self.run_state: run_id, self.seen: "", **self.on_pick(*kept)}

    def set_review(self, run_id, verdict: str) -> dict:
        why = set_review(self.store, run_id, verdict)
        return self.err(why) if why else {self.review: self.review_html(run_id), self.seen: ""}

    def reviewer(self, verdict: str) -> Callable[[str], dict]:
        """The handler of Accept ("accepted") or Reject ("rejected") for the run on screen."""
        return lambda run_id: self.set_review(run_id, verdict)

    # ---- listeners -------------------------------------------------------------------------------
    def wire(self, show: Callable[..., dict], settings: list, pick_inputs: list = (), pick_outputs: list = (),
             on_pick: Callable[..., dict] = _nothing, stop_outputs: list = (),
             on_stop: Callable[[], dict] = _nothing) -> gr.Timer:
        """Wire the shared listeners: the settings' check, Pause, Stop, the menus, accept / reject.
        `show(run_id, *view)`: the page's view of a run; a pick also reads `pick_inputs` and returns
        `on_pick(*their values)` into `pick_outputs`; a Stop also returns `on_stop()` into `stop_outputs`.
        Returns the timer, for the page's tick (`redraw`)."""
        k, state = self.kind, self.run_state
        self.show, self.on_pick, self.on_stop = show, on_pick, on_stop
        gr.on([w.change for w in settings], self.check_settings, settings, [self.check], api_name=f"{k}_check",
              **QUICK)
        self.ack_out = [self.status, self.seen, self.live, self.writing, self.pause_btn, self.stop_btn,
                        self.live_seen]
        self.pause_btn.click(self.pause, state, self.ack_out, api_name=f"{k}_pause", **QUICK)
        self.stop_btn.click(self.stop, state, [*self.ack_out, *stop_outputs], api_name=f"{k}_stop", **QUICK)
        self.prompt.input(self.pick_prompt, [self.prompt, *pick_inputs], [state, self.seen, self.runs, *pick_outputs],
                          api_visibility="private", **QUICK)
        self.runs.input(self.pick_run, [self.runs, *pick_inputs], [state, self.seen, *pick_outputs],
                        api_visibility="private", **QUICK)
        for btn, verdict, name in ((self.accept_btn, "accepted", "accept"), (self.reject_btn, "rejected", "reject")):
            btn.click(by_person(self.reviewer(verdict)), state, [self.status, self.review, self.seen],
                      api_name=f"{k}_{name}", **QUICK)
        return gr.Timer(POLL_S)
