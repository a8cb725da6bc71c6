"""The Export page: turn curated trajectories into a training file and its dataset card.

Knows: the controls (format, review status, source, chat-template check; for dpo, the pair
sources and the min margin, as `export --sources/--min-margin`, shown only then and checked with
a one-line message naming the control and the fix), a preview of the first records
(core.export.preview), running an export into its own folder under the studio's
data folder (`export_root`: beside the store file, or a temporary folder for an in-memory
store), offering the data file and the card for download (copies in a temporary folder Gradio
may serve; an `hf` folder is zipped), the card itself, the template check's findings, and the
list of earlier exports. Errors (nothing matches, prm/dpo without R2 rounds, a full disk, a
read-only folder: core.export.ExportFailed) are shown as sentences with the fix, in the page's
words rather than the CLI's flags, never as a traceback; the earlier exports stay whole.

Does not know: the record shapes (core.export), chat templates (core.data.template_check), or
other pages.
"""
from __future__ import annotations

import html
import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from core import export as ex
from core import pairs as pp
from core.outputs import oserror_line
from core.store import Store, StoreError
from studio.context import StudioContext
from studio.identity import annotator_of

PREVIEW_N = 3  # records shown by Preview
FORMAT_LABELS = {
    "chat": "chat — messages JSONL (TRL SFTTrainer)",
    "sharegpt": "sharegpt — LLaMA-Factory",
    "alpaca": "alpaca — LLaMA-Factory",
    "parquet": "parquet — every field",
    "hf": "hf — datasets folder (zipped)",
    "prm": "prm — R2 step labels",
    "dpo": "dpo — preference pairs (TRL DPOTrainer)",
}
HISTORY_HEADERS = ("#", "when", "format", "status", "source", "records", "folder")
PAIR_FORMATS = ("dpo",)  # the formats that take pair sources and a min margin


def export_root(store: Store) -> Path:
    """Where the studio writes exports: `exports/` beside the store file; for an in-memory store,
    a fresh temporary folder (gone with the machine's temp files)."""
    if store.path is not None:
        return Path(store.path).expanduser().resolve().parent / "exports"
    return Path(tempfile.mkdtemp(prefix="palimpsest-exports-"))


def export_folder(root: Path, fmt: str, status: str, source: str) -> Path:
    """A new folder name for one export: time, format and filters (never an existing folder)."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{fmt}-{status}-{source}"
    out, n = root / base, 2
    while out.exists():
        out, n = root / f"{base}-{n}", n + 1
    return out


def downloads(report: ex.ExportReport) -> list[str]:
    """Copies of the data file (an hf folder zipped) and the card in a temporary folder Gradio serves."""
    tmp = Path(tempfile.mkdtemp(prefix="palimpsest-download-"))
    out = []
    for f in report.files:
        p = Path(f)
        if p.is_dir():
            out.append(shutil.make_archive(str(tmp / f"{Path(report.out).name}-{p.name}"), "zip", root_dir=p))
        else:
            out.append(str(shutil.copy2(p, tmp / p.name)))
    out.append(str(shutil.copy2(report.card, tmp / "README.md")))
    return out


def page_words(message: str) -> str:
    """An export error in the page's words: its controls rather than the CLI's flags."""
    for flag, control in (("--status any", 'Status "any"'), ("--source all", 'Source "all"'),
                          ("--status", "Status"), ("--sources", "Pair sources"), ("--source", "Source"),
                          ("--format", "Format"), ("--min-margin", "Min margin"), ("--out", "folder")):
        message = message.replace(flag, control)
    return message


def pair_options(fmt: str, min_margin, sources, lead: bool = True) -> tuple[dict, str]:
    """The Min margin and Pair sources controls as core.export's keyword arguments, or ({}, a
    one-line message naming the control and the fix). Formats without pairs take the defaults
    whatever the (hidden) controls hold. People's pairs go only into a lead's export."""
    if fmt not in PAIR_FORMATS:
        return {}, ""
    if isinstance(min_margin, bool) or not isinstance(min_margin, (int, float)) or not 0 <= min_margin < math.inf:
        shown = "empty" if min_margin is None else repr(min_margin)
        return {}, f"Min margin: {shown}; give a number 0 or above (default {pp.DEFAULT_MIN_MARGIN:g})"
    picked = [s for s in pp.SOURCES if s in (sources or ())]
    if not lead and "people" in picked:
        picked.remove("people")
        if not picked:
            return {}, ("Pair sources: people's pairs go only into a lead's export; tick another source "
                        f"({', '.join(s for s in pp.SOURCES if s != 'people')})")
    if not picked:
        return {}, f"Pair sources: none ticked; tick at least one of {', '.join(pp.SOURCES)}"
    return {"min_margin": float(min_margin), "sources": ",".join(picked)}, ""


def run_export(store: Store, root: Path, fmt: str, status: str, source: str, check: bool = False,
               tokenizer=None, judgments: bool = True, pairs: dict | None = None
               ) -> tuple[ex.ExportReport | None, list[str], str]:
    """One export from the page into a new folder under `root`: (report, download paths, "") or,
    when it cannot be written (nothing matches, disk full, read-only), (None, [], the reason in
    the page's words). `judgments`: include people's judgments (a lead's export only); `pairs`:
    min_margin and sources for dpo (`pair_options`)."""
    try:
        report = ex.export(store, fmt, export_folder(root, fmt, status, source), status, source,
                           check_template=check, tokenizer=tokenizer, judgments=judgments, **(pairs or {}))
        return report, downloads(report), ""
    except StoreError as e:
        return None, [], page_words(str(e))
    except OSError as e:  # the download copies: the temp folder's disk
        return None, [], f"could not prepare the download: {oserror_line(e)}"


def _box(text: str, kind: str = "ok") -> str:
    return f'<div class="lib-msg {kind}" role="{"alert" if kind == "error" else "status"}">{html.escape(text)}</div>'


def _code(text: str) -> str:
    """Escaped text with `backticked` parts as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def history_rows(store: Store) -> list[list]:
    return [[e["id"], str(e.get("created_at") or "")[:19].replace("T", " "), e["format"], e.get("status") or "",
             e.get("source") or "", e["count"], Path(e["out"]).name] for e in ex.list_exports(store)[:50]]


@dataclass(frozen=True)
class ExportPage:
    """Handles the app needs: refresh() redraws counts and history; wire it to the tab's select."""

    refresh: Callable[..., dict]
    inputs: list
    outputs: list


def build(ctx: StudioContext) -> ExportPage:
    """Create the page's components (inside the caller's Tab) and wire its listeners."""
    store = ctx.store
    root = export_root(store)
    gr.HTML('<div class="page-head"><h2>Export</h2><p>Write the reviewed trajectories (each in its current, edited '
            'version) as a training file with a dataset card. Preview first; each export gets its own folder '
            f'under <code>{html.escape(str(root))}</code>.</p></div>')
    with gr.Row(equal_height=True, elem_id="export-controls"):
        fmt = gr.Dropdown([(label, key) for key, label in FORMAT_LABELS.items()], value="chat", label="Format",
                          elem_id="export-format", scale=3, min_width=240)
        status = gr.Radio(list(ex.STATUS_CHOICES), value="accepted", label="Review status",
                          elem_id="export-status", scale=4, min_width=340)
        source = gr.Dropdown(list(ex.SOURCE_CHOICES), value="all", label="Source", elem_id="export-source",
                             scale=2, min_width=120)
        check = gr.Checkbox(False, label="Check the chat template", elem_id="export-check-template", scale=2,
                            min_width=150, info="does the think block survive it?")
    with gr.Row(equal_height=True, elem_id="export-pair-controls", visible=False) as pair_row:  # dpo only
        sources = gr.CheckboxGroup(list(pp.SOURCES), value=list(pp.SOURCES), label="Pair sources",
                                   elem_id="export-sources", scale=4, min_width=340,
                                   info="REER steps, people's forces and edits, R2 revisions, judging queues")
        min_margin = gr.Number(pp.DEFAULT_MIN_MARGIN, label="Min margin", elem_id="export-min-margin", scale=2,
                               min_width=150, info="leave out score-ordered pairs closer than this (0.01 for bf16 runs)")
    with gr.Row(equal_height=True):
        describe = gr.HTML("", elem_id="export-describe", padding=False)
    with gr.Row(elem_id="export-buttons"):
        preview_btn = gr.Button("Preview", elem_id="export-preview", size="sm", scale=1)
        run_btn = gr.Button("Export", variant="primary", elem_id="export-run", size="sm", scale=1)
    result = gr.HTML("", elem_id="export-result")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=420):
            records = gr.Code("", language="json", label=f"Preview: the first {PREVIEW_N} records",
                              elem_id="export-records", lines=12, max_lines=24, interactive=False, wrap_lines=True)
        with gr.Column(scale=4, min_width=360):
            files = gr.File(label="Download: data file and dataset card", elem_id="export-file",
                            file_count="multiple", interactive=False, height=130)
            card = gr.Markdown("", elem_id="export-card", container=True, max_height=360)
    history = gr.Dataframe(value=history_rows(store), headers=list(HISTORY_HEADERS), interactive=False,
                           elem_id="export-history", label="Earlier exports", max_height=220, wrap=True)

    def _describe(fmt_, status_, source_, pairs: dict) -> str:
        try:
            _, total, skipped = ex.preview(store, fmt_, status_, source_, n=0, **pairs)
        except StoreError as e:
            return _box(page_words(str(e)), "error")
        left = "; ".join(f"{n} {why}" for why, n in skipped.items())
        return (f'<div class="ex-describe" data-records="{total}"><b>{total}</b> record(s) would be written. '
                f'{_code(ex.DESCRIBE.get(fmt_, ""))}.'
                + (f' <span class="ex-left">Left out: {html.escape(left)}.</span>' if left else "") + "</div>")

    def refresh(fmt_, status_, source_, sources_=tuple(pp.SOURCES), min_margin_=pp.DEFAULT_MIN_MARGIN,
                request: gr.Request = None) -> dict:
        return {**do_preview(fmt_, status_, source_, sources_, min_margin_, request), history: history_rows(store)}

    def do_preview(fmt_, status_, source_, sources_=tuple(pp.SOURCES), min_margin_=pp.DEFAULT_MIN_MARGIN,
                   request: gr.Request = None):
        shown = {pair_row: gr.Row(visible=fmt_ in PAIR_FORMATS)}
        pairs, bad = pair_options(fmt_, min_margin_, sources_, ctx.is_lead(annotator_of(request)))
        if bad:
            return {**shown, result: _box(bad, "error"), records: "", describe: ""}
        try:
            rows, total, skipped = ex.preview(store, fmt_, status_, source_, n=PREVIEW_N, **pairs)
        except StoreError as e:
            return {**shown, result: _box(page_words(str(e)), "error"), records: ""}
        if not rows:
            why = "; ".join(f"{n} {k}" for k, n in skipped.items()) or "no trajectory matches the filters"
            text = (f"Nothing to export as {fmt_} (status {status_}, source {source_}): {why}. Try Status \"any\" or "
                    "Source \"all\", or accept some trajectories on the Review page first.")
            return {**shown, result: _box(text, "warn"), records: "", describe: _describe(fmt_, status_, source_, pairs)}
        return {**shown, result: _box(f"Preview: {len(rows)} of {total} {fmt_} record(s)."),
                records: json.dumps(rows, ensure_ascii=False, indent=1, default=str),
                describe: _describe(fmt_, status_, source_, pairs)}

    def do_export(fmt_, status_, source_, check_, sources_=tuple(pp.SOURCES), min_margin_=pp.DEFAULT_MIN_MARGIN,
                  request: gr.Request = None):
        lead = ctx.is_lead(annotator_of(request))  # people's judgments go only into a lead's export
        pairs, bad = pair_options(fmt_, min_margin_, sources_, lead)
        if bad:
            gr.Warning(bad)
            return {result: _box(bad, "error"), files: None, card: "", history: history_rows(store)}
        tok = None
        if check_ and fmt_ not in ("prm", "dpo"):
            try:
                from core.models.hf import HFLM

                lm = ctx.get_lm()  # the studio's model when it has a local tokenizer, else the built-in one's
                tok = lm.tokenizer if isinstance(lm, HFLM) else None
            except Exception:  # a remote model without a tokenizer here: check with the built-in one
                tok = None
        report, paths, message = run_export(store, root, fmt_, status_, source_,
                                            bool(check_) and fmt_ not in ("prm", "dpo"), tok, judgments=lead,
                                            pairs=pairs)
        if report is None:
            gr.Warning(message)
            return {result: _box(message, "error"), files: None, card: "", history: history_rows(store)}
        skipped = ", ".join(f"{n} {why}" for why, n in report.skipped.items()) or "none"
        parts = [f'<div class="lib-msg ok ex-done" role="status" data-count="{report.count}" '
                 f'data-export="{report.export_id}">Wrote <b>{report.count}</b> {html.escape(fmt_)} record(s) from '
                 f"{report.trajectories} trajectory(ies) to <code>{html.escape(report.out)}</code>. "
                 f"Left out: {html.escape(skipped)}.</div>"]
        if check_ and fmt_ in ("prm", "dpo"):
            parts.append(_box("The chat-template check applies to chat records; prm and dpo records hold no "
                              "think block, so it was skipped.", "warn"))
        elif check_:
            issues = report.template_issues
            kind = "warn" if issues else "ok"
            head = (f"Chat template check: {len(issues)} of {report.trajectories} record(s) lose or change the "
                    "think block under the model's chat template." if issues else
                    f"Chat template check: the think block of all {report.trajectories} record(s) survives the "
                    "model's chat template.")
            items = "".join(f"<li>{html.escape(str(i))}</li>" for i in issues[:50])
            parts.append(f'<div class="lib-msg {kind} ex-check" data-issues="{len(issues)}">{html.escape(head)}'
                         + (f'<ul class="lib-problems">{items}</ul>' if items else "") + "</div>")
        return {result: "".join(parts), files: paths,
                card: Path(report.card).read_text(encoding="utf-8"), history: history_rows(store)}

    ins = [fmt, status, source]
    pair_ins = [sources, min_margin]  # after the first three, so API callers that omit them get the defaults
    quick = dict(concurrency_limit=None, show_progress="minimal")
    for c in ins + pair_ins:
        c.input(do_preview, ins + pair_ins, [result, records, describe, pair_row], api_visibility="private", **quick)
    preview_btn.click(do_preview, ins + pair_ins, [result, records, describe, pair_row], api_name="export_preview",
                      **quick)
    run_btn.click(do_export, [*ins, check, *pair_ins], [result, files, card, history], api_name="export_run",
                  concurrency_limit=2)
    return ExportPage(refresh=refresh, inputs=ins + pair_ins, outputs=[result, records, describe, pair_row, history])
