"""The Palimpsest studio's Gradio app: the shell that holds the pages.

`build_app()` makes one StudioContext (store, lazy model, JobRunner, samples) and one tab per
page, each built by its module's `build(ctx)`: Library (studio.pages.library), REER
(studio.pages.reer), R2 (studio.pages.r2), Review (studio.pages.review), Export
(studio.pages.export), Train (studio.pages.train) and Score (studio.pages.score, the scoring
playground). Links between
pages (Library's "Run REER on it", menus refreshed after an import) are wired here, at the
bottom of build_app. `serve()` launches a built app the studio's way; `launch_app()` is what
`palimpsest app` calls.

What it knows: the page list, the links, launching. What it does not know: any algorithm
(core), any page's insides. No module-level mutable state: two apps in one process are apart.
"""
from __future__ import annotations

import dataclasses
import html
import logging
import os
from pathlib import Path
from typing import Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from assets import CSS_PATH  # noqa: E402
from core.data.items import read_items  # noqa: E402
from core.models.lm import DEFAULT_MODEL, LM  # noqa: E402
from core.store import Store, open_store  # noqa: E402
from data import SAMPLES  # noqa: E402
from studio.context import StudioContext  # noqa: E402
from studio.models import ModelShelf  # noqa: E402
from studio.runners.reer import JobRunner  # noqa: E402

log = logging.getLogger(__name__)

SAMPLES_PATH = SAMPLES
TITLE = "Palimpsest studio"
CONCURRENCY = 4  # events served at once (the model itself scores one request at a time)


def load_samples(path: str | Path | None = None) -> list[dict]:
    """Samples from a file of any shape `import` reads (core.data.items.read_items); [] if it is absent.

    Bad lines are skipped with a logged warning naming the file, line and field.
    """
    path = Path(path) if path else SAMPLES_PATH
    if not path.is_file():
        log.warning("no samples file at %s: the sample menu will be empty", path)
        return []
    items, problems = read_items(path)
    for p in problems:
        log.warning("sample skipped: %s", p)
    return [dataclasses.asdict(item) for item in items]


def _read_css() -> str:
    return CSS_PATH.read_text(encoding="utf-8") if CSS_PATH.is_file() else ""


def _remember_tab_js(tab_id: str) -> str:
    """Browser code that puts the open tab in the address (?tab=ID), keeping other parameters."""
    return (f"() => {{ if (!window.palimpsestTabRead) return; const u = new URL(window.location.href); "
            f"u.searchParams.set('tab', '{tab_id}'); history.replaceState(null, '', u); }}")


def build_app(get_lm: Callable[[], LM], samples: list[dict] | None = None, model_name: str | None = None,
              store: Store | None = None, db: str | Path | None = None,
              samples_path: str | Path | None = SAMPLES_PATH) -> gr.Blocks:
    """The studio. `get_lm()` returns the loaded model (lazy, load-once: see lazy_lm); `store` (or
    a `db` path; neither: an in-memory store) holds prompts and runs; `samples` fill the Score
    page's menu (default: read from `samples_path`, which the Library imports on demand)."""
    from studio.pages import export as export_page
    from studio.pages import library, r2, reer, review, score, train

    store = store if store is not None else open_store(db)
    samples = load_samples(samples_path) if samples is None else samples
    model_label = model_name or getattr(get_lm, "model_name", None) or "the model"
    models = ModelShelf(get_lm, model_label)
    ctx = StudioContext(store=store, get_lm=get_lm, model_name=model_label, runner=JobRunner(store, get_lm, models),
                        samples_path=Path(samples_path) if samples_path else None, samples=samples, models=models)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.HTML(f'<div class="pal-head"><h1>Palimpsest</h1><span>thinking trajectories for writing · model '
                f'<code>{html.escape(model_label)}</code></span></div>', elem_id="pal-head", padding=False)
        with gr.Tabs(elem_id="pal-tabs") as tabs:
            with gr.Tab("Library", id="library", elem_id="tab-library") as library_tab:
                lib = library.build(ctx)
            with gr.Tab("REER", id="reer", elem_id="tab-reer") as reer_tab:
                rp = reer.build(ctx)
            with gr.Tab("R2", id="r2", elem_id="tab-r2") as r2_tab:
                r2p = r2.build(ctx)
            with gr.Tab("Review", id="review", elem_id="tab-review") as review_tab:
                rv = review.build(ctx)
            with gr.Tab("Export", id="export", elem_id="tab-export") as export_tab:
                xp = export_page.build(ctx)
            with gr.Tab("Train", id="train", elem_id="tab-train") as train_tab:
                tp = train.build(ctx)
            with gr.Tab("Score", id="score", elem_id="tab-score") as score_tab:
                score.build(ctx)

        # ---- the open tab lives in the address (?tab=reer ...): a reload or a shared link opens it ----
        all_tabs = {"library": library_tab, "reer": reer_tab, "r2": r2_tab, "review": review_tab,
                    "export": export_tab, "train": train_tab, "score": score_tab}
        for tab_id, tab in all_tabs.items():
            tab.select(None, None, None, js=_remember_tab_js(tab_id), api_visibility="private")

        def open_tab(request: gr.Request):
            tab_id = (request.query_params.get("tab") if request else None) or ""
            return {tabs: gr.Tabs(selected=tab_id) if tab_id in all_tabs else gr.skip()}

        # tab selects write the address only once this has read it (the first tab's own select at
        # start-up would overwrite it otherwise)
        app.load(open_tab, None, tabs, api_visibility="private").then(
            None, None, None, js="() => { window.palimpsestTabRead = true; }", api_visibility="private")

        # ---- links between pages -------------------------------------------------------------
        def to_reer(prompt_id):
            if not prompt_id:
                gr.Warning("Click a prompt in the table first (or Save a new one).")
                return {tabs: gr.Tabs(selected="library")}
            return {tabs: gr.Tabs(selected="reer"), **rp.attach(prompt_id)}

        lib.to_reer.click(None, None, None, js=_remember_tab_js("reer"), api_visibility="private")

        def refresh_menu(prompt_id):
            return {rp.prompt: gr.Dropdown(choices=library.prompt_choices(store), value=prompt_id)}

        lib.to_reer.click(to_reer, lib.selected, [tabs, *rp.attach_outputs], api_name="library_to_reer")
        for dep in lib.changed:
            dep.then(refresh_menu, rp.prompt, rp.prompt, api_visibility="private")
        reer_tab.select(refresh_menu, rp.prompt, rp.prompt, api_visibility="private")
        app.load(lambda: rp.attach(None), None, rp.attach_outputs, api_visibility="private")
        review_tab.select(rv.refresh, rv.inputs, rv.outputs, api_visibility="private")
        export_tab.select(xp.refresh, xp.inputs, xp.outputs, api_visibility="private")
        # the R2 and Train pages reattach to the newest live run from the store on every page load
        app.load(lambda: r2p.attach(None), None, r2p.attach_outputs, api_visibility="private")
        app.load(tp.attach, None, tp.attach_outputs, api_visibility="private")
        r2_tab.select(lambda: {r2p.prompt: gr.Dropdown(choices=library.prompt_choices(store))}, None, r2p.prompt,
                      api_visibility="private")

    app.queue(default_concurrency_limit=CONCURRENCY)
    return app


def import_samples_if_empty(store: Store, samples_path: str | Path | None = SAMPLES_PATH) -> int:
    """Put the built-in samples in a store that holds no prompts yet; returns how many were added."""
    from studio.pages.library import import_upload

    if store.db["prompts"].count or not samples_path or not Path(samples_path).is_file():
        return 0
    return len(import_upload(store, samples_path).added)


def serve(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, auth: tuple | None = None,
          prevent_thread_lock: bool = False, quiet: bool = False):
    """Launch a built app the way the studio always does (local only, no analytics, our CSS)."""
    return app.launch(
        server_name=host, server_port=port, auth=auth, share=False, prevent_thread_lock=prevent_thread_lock,
        css=_read_css(), footer_links=["api", "settings"], quiet=quiet, show_error=False,
    )


def lazy_lm(model: str = DEFAULT_MODEL) -> Callable[[], LM]:
    """A `get_lm()` that loads `model` on first call and returns the same object afterwards."""
    import threading

    from core.models.lm import load_lm

    box: list[LM] = []
    lock = threading.Lock()

    def get_lm() -> LM:
        with lock:
            if not box:
                box.append(load_lm(model))
            return box[0]

    get_lm.model_name = model  # type: ignore[attr-defined]
    return get_lm


def launch_app(host: str = "127.0.0.1", port: int = 7860, model: str = DEFAULT_MODEL,
               auth: tuple | None = None, prevent_thread_lock: bool = False, samples_path=None,
               db: str | Path | None = None):
    """Open the store (importing the samples into an empty one), load the model, build the
    studio and serve it (blocks unless prevent_thread_lock)."""
    store = open_store(db)
    samples_path = samples_path or SAMPLES_PATH
    added = import_samples_if_empty(store, samples_path)
    if added:
        log.warning("imported %d built-in sample prompt(s) into %s", added, db or "the in-memory store")
    get_lm = lazy_lm(model)
    get_lm()  # load now, so the first click is fast and a bad --model fails at start
    app = build_app(get_lm, model_name=model, store=store, samples_path=samples_path)
    return serve(app, host=host, port=port, auth=auth, prevent_thread_lock=prevent_thread_lock)
