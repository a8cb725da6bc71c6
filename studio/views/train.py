"""Drawing a training run from its stored events: the status line (step, loss, before/after
held-out perplexity, how it ended) and the live loss plot.

Pure functions of the events (core.events Train*) and of the process's state; every text from
a process or a file is HTML-escaped. Knows nothing of Gradio or of how training runs.
"""
from __future__ import annotations

import html
import time
from typing import Sequence

import plotly.graph_objects as go

from core import events as ev
from core.runs.progress import duration_words
from studio.views.plots import message_figure

_E = html.escape


def _ppl(x) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def timing_text(events: Sequence[ev.Event], now: float) -> str:
    """"38 s elapsed · about 2 min left" of a training run that goes on, from its events: elapsed since
    its (latest) start; time left = steps left x the measured seconds per step, plus the final
    evaluation at the measured length of the first ("estimating…" until a step was measured)."""
    started = next((e for e in reversed(events) if isinstance(e, ev.TrainStarted)), None)
    if started is None:
        return ""
    mine = [e for e in events if e.t >= started.t]
    progress = [e for e in mine if isinstance(e, ev.TrainProgress)]
    before = next((e for e in events if isinstance(e, ev.TrainEvaluated) and e.stage == "before"), None)
    elapsed = f"{duration_words(now - started.t)} elapsed"
    per = next((e.seconds_per_step for e in reversed(progress) if e.seconds_per_step), None)
    if per is None:
        return elapsed + " · estimating…"
    last = progress[-1]
    eval_s = before.seconds if before is not None else 0.0
    left = max(0, last.total_steps - last.step) * per + eval_s
    if last.step >= last.total_steps:  # evaluating after training: the evaluation before took this long
        left = max(0.0, eval_s - (now - last.t))
    return f"{elapsed} · about {duration_words(left)} left"


def status_html(run: dict | None, events: Sequence[ev.Event], process: str = "", log_tail: str = "",
                now: float | None = None, stopping: bool = False) -> str:
    """`process`: "running", "exited N" or "" (not started by this app); `now`: the time (default:
    time.time()) elapsed time and the estimate are measured to; `stopping`: a Stop was sent and
    the process has not ended yet."""
    now = time.time() if now is None else now
    if run is None and not process:
        return ('<div class="reer-status train-status idle" data-state="idle">No training run yet: pick a chat export '
                "(or build one from the accepted trajectories), check the settings and press <b>Start</b>.</div>")
    if run is None:
        state = "starting" if process == "running" else "failed"
        txt = "starting the training process (loading the model)…" if state == "starting" else \
            f"the training process ended before it began ({process})"
        out = f'<div class="reer-status train-status" data-state="{state}"><span class="state">{_E(txt)}</span></div>'
        if state == "failed" and log_tail:
            out += f'<div class="reer-error" role="alert"><pre>{_E(log_tail.strip()[-800:])}</pre></div>'
        return out
    started = next((e for e in events if isinstance(e, ev.TrainStarted)), None)
    progress = [e for e in events if isinstance(e, ev.TrainProgress)]
    evals = {e.stage: e for e in events if isinstance(e, ev.TrainEvaluated)}
    finished = next((e for e in reversed(events) if isinstance(e, ev.TrainFinished)), None)
    errors = [e for e in events if isinstance(e, ev.RunError)]
    state = run["status"]
    if finished is not None:
        txt = "finished" if finished.reason == "done" else f"stopped at step {finished.steps} (checkpointed)"
    elif errors:
        txt, state = "failed", "failed"
    elif process.startswith("exited"):
        txt, state = f"the process ended without finishing ({process})", "failed"
    elif stopping:
        txt = "stopping… the step under way finishes and is checkpointed"
    elif started is not None and not progress and "before" not in evals:
        txt = f"evaluating the base model on {started.n_eval} held-out record(s)…"
    elif started is not None and progress and progress[-1].step >= progress[-1].total_steps:
        txt = "evaluating the trained model and saving…"
    else:
        txt = "training…" if started is not None else "preparing…"
    going = finished is None and not errors and not process.startswith("exited")
    parts = [f'<span class="rid" title="training run id">run {_E(run["id"][:8])}</span>',
             f'<span class="state">{_E(txt)}</span>', f'<span class="model">{_E(run.get("model") or "")}</span>']
    if started is not None:
        step = progress[-1].step if progress else started.start_step
        parts.append(f"<span>step {step}/{started.total_steps}</span>")
        if going:
            parts.append(f'<span class="timing">{_E(timing_text(events, now))}</span>')
        parts.append(f"<span>{started.n_train} train / {started.n_eval} held out</span>")
    if progress:
        parts.append(f"<span>loss {progress[-1].loss:.4f}</span>")
    b, a = evals.get("before"), evals.get("after")
    if any(x is not None and x.pair_accuracy is not None for x in (b, a)):  # dpo: held-out pairs (core.train.dpo)
        acc = [x.pair_accuracy if x else None for x in (b, a)]
        mar = [x.reward_margin if x else None for x in (b, a)]
        parts.append(f'<span class="pairs" title="held-out pairs whose implicit reward margin is above 0 (the model '
                     f'prefers chosen over rejected more than before training), and the mean margin">pair accuracy '
                     f"before {_ppl(acc[0])} → after {_ppl(acc[1])} · reward margin before {_ppl(mar[0])} → after "
                     f"{_ppl(mar[1])}</span>")
    elif b is not None or a is not None:
        bw, aw = (b.ppl_with_thinking if b else None), (a.ppl_with_thinking if a else None)
        parts.append(f'<span class="ppl" title="held-out answers\' perplexity given query + thinking">eval PPL '
                     f"before {_ppl(bw)} → after {_ppl(aw)}</span>")
    if finished is not None and finished.out_dir:
        parts.append(f'<span class="model">saved in {_E(finished.out_dir)}</span>')
    out = (f'<div class="reer-status train-status" data-state="{_E(state)}" data-run="{_E(run["id"])}" '
           f'data-steps="{progress[-1].step if progress else 0}">' + " · ".join(parts) + "</div>")
    if errors:
        out += f'<div class="reer-error" role="alert">{_E(errors[-1].message)}</div>'
    elif state == "failed" and log_tail:
        out += f'<div class="reer-error" role="alert"><pre>{_E(log_tail.strip()[-800:])}</pre></div>'
    return out


def empty_figure(message: str = "The training loss will be drawn here, step by step.") -> go.Figure:
    return message_figure(message, height=320)


def loss_figure(points: Sequence[tuple[int, float]], total_steps: int | None = None) -> go.Figure:
    """Training loss by optimizer step (the store's train_loss)."""
    if not points:
        return empty_figure("Waiting for the first step (the base model is evaluated first)…")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", name="training loss",
                               line=dict(width=2, color="#3b5bdb"), marker=dict(size=7)))
    fig.update_layout(height=320, margin=dict(l=50, r=20, t=20, b=45), plot_bgcolor="white", paper_bgcolor="white",
                      showlegend=False, xaxis=dict(title="optimizer step", gridcolor="#eee", dtick=1 if len(xs) < 15 else None,
                                                   range=[0, max(total_steps or 0, max(xs)) + 0.5]),
                      yaxis=dict(title="loss (assistant tokens)", gridcolor="#eee"))
    return fig
