"""The Palimpsest studio's Gradio app: the shell that holds the pages.

`build_app(model)` makes one StudioContext (store, the model shelf with `model` as the app's
model, runners, samples) and one tab per
page, each built by its module's `build(ctx)`: Library (studio.pages.library), REER
(studio.pages.reer), R2 (studio.pages.r2), Review (studio.pages.review), Export
(studio.pages.export), Train (studio.pages.train) and Score (studio.pages.score, the scoring
playground). Links between
pages (Library's "Run REER on it" and "Write with R2", menus refreshed after an import) are wired
here, at the bottom of build_app, and so is the state one tab shows of another's writes, read again
from the store when a tab is selected: the Library's run counts, the Train page's exports, the
REER and R2 pages opening on the prompt last picked in the Library. `serve()` launches a built app
the studio's way (with an upload cap,
Gradio's `max_file_size`); `launch_app()` is what `palimpsest app` calls, and warns on start
when the app is open to the network without a login or takes any model spec;
`palimpsest app --model scripted:` is the no-model demo (the header says so). The header also
names who is using the studio (studio.identity.annotator_of the request, drawn on page load):
"signed in as NAME" with a Log out link when logged in, else "you are NAME (no login)". Logins
are Gradio's `auth`: studio.users.Logins (a users file, --auth pairs) or a plain pair.

Which models the pages may load is the starter's choice, a `core.models.shelf.ModelPolicy`
(`--model`, repeatable, the first one the app's; `--allow-model PATTERN`; `--allow-any-model`):
the pages show it as dropdowns, and every load goes through the context's ModelChoice, which
refuses anything else, so a crafted API call gets the same answer as the page.

What it knows: the page list, the links, launching. What it does not know: any algorithm
(core), any page's insides. No module-level mutable state: two apps in one process are apart.
"""
from __future__ import annotations

import dataclasses
import html
import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from assets import CSS_PATH, HEAD_CSS_PATH, KEYS_JS_PATH  # noqa: E402
from core.data.items import read_items  # noqa: E402
from core.models.lm import DEFAULT_MODEL  # noqa: E402
from core.models.load import is_scripted_spec
from core.models.shelf import ModelChoice, ModelPolicy, ModelShelf, default_shelf  # noqa: E402
from core.store import Store, open_store  # noqa: E402
from data import SAMPLES  # noqa: E402
from studio.context import StudioContext  # noqa: E402
from studio.identity import annotator_of  # noqa: E402
from studio.runners.hub import Runners  # noqa: E402
from studio.workspace import Workspace  # noqa: E402

log = logging.getLogger(__name__)

SAMPLES_PATH = SAMPLES
TITLE = "Palimpsest studio"
CONCURRENCY = 4  # events served at once (the model itself scores one request at a time)
DEFAULT_MAX_UPLOAD_MB = 50.0  # largest file a browser may upload (MB of 1,048,576 bytes); `--max-upload-mb`


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


def _head() -> str:
    """The page head: page-level CSS (assets/head.css) and the keyboard shortcuts of Review's focus
    mode (assets/keys.js)."""
    css = HEAD_CSS_PATH.read_text(encoding="utf-8") if HEAD_CSS_PATH.is_file() else ""
    js = KEYS_JS_PATH.read_text(encoding="utf-8") if KEYS_JS_PATH.is_file() else ""
    return f"<style>{css}</style><script>{js}</script>"


def _remember_tab_js(tab_id: str) -> str:
    """Browser code that puts the open tab in the address (?tab=ID), keeping other parameters."""
    return (f"() => {{ if (!window.palimpsestTabRead) return; const u = new URL(window.location.href); "
            f"u.searchParams.set('tab', '{tab_id}'); history.replaceState(null, '', u); }}")


def header_html(model: str, person: str | None = None, logged_in: bool = False) -> str:
    """The studio's header: the model's spec, a plain warning when it is the scripted fake, and who is
    using it (`person`: "signed in as NAME" with a Log out link to Gradio's /logout when `logged_in`,
    else "you are NAME (no login)"; nothing when None)."""
    demo = (' <b class="pal-demo" id="pal-demo" style="color: #b45309; margin-left: 8px;" title="a deterministic fake model (the built-in scripted model): '
            'texts and scores are made up, not written by a language model">demo mode: scripted model, '
            'no real language model</b>') if is_scripted_spec(model) else ""
    who = ""
    if person is not None:
        name = f'<b class="pal-who-name">{html.escape(person)}</b>'
        who = (f'<span class="pal-who" id="pal-who" style="margin-left: 12px;">signed in as {name} · '
               f'<a href="logout" class="pal-logout" id="pal-logout">Log out</a></span>' if logged_in else
               f'<span class="pal-who" id="pal-who" style="margin-left: 12px;" title="start the studio with '
               f'--users FILE (or --auth) to have each person log in">you are {name} (no login)</span>')
    return (f'<div class="pal-head"><h1>Palimpsest</h1><span>thinking trajectories for writing · model '
            f'<code>{html.escape(model)}</code>{demo}{who}</span></div>')


def build_app(model: str = DEFAULT_MODEL, *, shelf: ModelShelf | None = None, samples: list[dict] | None = None,
              store: Store | None = None, db: str | Path | None = None,
              samples_path: str | Path | None = SAMPLES_PATH, policy: ModelPolicy | None = None,
              any_path: bool = False, leads: frozenset | None = None) -> gr.Blocks:
    """The studio for the app's model `model` (a spec; loaded from `shelf`, the process's shelf by
    default, on first use: a test puts its own model on a shelf of its own). `policy`: which other
    specs the pages may load (default: `model` only). `store` (or a `db` path; neither: an
    in-memory store) holds prompts and runs; `samples` fill the Score page's menu (default: read
    from `samples_path`, which the Library imports on demand). `any_path`: typed paths (the Train
    page's) may point anywhere, not only inside the store's folder (studio.workspace). `leads`: the
    logged-in names that see every judgment (None: a studio without logins, whose user is a lead)."""
    from studio.pages import export as export_page
    from studio.pages import judging, library, r2, reer, review, score, train

    store = store if store is not None else open_store(db)
    samples = load_samples(samples_path) if samples is None else samples
    models = ModelChoice(shelf if shelf is not None else default_shelf(), (model or "").strip() or DEFAULT_MODEL,
                         policy)
    ctx = StudioContext(store=store, models=models, runners=Runners.for_app(store, models),
                        samples_path=Path(samples_path) if samples_path else None, samples=samples,
                        workspace=Workspace.for_store(store.path, any_path), leads=leads)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        head = gr.HTML(header_html(models.default), elem_id="pal-head", padding=False)
        with gr.Tabs(elem_id="pal-tabs") as tabs:
            with gr.Tab("Library", id="library", elem_id="tab-library") as library_tab:
                lib = library.build(ctx)
            with gr.Tab("REER", id="reer", elem_id="tab-reer") as reer_tab:
                rp = reer.build(ctx)
            with gr.Tab("R2", id="r2", elem_id="tab-r2") as r2_tab:
                r2p = r2.build(ctx)
            with gr.Tab("Review", id="review", elem_id="tab-review") as review_tab:
                rv = review.build(ctx)
            with gr.Tab("Judge", id="judge", elem_id="tab-judge") as judge_tab:
                jp = judging.build(ctx)
            with gr.Tab("Export", id="export", elem_id="tab-export") as export_tab:
                xp = export_page.build(ctx)
            with gr.Tab("Train", id="train", elem_id="tab-train") as train_tab:
                tp = train.build(ctx)
            with gr.Tab("Score", id="score", elem_id="tab-score") as score_tab:
                score.build(ctx)

        # ---- the open tab lives in the address (?tab=reer ...): a reload or a shared link opens it ----
        all_tabs = {"library": library_tab, "reer": reer_tab, "r2": r2_tab, "review": review_tab,
                    "judge": judge_tab, "export": export_tab, "train": train_tab, "score": score_tab}
        for tab_id, tab in all_tabs.items():
            tab.select(None, None, None, js=_remember_tab_js(tab_id), api_visibility="private")

        def open_tab(request: gr.Request):
            tab_id = (request.query_params.get("tab") if request else None) or ""
            return {tabs: gr.Tabs(selected=tab_id) if tab_id in all_tabs else gr.skip()}

        # tab selects write the address only once this has read it (the first tab's own select at
        # start-up would overwrite it otherwise)
        app.load(open_tab, None, tabs, api_visibility="private").then(
            None, None, None, js="() => { window.palimpsestTabRead = true; }", api_visibility="private")

        def whoami(request: gr.Request):  # the header names the request's person (studio.identity)
            return header_html(models.default, annotator_of(request), bool(getattr(request, "username", None)))

        app.load(whoami, None, head, api_visibility="private")

        # ---- links between pages -------------------------------------------------------------
        def to_reer(prompt_id):
            if not prompt_id:
                gr.Warning("Click a prompt in the table first (or Save a new one).")
                return {tabs: gr.Tabs(selected="library")}
            return {tabs: gr.Tabs(selected="reer"), **rp.attach(prompt_id)}

        lib.to_reer.click(None, None, None, js=_remember_tab_js("reer"), api_visibility="private")

        def refresh_menu(prompt_id):
            return {rp.prompt: gr.Dropdown(choices=library.prompt_choices(store), value=prompt_id)}

        # the Library's pick a run page has shown already (per session): a pick opens on the REER or R2
        # tab once, so a prompt chosen there afterwards stays
        reer_took, r2_took = gr.State(None), gr.State(None)

        def to_r2(prompt_id):
            if not prompt_id:
                gr.Warning("Click a prompt in the table first (or Save a new one).")
                return {tabs: gr.Tabs(selected="library")}
            return {tabs: gr.Tabs(selected="r2"), r2_took: prompt_id, **r2p.attach(prompt_id)}

        def open_pick(page, took, menu):
            """A run page's tab select: the Library's new pick (attached with its newest run), else the
            prompt menu refreshed from the store."""
            def select(picked, took_, prompt_id):
                if picked and picked != took_ and picked != prompt_id:
                    return {took: picked, **page.attach(picked)}
                choices = library.prompt_choices(store)  # an empty menu (a select racing the load) gets the first
                return {took: picked or took_,
                        menu: gr.Dropdown(choices=choices, value=prompt_id or (choices[0][1] if choices else None))}
            return select

        lib.to_reer.click(to_reer, lib.selected, [tabs, *rp.attach_outputs], api_name="library_to_reer").then(
            lambda p: p, lib.selected, reer_took, api_visibility="private")
        lib.to_r2.click(None, None, None, js=_remember_tab_js("r2"), api_visibility="private")
        lib.to_r2.click(to_r2, lib.selected, [tabs, r2_took, *r2p.attach_outputs], api_name="library_to_r2")
        for dep in lib.changed:
            dep.then(refresh_menu, rp.prompt, rp.prompt, api_visibility="private")
        reer_tab.select(open_pick(rp, reer_took, rp.prompt), [lib.selected, reer_took, rp.prompt],
                        [reer_took, *rp.attach_outputs], api_visibility="private")
        app.load(lambda: rp.attach(None), None, rp.attach_outputs, api_visibility="private")
        review_tab.select(rv.refresh, rv.inputs, rv.outputs, api_visibility="private")
        export_tab.select(xp.refresh, xp.inputs, xp.outputs, api_visibility="private")
        judge_tab.select(jp.refresh, None, jp.outputs, api_visibility="private")
        # the R2 and Train pages reattach to the newest live run from the store on every page load
        app.load(lambda: r2p.attach(None), None, r2p.attach_outputs, api_visibility="private")
        app.load(tp.attach, None, tp.attach_outputs, api_visibility="private")
        r2_tab.select(open_pick(r2p, r2_took, r2p.prompt), [lib.selected, r2_took, r2p.prompt],
                      [r2_took, *r2p.attach_outputs], api_visibility="private")
        # state other tabs change, read again from the store when shown: the Library's run counts (runs
        # are made on the REER and R2 tabs) and the Train page's menu of exports (made on the Export tab)
        library_tab.select(lib.reload, lib.reload_inputs, lib.reload_outputs, api_visibility="private")
        app.load(lib.reload, lib.reload_inputs, lib.reload_outputs, api_visibility="private")
        train_tab.select(tp.refresh_data, tp.data, tp.data, api_visibility="private")

    app.queue(default_concurrency_limit=CONCURRENCY)
    return app


def import_samples_if_empty(store: Store, samples_path: str | Path | None = SAMPLES_PATH) -> int:
    """Put the built-in samples in a store that holds no prompts yet; returns how many were added."""
    from studio.pages.library import import_upload

    if store.db["prompts"].count or not samples_path or not Path(samples_path).is_file():
        return 0
    return len(import_upload(store, samples_path).added)


def max_file_size(max_upload_mb: float) -> int:
    """Gradio's `max_file_size` in bytes for a cap in MB (1,048,576 bytes); ValueError when not above 0."""
    if not max_upload_mb > 0:
        raise ValueError(f"the upload cap must be above 0 MB, not {max_upload_mb}")
    return max(1, int(max_upload_mb * 1024 * 1024))


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.x, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def start_warnings(host: str, auth, policy: ModelPolicy) -> list[str]:
    """What `launch_app` warns about before serving: an open network address without a login
    (`auth`: Gradio's, a (user, password) pair or studio.users.Logins; empty or None: no login),
    and free-text model specs."""
    out = []
    if not auth and not is_loopback(host):
        out.append(f"--host {host} serves the studio beyond this machine without a login: anyone who reaches "
                   "it can run models, read and change the store; add --users FILE (palimpsest users add NAME "
                   "--file FILE) or --auth USER:PASSWORD (or PALIMPSEST_USERS / PALIMPSEST_AUTH)")
    if policy.allow_any:
        out.append("--allow-any-model: studio users may load any model spec, a local folder, a hub id or any "
                   "server URL (the server connects wherever they say); the API key still goes only to the "
                   f"servers named at start ({', '.join(f'{h}:{p}' for h, p in sorted(policy.key_hosts)) or 'none'})")
    return out


REACH_WAIT_S = 60.0  # how long serve() waits for the studio's own address to answer before giving up


def _record_client(server_app) -> None:
    """Put each HTTP request's client address in studio.users.CLIENT while it is served (the login
    throttle counts failures per address): the outermost layer of the app's ASGI stack."""
    from studio.users import CLIENT

    inner = server_app.middleware_stack or server_app.build_middleware_stack()

    async def recorded(scope, receive, send):
        client = scope.get("client") if scope.get("type") == "http" else None
        token = CLIENT.set(str(client[0])) if client else None
        try:
            await inner(scope, receive, send)
        finally:
            if token is not None:
                CLIENT.reset(token)

    server_app.middleware_stack = recorded


def serve(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, auth=None,
          prevent_thread_lock: bool = False, quiet: bool = False, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB):
    """Launch a built app the way the studio always does (local only, no analytics, our CSS); an
    upload over `max_upload_mb` is refused by Gradio (HTTP 413) before it is kept. `auth`: Gradio's
    (a (user, password) pair, a list of them, or a callable such as studio.users.Logins); None: no login."""
    result = app.launch(
        server_name=host, server_port=port, auth=auth or None, share=False, prevent_thread_lock=True,
        css=_read_css(), head=_head(), footer_links=["api", "settings"], quiet=quiet, show_error=False,
        max_file_size=max_file_size(max_upload_mb),
        _frontend=False,  # Gradio's own reachability check: replaced by wait_reachable (it gave up too soon)
    )
    _record_client(app.server_app)
    try:
        wait_reachable(app.local_url)
    except StudioUnreachable:
        app.close()
        raise
    if not prevent_thread_lock:
        app.block_thread()
    return result


class StudioUnreachable(RuntimeError):
    """The studio started but its own address does not answer from this machine."""


def wait_reachable(url: str, wait_s: float = REACH_WAIT_S) -> None:
    """Return once `url` answers a HEAD request (as Gradio's check: 200, 401 or a redirect), retrying
    every 0.5 s for up to `wait_s`; StudioUnreachable naming the last answer and the usual cause (a
    proxy) after that. Gradio's own check gave up on the first reply slower than 3 s, so a studio on
    a busy machine failed to start with "a shareable link must be created"."""
    import httpx

    deadline, last = time.monotonic() + wait_s, "no answer"
    while True:
        try:
            reply = httpx.head(url, timeout=5, verify=False)
            if reply.status_code in (200, 401, 301, 302, 303, 307, 308):
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"[:200]
        if time.monotonic() >= deadline:
            raise StudioUnreachable(
                f"the studio started but {url} did not answer from this machine within {wait_s:.0f} s ({last}); "
                "if a proxy is set, add localhost and 127.0.0.1 to NO_PROXY")
        time.sleep(0.5)


def _leads_of(auth) -> frozenset | None:
    """Who is a lead: studio.users.Logins' leads; a plain pair or list of pairs has none; no login: None."""
    if not auth:
        return None
    return frozenset(getattr(auth, "leads", ()) or ())


def launch_app(host: str = "127.0.0.1", port: int = 7860, model: str | Sequence[str] = DEFAULT_MODEL,
               auth=None, prevent_thread_lock: bool = False, samples_path=None,
               db: str | Path | None = None, allow_patterns: Sequence[str] = (), allow_any: bool = False,
               max_upload_mb: float | None = None, any_path: bool = False):
    """Open the store (importing the samples into an empty one), load the app's model onto the
    process's shelf, build the studio and serve it (blocks unless prevent_thread_lock).
    `model`: a spec, or several (the first is the app's model; the pages may pick any of them);
    `allow_patterns`/`allow_any`: what else the pages may load (ModelPolicy). Warns first about a
    network address without `auth` and about `allow_any`. `max_upload_mb`: the upload cap (None:
    DEFAULT_MAX_UPLOAD_MB). `any_path`: typed paths may leave the store's folder (warned about).
    `model="scripted:"` serves the no-model demo."""
    max_upload_mb = DEFAULT_MAX_UPLOAD_MB if max_upload_mb is None else max_upload_mb
    specs = [model] if isinstance(model, str) else list(model)
    policy = ModelPolicy(tuple(specs or [DEFAULT_MODEL]), tuple(allow_patterns), allow_any)
    max_file_size(max_upload_mb)  # a bad cap fails before anything loads
    for warning in start_warnings(host, auth, policy):
        log.warning("%s", warning)
    if any_path:
        log.warning("--allow-any-path: studio users may read and write any path this process can reach "
                    "(the Train page's data file and output folder)")
    store = open_store(db)
    samples_path = samples_path or SAMPLES_PATH
    added = import_samples_if_empty(store, samples_path)
    if added:
        log.warning("imported %d built-in sample prompt(s) into %s", added, db or "the in-memory store")
    # load now, through the policy's key hosts, so the first click is fast and a bad --model fails at start
    ModelChoice(default_shelf(), policy.default, policy).get_lm()
    if is_scripted_spec(policy.default):
        log.warning("demo mode: %s is a scripted fake model; its texts and scores are made up", policy.default)
    app = build_app(policy.default, store=store, samples_path=samples_path, policy=policy, any_path=any_path,
                    leads=_leads_of(auth))
    return serve(app, host=host, port=port, auth=auth, prevent_thread_lock=prevent_thread_lock,
                 max_upload_mb=max_upload_mb)
