"""The Train page: fine-tune a model on a chat export (or DPO on a dpo export) in a separate process and watch it.

Knows: the layout (data: a chat or dpo export recorded in the store, any JSONL path, or a fresh export
of the accepted trajectories; model, max steps, learning rate, LoRA, eval fraction, method (sft /
dpo), output folder; Start / Stop; status line with the before/after held-out perplexity, or for
dpo the held-out pair accuracy and reward margin; live loss plot)
and where things go by default (next to the app's store file); typed paths must lie in the
studio's folder or be a recorded export (studio.workspace) unless the app allows any path. It never keeps a run's state: a
gr.Timer polls the store's train_events, so a reload reattaches to the newest training run.

Does not know: training (core.train.trainer, run by `palimpsest train` in its own process through
studio.runners.train.TrainRunner), exporting (core.export), drawing (studio.views.train).
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from core.models.lm import LMError
from core.settings import SettingError
from core.store import StoreError
from core.train.data import DataError
from core.train.trainer import TrainConfig
from studio import forms
from studio.context import StudioContext
from studio.runners.train import TrainRequest, TrainRunner, TrainRunnerError
from studio.views import train as train_render

POLL_S = 1.0
DEMO_STEPS = 10  # a CPU demo: a few steps on the built-in model take about a minute


@dataclass(frozen=True)
class TrainPage:
    out_state: gr.State  # the session's training output folder (the key of its run)
    attach: object
    attach_outputs: list
    data: gr.Dropdown  # train-data: the menu of recorded chat exports (or a typed path)
    refresh_data: object  # refresh_data(value) -> {data: the menu read again from the store, value kept}


def export_choices(store) -> list[tuple[str, str]]:
    """(label, chat JSONL path) of every chat export the store recorded whose file still exists."""
    try:
        from core.export import DATA_FILES, list_exports
    except ImportError:  # core.export absent: a path is typed instead
        return []
    try:
        rows = list_exports(store)
    except Exception:  # noqa: BLE001  (no exports table yet)
        return []
    out = []
    for r in rows:
        if r.get("format") not in ("chat", "dpo"):
            continue
        f = Path(r["out"]) / DATA_FILES[r["format"]]
        if f.is_file():
            what = "pair(s), dpo" if r["format"] == "dpo" else "record(s)"
            out.append((f"export #{r['id']} · {r['count']} {what} · {str(r.get('created_at', ''))[:16]}", str(f)))
    return out


def build(ctx: StudioContext, runner: TrainRunner | None = None) -> TrainPage:
    store = ctx.store
    runner = runner or ctx.runners.train
    base = Path(store.path).parent if store.path else Path.cwd()
    out_state = gr.State(None)
    seen = gr.State("")

    with gr.Row(equal_height=False, elem_id="train-top"):
        data = gr.Dropdown(choices=export_choices(store), value=None, label="Data: a chat or dpo export, or a JSONL path",
                           elem_id="train-data", allow_custom_value=True, scale=6, min_width=360)
        build_btn = gr.Button("Export accepted trajectories", elem_id="train-build-export", scale=2, min_width=160,
                              size="md")
        with gr.Column(scale=2, min_width=200):
            with gr.Row(elem_id="train-buttons"):
                start_btn = gr.Button("Start", variant="primary", elem_id="train-run", min_width=60)
                stop_btn = gr.Button("Stop", variant="stop", elem_id="train-stop", min_width=60)
    with gr.Row(equal_height=True):
        # labels, help and bounds come from TrainConfig; the page trains by steps, so at least one
        # the models the studio was started with (a dropdown; typed only with --allow-model/--allow-any-model)
        model = gr.Dropdown(choices=[v or ctx.model_name for _, v in ctx.model_choices()], value=ctx.model_name,
                            label=forms.label_of(TrainConfig, "model", False), elem_id="train-model",
                            allow_custom_value=ctx.model_free_text, scale=3, min_width=200)
        steps = forms.widget(TrainConfig, "max_steps", value=DEMO_STEPS, minimum=1, show_default=False,
                             elem_id="train-max-steps", scale=1, min_width=100)
        lr = forms.widget(TrainConfig, "lr", value=0, label="LR (0: default)", minimum=0,
                          maximum=None, elem_id="train-lr", scale=1, min_width=120)  # the config says what is too high
        lora = forms.widget(TrainConfig, "lora", show_default=False, elem_id="train-lora", scale=1, min_width=80)
        eval_frac = forms.widget(TrainConfig, "eval_frac", value=0.34, step=0.05, elem_id="train-eval-frac", scale=1,
                                 min_width=110)
        method = forms.widget(TrainConfig, "method", show_default=False, elem_id="train-method", scale=1, min_width=110)
        out_dir = gr.Textbox(value="", label="Output folder (empty: a new one next to the store)",
                             elem_id="train-out", scale=3, min_width=200, max_lines=1)
    msg = gr.HTML("", elem_id="train-msg", padding=False)
    status = gr.HTML(train_render.status_html(None, []), elem_id="train-status")
    plot = gr.Plot(value=train_render.empty_figure(), elem_id="train-plot", show_label=False)
    timer = gr.Timer(POLL_S)

    # ---- views from the store ------------------------------------------------------------------
    def show(out) -> dict:
        if not out:
            return {status: train_render.status_html(None, []), plot: train_render.empty_figure()}
        run = runner.run_for(out)
        rc = runner.returncode(out)
        process = "running" if runner.running(out) else ("" if rc is None else f"exited {rc}")
        tail = runner.log_tail(out) if rc not in (None, 0) else ""
        if run is None:
            return {status: train_render.status_html(None, [], process, tail), plot: train_render.empty_figure()}
        evs = store.train_events(run["id"])
        total = next((e.total_steps for e in evs if e.kind == "train_started"), None)
        return {status: train_render.status_html(run, evs, process, tail, stopping=runner.stopping(out)),
                plot: train_render.loss_figure(store.train_loss(run["id"]), total), **stop_button(out)}

    def stop_button(out) -> dict:
        """Stop relabelled "Stopping…" and disabled from the click until the process has ended."""
        busy = bool(out) and runner.stopping(out)
        return {stop_btn: gr.Button(value="Stopping…" if busy else "Stop", interactive=not busy)}

    def live_status(out) -> dict:
        """The status line alone, redrawn every tick while the process runs (elapsed and estimate move)."""
        run = runner.run_for(out) if out else None
        if run is None or not runner.running(out):
            return {}
        return {status: train_render.status_html(run, store.train_events(run["id"]), "running",
                                                 stopping=runner.stopping(out))}

    def key(out) -> str:
        if not out:
            return "none"
        run = runner.run_for(out)
        n = len(store.train_events(run["id"])) if run else -1
        return (f"{out}:{n}:{run['status'] if run else ''}:{runner.returncode(out)}:{runner.running(out)}:"
                f"{runner.stopping(out)}")

    def tick(out, seen_key):
        k_ = key(out)
        if k_ == seen_key:
            return {seen: seen_key, **live_status(out)}
        return {**show(out), seen: k_}

    def attach() -> dict:
        rs = store.list_train_runs()
        return {out_state: rs[0]["out_dir"] if rs else None, seen: "",
                data: gr.Dropdown(choices=export_choices(store))}

    attach_outputs = [out_state, seen, data]

    def refresh_data(value=None) -> dict:
        """The exports menu read again from the store (an export made on the Export page since), keeping
        what is chosen or typed."""
        return {data: gr.Dropdown(choices=export_choices(store), value=value, allow_custom_value=True)}

    # ---- commands ------------------------------------------------------------------------------
    def _msg(text: str, kind: str = "") -> str:
        return f'<div class="lib-msg {kind}" role="status">{html.escape(text)}</div>'

    def do_start(data_, model_, steps_, lr_, lora_, frac_, out_, method_="sft"):
        out_ = (out_ or "").strip() or str(base / "models" / f"{Path(model_ or 'model').name}-{time.strftime('%Y%m%d-%H%M%S')}")
        try:  # the config checks the settings (SettingError names the field); the runner the data and folder
            ctx.models.spec(model_)  # ModelNotAllowed unless the studio was started with it
            ws = ctx.paths()  # typed paths stay inside the store's folder (or a recorded export)
            if (data_ or "").strip():
                data_ = str(ws.path(data_, "Data", also=[f for _, f in export_choices(store)]))
            out_ = str(ws.path(out_, "Output folder"))
            cfg = forms.config(TrainConfig, {"model": model_ or "", "max_steps": steps_, "lr": lr_ or None,
                                             "lora": bool(lora_), "eval_frac": frac_, "method": method_ or "sft"})
            req = TrainRequest(data=(data_ or "").strip(), out_dir=out_, model=cfg.model, max_steps=cfg.max_steps,
                               lr=cfg.lr, lora=cfg.lora, eval_frac=cfg.eval_frac, method=cfg.method)
            key_ = runner.start(req)
        except SettingError as e:
            message = forms.error_text(e, TrainConfig)
            gr.Warning(message)
            return {msg: _msg(message, "error")}
        except (TrainRunnerError, DataError, StoreError, ValueError, TypeError, LMError) as e:  # PathNotAllowed too
            gr.Warning(str(e))
            return {msg: _msg(str(e), "error")}
        return {out_state: key_, seen: "", msg: _msg(f"Training started in its own process; model and log go to {key_}"),
                **show(key_)}

    def do_stop(out):
        if not out or not runner.stop(out):
            m = "Nothing to stop: no training process of this studio is running."
            gr.Warning(m)
            return {msg: _msg(m, "warn")}
        return {seen: "", msg: _msg("Stopping… Stop sent (SIGINT): the step in progress finishes and is checkpointed; "
                                    "run `palimpsest train ... --resume` to continue."), **stop_button(out)}

    def do_build():
        try:
            from core.export import export
        except ImportError:
            return {msg: _msg("This build has no exporter (core.export): give a chat JSONL path instead.", "error")}
        dest = base / "exports" / f"chat-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            rep = export(store, "chat", dest, status="accepted")
        except Exception as e:  # noqa: BLE001  (ExportError says what to do; anything else must reach the user too)
            gr.Warning(str(e))
            return {msg: _msg(str(e), "error")}
        return {data: gr.Dropdown(choices=export_choices(store), value=rep.files[0]),
                msg: _msg(f"Exported {rep.count} accepted trajectory record(s) to {rep.files[0]}")}

    quick = dict(concurrency_limit=None, show_progress="hidden")
    start_btn.click(do_start, [data, model, steps, lr, lora, eval_frac, out_dir, method],
                    [out_state, seen, msg, status, plot, stop_btn],
                    api_name="train_run", **quick)
    stop_btn.click(do_stop, out_state, [seen, msg, stop_btn], api_name="train_stop", **quick)
    build_btn.click(do_build, None, [data, msg], api_name="train_build_export", concurrency_limit=1)
    timer.tick(tick, [out_state, seen], [status, plot, seen, stop_btn], api_visibility="private", **quick)
    out_box = gr.Textbox(visible=False)
    out_box.submit(show, out_box, [status, plot, stop_btn], api_name="train_show", **quick)
    return TrainPage(out_state=out_state, attach=attach, attach_outputs=attach_outputs, data=data,
                     refresh_data=refresh_data)
