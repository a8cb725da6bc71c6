"""The Judge tab's Ranking sub-tab: a pairwise queue's Bradley-Terry ranking by draft or by source,
with 95% bootstrap intervals, as a table and a plotly chart.

Knows: the layout and which judgments a person may count (a lead: all; anyone else: the pairs they
judged themselves, core.judging.queue.judged_items, as the Agreement view limits scores).

Does not know: the fit (core.judging.ranking), how it is drawn (studio.views.pairwise).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from core.judging import pairwise as pw
from core.judging import queue as jq
from core.judging.ranking import RESAMPLES, ranking
from core.store import StoreError
from studio.identity import annotator_of
from studio.views import pairwise as pview


@dataclass(frozen=True)
class RankingPage:
    """`menu`: the queue dropdown (studio.pages.judging refreshes its choices)."""
    menu: gr.Dropdown


def pairwise_names(store) -> list[str]:
    return [q["name"] for q in jq.list_queues(store) if pw.is_pairwise(q)]


def build(ctx) -> RankingPage:
    store = ctx.store
    with gr.Tab("Ranking", id="judge-ranking", elem_id="tab-judge-ranking"):
        with gr.Row(equal_height=True):
            queue = gr.Dropdown(pairwise_names(store), value=None, label="Pairwise queue", elem_id="ranking-queue",
                                allow_custom_value=True, scale=2)
            by = gr.Radio([("drafts", "draft"), ("sources", "source")], value="draft", label="Rank",
                          elem_id="ranking-by", scale=1)
            show = gr.Button("Show ranking", variant="primary", elem_id="ranking-show", scale=0, min_width=150)
        report = gr.HTML("", elem_id="ranking-table")
        plot = gr.Plot(pview.ranking_figure({"rows": [], "by": "draft"}), elem_id="ranking-plot", show_label=False)

    def do_show(q, by_, request: gr.Request):
        me = annotator_of(request)
        try:
            if not q:
                raise ValueError("Pairwise queue: none picked; pick one (make one with `palimpsest judge queue "
                                 "create NAME --pairwise`)")
            lead = ctx.is_lead(me)
            rep = ranking(store, q, by=by_ or "draft", resamples=RESAMPLES, seed=0,
                          only=None if lead else jq.judged_items(store, q, me))
            return {report: pview.ranking_html(rep, limited=not lead), plot: pview.ranking_figure(rep)}
        except (StoreError, ValueError) as e:
            return {report: f'<div class="lib-msg error" role="alert">{html.escape(str(e))}</div>'}

    show.click(do_show, [queue, by], [report, plot], api_name="judge_ranking", concurrency_limit=None)
    return RankingPage(menu=queue)
