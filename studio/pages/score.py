"""The Score page: the scoring playground.

It answers one question: how expected is a reference answer y, given a query x and a thinking
trajectory z? It scores y's tokens with `core.models.scoring.score` and shows the numbers (perplexity,
REER's clipped score) and a per-token heat map, optionally next to the same reference scored
with empty thinking, so a user sees how much the trajectory helps.

What it knows: layout, listeners, turning scores into HTML (via studio.views.heatmap). What it does
not know: how scoring works (core.models.scoring), how models load (core.models.lm). The model comes from
`ctx.get_lm()` so the page is built before the model is loaded.
"""
from __future__ import annotations

import html
import logging
import time

import gradio as gr

from core.format import DEFAULT_TEMPLATE, THINK_CLOSE
from core.models.lm import LMError
from core.models.scoring import ScoringConfig, score, split_reference
from core.segments import answer_part
from core.settings import SettingError
from studio import forms
from studio.context import StudioContext
from studio.views import heatmap as render

log = logging.getLogger(__name__)
TITLE = "Scoring playground"


def _sample_label(s: dict) -> str:
    """Menu label: category and the start of the query, short enough for the menu's width."""
    cat = str(s.get("category") or s["id"]).replace("_", " ")
    q = " ".join(str(s.get("query", "")).split())
    room = max(20, 58 - len(cat))
    q = q if len(q) <= room else q[: room - 1].rstrip() + "…"
    return f"{cat} — {q}"


def _scored_parts(reference: str, cfg: ScoringConfig) -> tuple[tuple[str, ...], str, str]:
    """Notes on which part of the reference is scored, the unscored prefix (greyed in the heat
    map) and the scored text, as core.models.scoring.split_reference splits them."""
    prefix, scored = split_reference(reference, cfg)
    notes = []
    if THINK_CLOSE in reference:
        notes.append("The reference holds a think block: only the answer after </think> is scored.")
    if cfg.skip_first_segment:
        notes.append("The reference's first segment (greyed) is left unscored." if prefix
                     else "The reference has a single segment, so all of it is scored.")
    return tuple(notes), prefix, scored


def build(ctx: StudioContext) -> None:
    """Create the page's components (inside the caller's Tab) and wire its listeners."""
    samples, get_lm = ctx.samples, ctx.get_lm
    by_id = {str(s["id"]): s for s in samples}
    model_label = ctx.model_name or "the model"

    gr.HTML(
        f'<div class="pal-head"><h1>{TITLE}</h1><p>How expected is a reference answer, given a query and '
        f"a thinking trajectory? Its tokens are scored by <code>{html.escape(model_label)}</code>: "
        "lower perplexity means the thinking makes the answer more predictable.</p></div>",
        elem_id="score-head",
        js_on_load=None,
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=420):
            sample = gr.Dropdown(
                choices=[(_sample_label(s), str(s["id"])) for s in samples],
                value=None,
                label="Sample" if samples else "Sample (no built-in samples found)",
                elem_id="score-sample",
                interactive=True,
            )
            query_box = gr.Textbox(label="Query (x)", lines=2, max_lines=2, elem_id="score-query",
                                   placeholder="The writing task, e.g. Write a letter to…")
            thinking_box = gr.Textbox(label="Thinking (z) — may be empty", lines=4, max_lines=4,
                                      elem_id="score-thinking",
                                      placeholder="The writer's inner monologue before writing…")
            reference_box = gr.Textbox(label="Reference answer (y) — the text that is scored", lines=4,
                                       max_lines=4, elem_id="score-reference",
                                       placeholder="The good answer whose tokens get scored…")
            with gr.Row(equal_height=True, elem_id="score-options"):
                template_radio = forms.widget(ScoringConfig, "template", show_default=False, info="",
                                              label="Template", elem_id="score-template", scale=2, min_width=170)
                with gr.Column(scale=3, min_width=250), gr.Group():
                    skip_box = forms.widget(ScoringConfig, "skip_first_segment", show_default=False, info="",
                                            label="leave the reference's first segment unscored",
                                            elem_id="score-skip-first")
                    compare_box = gr.Checkbox(value=True, label="compare with empty thinking",
                                              elem_id="score-compare")
            run = gr.Button("Score", variant="primary", elem_id="score-run")
        with gr.Column(scale=6, min_width=480):
            stats = gr.HTML(render.placeholder_html("Pick a sample or paste your own texts, then press Score."),
                            label="stats", elem_id="score-stats", js_on_load=None)
            gr.HTML(render.legend_html(), elem_id="score-legend", js_on_load=None)
            heatmap = gr.HTML(render.placeholder_html("The reference's tokens, coloured by log-prob, appear here."),
                              label="heatmap", elem_id="score-heatmap", js_on_load=None)

    def fill_sample(sample_id):
        s = by_id.get(str(sample_id)) if sample_id else None
        if s is None:
            return {stats: render.placeholder_html("Pick a sample or paste your own texts, then press Score.")}
        return {
            query_box: s.get("query", ""),
            thinking_box: s.get("thinking", "") or "",
            reference_box: s.get("reference", ""),
            stats: render.placeholder_html(f"Sample {sample_id} loaded: press Score."),
            heatmap: render.placeholder_html("The reference's tokens, coloured by log-prob, appear here."),
        }

    def fail(message: str) -> dict:
        gr.Warning(message)
        return {stats: render.error_html(message), heatmap: render.placeholder_html("Nothing scored.")}

    def run_score(query, thinking, reference, template=DEFAULT_TEMPLATE, skip_first=False, compare=True,
                  progress=gr.Progress()):
        """Score the reference given query and thinking; with `compare`, also with empty thinking.
        Returns the stats HTML and the heat map HTML; errors come back as a message in the stats."""
        query, thinking, reference = query or "", thinking or "", reference or ""
        if not answer_part(reference).strip():
            return fail("The reference is empty: paste the answer whose tokens should be scored.")
        try:  # the config checks the settings (SettingError names the field)
            cfg = forms.config(ScoringConfig, {"template": template, "skip_first_segment": bool(skip_first),
                                               "precision": "fp32", "truncate": "left"})
        except SettingError as e:
            return fail(forms.error_text(e, ScoringConfig))
        try:
            progress(0.05, desc="loading the model (first run only)")
            lm = get_lm()
            progress(0.3, desc="scoring the reference")
            t0 = time.perf_counter()
            main = score(lm, query, thinking, reference, cfg, keep_tokens=True)
            seconds = time.perf_counter() - t0
        except LMError as e:
            return fail(str(e))
        except Exception as e:  # the page must never show a traceback
            log.exception("scoring failed")
            return fail(f"Unexpected error while scoring ({type(e).__name__}): {e}")
        base_ppl = base_score = base_err = None
        if compare:
            progress(0.7, desc="scoring with empty thinking")
            try:
                base = score(lm, query, "", reference, cfg)
                base_ppl, base_score = base.ppl, base.score
            except LMError as e:
                base_err = str(e)
            except Exception as e:
                log.exception("comparison scoring failed")
                base_err = f"{type(e).__name__}: {e}"
        notes, prefix, scored_text = _scored_parts(reference, cfg)
        view = render.StatsView(
            n_tokens=main.n_tokens, mean_logprob=main.mean_logprob, ppl=main.ppl, score=main.score,
            precision=main.precision, seconds=seconds, truncated=main.truncated,
            baseline_ppl=base_ppl, baseline_score=base_score, baseline_error=base_err, notes=notes,
        )
        return {
            stats: render.stats_html(view),
            heatmap: render.heatmap_html(main.tokens or [], main.logprobs or [], cfg.clip_min,
                                         text=scored_text, unscored_prefix=prefix),
        }

    # ---- listeners ---------------------------------------------------------------------
    sample.change(fill_sample, inputs=sample, outputs=[query_box, thinking_box, reference_box, stats, heatmap],
                  api_visibility="private")
    run.click(run_score, inputs=[query_box, thinking_box, reference_box, template_radio, skip_box, compare_box],
              outputs=[stats, heatmap], api_name="score", concurrency_limit=2)
