"""The Library page: the stored prompts, how they get in, and which one to run.

Knows: a table of prompts with a search box and a category filter, one page at a time
(PAGE_SIZE rows, Previous / Next; the search, the filter and the count are done by SQLite through
core.store.Store.prompt_summaries, so no listing reads the query or reference texts of every
prompt: a store of thousands of long references lists as fast as a small one); importing the built-in
samples and uploaded files or a folder in one go (`import_uploads`, the one function the importer goes
through: core.data.imports.import_files, which also brings finished trajectories to the Review page;
the uploads are put side by side first, so HelloBench's task file finds its responses file), with
a report naming file, line (or "whole file") and field and counting new, duplicate and skipped
records per file; adding or editing a prompt by hand with validation messages naming the field and
the fix; handing a picked prompt to the REER or R2 page, and reloading the table (its run counts)
from the store when the tab is shown (the app wires both: see `LibraryPage`).
Does not know: file formats (core.data.imports), the search, or other pages' insides.
Everything a person typed or a file held is escaped by Gradio's components (plain text cells).
"""
from __future__ import annotations

import html
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr

from core.data.imports import FileCount, import_files
from core.data.imports import ImportReport as CoreReport
from core.data.items import InputError
from core.data.records import DATA_SUFFIXES, HELLOBENCH_RESPONSES, HELLOBENCH_TASKS
from core.store import BadValue, NotFound, Store, StoreError
from studio.context import StudioContext

HEADERS = ["id", "category", "query", "answer words", "runs", "best ppl"]
HEAD_CHARS = 320  # how much of each query the table reads: enough to pass an opening every row shares
ALL = "all categories"
PAGE_SIZE = 50  # prompts per page of the table
ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,80}$")


@dataclass(frozen=True)
class ImportReport:
    """What an import did (core.data.imports.import_files, seen from the Library): prompts added, ones
    already stored, trajectories added for review, every rejected record's problem, one count line per
    file read ("name: 3 new prompt(s), 1 duplicate(s), 2 skipped") and the uploaded files left out."""

    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line field 'f': what is wrong and the fix"
    trajectories: list[int] = field(default_factory=list)  # finished trajectories imported (Review page)
    files: list[str] = field(default_factory=list)  # one count line per file read
    ignored: list[str] = field(default_factory=list)  # uploaded files that are not data files (README.md ...)
    file_problems: int = 0  # problems about a whole file (it, or the rest of it, was not read)

    def head(self, name: str) -> str:
        """The counts in one line, without the problems."""
        head = f"{name}: {len(self.added)} new prompt(s), {len(self.existing)} already in the library"
        if self.trajectories:
            head += f", {len(self.trajectories)} trajectory(ies) added for review"
        lines = len(self.problems) - self.file_problems
        if lines:
            head += f"; {lines} line(s) skipped"
        if self.file_problems:
            head += f"; {self.file_problems} file problem(s)"
        return head

    def message(self, name: str) -> str:
        head = self.head(name)
        if len(self.files) > 1:
            head += " (" + "; ".join(self.files) + ")"
        if self.ignored:
            head += f"; not data files, left out: {', '.join(self.ignored)}"
        if not self.problems:
            return head + "."
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return head + ": " + " | ".join(self.problems[:3]) + more


def problem_text(name: str, line: int, field_: str, message: str) -> str:
    """A problem as the Library shows it: "name:3 field 'reference': ..." for a record, and
    "name (whole file): ..." for a problem about the file (line 0), never "name:0"."""
    where = f"{name}:{line}" if line > 0 else f"{name} (whole file)"
    return where + (f" field '{field_}'" if field_ else "") + f": {message}"


def _file_line(name: str, c: FileCount) -> str:
    parts = [f"{c.prompts} new prompt(s)"]
    if c.trajectories:
        parts.append(f"{c.trajectories} new trajectory(ies)")
    parts += [f"{c.duplicates} duplicate(s)", f"{c.skipped} skipped"]
    line = f"{name}: " + ", ".join(parts)
    return line + ("; reading stopped part way, the rest of the file is not imported" if c.stopped else "")


def _side_by_side(files: list[Path], folder: Path) -> list[Path]:
    """Copies of `files` in `folder` under their own names (a name met twice goes one folder down), so
    a file that is read with the one beside it (HelloBench's tasks and responses) finds it."""
    placed = []
    for i, f in enumerate(files):
        dest = folder / f.name
        if dest.exists():
            dest = folder / str(i) / f.name
            dest.parent.mkdir()
        shutil.copyfile(f, dest)
        placed.append(dest)
    return placed


def import_upload(store: Store, path: str | Path) -> ImportReport:
    """Import one file in place (the built-in samples): `import_uploads` without copying."""
    return import_uploads(store, [path], side_by_side=False)


def import_uploads(store: Store, paths: list[str | Path], side_by_side: bool = True) -> ImportReport:
    """Import uploaded files in one go through core.data.imports.import_files (JSONL / JSON / CSV / Parquet
    records with query and reference or their aliases, chat messages, HelloBench files, Palimpsest
    exports; records with a think block become trajectories). A browser puts each upload in a folder of
    its own, so the files are first copied side by side into one temporary folder under their own
    names (`side_by_side`): HelloBench's task file then finds its responses file, and the pair is read
    once, through the task file. Files that are not data files (a folder's README.md, LICENSE) are
    left out and named. Problems name the file as the person knows it, its line (or "whole file"),
    field and the fix; each file read gets a count line. Raises InputError for a missing file or no
    data file at all, and core.data.imports.ImportFailed (a StoreError) when the store refused a batch
    (the batches before it are kept; importing the files again finishes it)."""
    given = [Path(p) for p in paths if p]
    for p in given:
        if not p.is_file():
            raise InputError(f"{p.name}: no such file; upload .jsonl, .json, .csv or .parquet files")
    data = [p for p in given if p.suffix.lower() in DATA_SUFFIXES]
    ignored = [p.name for p in given if p not in data]
    if not data:
        raise InputError(f"no data file among the {len(given)} uploaded file(s)"
                         + (f" ({', '.join(ignored[:5])})" if ignored else "")
                         + "; upload .jsonl, .json, .csv or .parquet files, or a folder holding them")
    if not side_by_side:
        return _import_placed(store, data, ignored)
    with tempfile.TemporaryDirectory(prefix="palimpsest-upload-") as tmp:
        return _import_placed(store, _side_by_side(data, Path(tmp)), ignored)


def _import_placed(store: Store, files: list[Path], ignored: list[str]) -> ImportReport:
    """Import files that sit where the reader expects them (see import_uploads)."""
    problems: list[str] = []
    todo, names = [], {}
    for f in files:
        beside = f.with_name(HELLOBENCH_RESPONSES)
        if f.name == HELLOBENCH_RESPONSES and f.with_name(HELLOBENCH_TASKS) in files:
            continue  # read through its task file
        if f.name == HELLOBENCH_TASKS and beside not in files:
            problems.append(problem_text(f.name, 0, "", f"HelloBench tasks without their answers; upload "
                                         f"{HELLOBENCH_RESPONSES} together with it (pick both files at once, or "
                                         "import the folder holding them)"))
            continue
        names[str(f)] = f"{f.name} + {HELLOBENCH_RESPONSES}" if f.name == HELLOBENCH_TASKS else f.name
        todo.append(f)
    file_problems = len(problems)
    rep = import_files(store, todo) if todo else CoreReport()
    stopped = {path for path, c in rep.files.items() if c.stopped}
    for x in rep.problems:
        text = problem_text(Path(x.path).name, x.line, x.field, x.message)
        if x.line <= 0 and x.path in stopped:  # the problem that ended the reading of its file
            text += ("; reading stopped here, so the rest of the file is not imported: fix the file and upload it "
                     "again (what is stored counts as duplicates)")
        problems.append(text)
        file_problems += x.line <= 0
    lines = [_file_line(names.get(path, Path(path).name), c) for path, c in rep.files.items()]
    for path, c in rep.files.items():
        if not c.read and not c.skipped:
            problems.append(problem_text(Path(path).name, 0, "", "the file holds no records"))
            file_problems += 1
    return ImportReport(added=list(rep.prompt_ids), existing=list(dict.fromkeys(rep.duplicate_ids)),
                        problems=problems, trajectories=list(rep.trajectory_ids), files=lines,
                        ignored=ignored, file_problems=file_problems)


@dataclass(frozen=True)
class PromptPage:
    """One page of the Library's table: its rows (HEADERS), which page (0-based) of how many, and
    how many prompts match the search and filter in all."""

    rows: list[list]
    page: int
    pages: int
    total: int

    def label(self) -> str:
        return page_label(self.total, self.page)


def page_label(total: int, page: int, size: int = PAGE_SIZE) -> str:
    """"Prompts 51-100 of 4,987 (page 2 of 100)" for page `page` (0-based) of `total` prompts."""
    if not total:
        return "No prompt matches."
    pages = max(1, -(-total // size))
    page = min(max(page, 0), pages - 1)
    first = page * size + 1
    return f"Prompts {first:,}-{min(first + size - 1, total):,} of {total:,} (page {page + 1} of {pages})"


def pager_html(store: Store, search: str = "", category: str | None = None, page: int = 0) -> str:
    """The line beside Previous / Next: which prompts the table shows (one count query)."""
    cat = None if not category or category == ALL else category
    total = store.prompt_summaries((search or "").strip() or None, cat, limit=0)[1]
    return f'<div class="lib-pager" data-page="{int(page or 0) + 1}">{html.escape(page_label(total, int(page or 0)))}</div>'


def _cut(s: str, n: int) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def prompt_page(store: Store, search: str = "", category: str | None = None, page: int = 0,
                size: int = PAGE_SIZE) -> PromptPage:
    """Page `page` (0-based; clamped to the last) of the prompts matching `search` and `category`,
    with each row's run count and best perplexity; reads only that page's rows, never the texts."""
    cat = None if not category or category == ALL else category
    search = (search or "").strip() or None
    page = max(int(page or 0), 0)
    found, total = store.prompt_summaries(search, cat, limit=size, offset=page * size, head_chars=HEAD_CHARS)
    pages = max(1, -(-total // size))
    if page >= pages:  # past the end (the list shrank, or a hand-made request): show the last page
        page = pages - 1
        found, total = store.prompt_summaries(search, cat, limit=size, offset=page * size, head_chars=HEAD_CHARS)
    ids = [p["id"] for p in found]
    stats = store.run_stats(ids)
    rows = []
    heads = distinct_heads([p["query_head"] for p in found])
    for p, head in zip(found, heads):
        n, best = stats.get(p["id"], (0, None))
        rows.append([p["id"], (p.get("category") or "").replace("_", " "), _cut(head, 90),
                     p["reference_words"], n, "" if best is None else f"{best:.2f}"])
    return PromptPage(rows, page, pages, total)


def distinct_heads(heads: list[str], min_words: int = 4) -> list[str]:
    """The queries' openings as rows that can be told apart: a row that shares an opening of at least
    `min_words` words with another row (HelloBench's all begin "You should write a well-structured…")
    is shown as "…" and starts where it differs from the row most like it."""
    split = [h.split() for h in heads]

    def shared(a: list[str], b: list[str]) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    out = []
    for i, words in enumerate(split):
        n = max((shared(words, other) for j, other in enumerate(split) if j != i), default=0)
        out.append("…" + " ".join(words[n:]) if min_words <= n < len(words) else heads[i])
    return out


def prompt_rows(store: Store, search: str = "", category: str | None = None, page: int = 0) -> list[list]:
    """Table rows (HEADERS) of one page of the stored prompts matching `search` and `category`."""
    return prompt_page(store, search, category, page).rows


def categories(store: Store) -> list[str]:
    return [ALL] + store.prompt_categories()


def prompt_choices(store: Store) -> list[tuple[str, str]]:
    """(label, id) pairs for prompt menus elsewhere (the REER page); reads the first characters
    of each query only."""
    out = []
    for p in store.prompt_titles(head_chars=120):
        cat = (p.get("category") or "").replace("_", " ")
        out.append((f"{p['id']} · {cat + ' · ' if cat else ''}{_cut(p['query_head'], 70)}", p["id"]))
    return out


def save_prompt(store: Store, pid: str, category: str, query: str, reference: str) -> tuple[str, str]:
    """Add a prompt, or edit the one with id `pid`; (its id, a message). BadValue names the field."""
    pid, category = (pid or "").strip(), (category or "").strip() or None
    if not (query or "").strip():
        raise BadValue("Query is empty: write the writing task (x) in the Query box.")
    if not (reference or "").strip():
        raise BadValue("Reference is empty: paste the good answer (y) in the Reference box.")
    if pid and not ID_RE.match(pid):
        raise BadValue(f"Id {pid[:40]!r} is not allowed: use 1-80 letters, digits, '_', '-', '.' or ':', "
                       "or leave it empty for an automatic id.")
    if category and len(category) > 80:
        raise BadValue("Category is too long: keep it under 80 characters (e.g. story_writing).")
    exists = False
    if pid:
        try:
            store.get_prompt(pid)
            exists = True
        except NotFound:
            pass
    if exists:
        old = store.get_prompt(pid)
        if (old["query"], old["reference"], old.get("category")) == (query, reference, category):
            return pid, f"Prompt {pid} is unchanged."
        if store.list_runs(prompt_id=pid):
            new_id, added = store.add_prompt(query, reference, category=category, source="edited in the studio")
            return new_id, (f"Prompt {pid} has runs, so your edit was saved as a new prompt {new_id}."
                            if added else f"That text is already stored as prompt {new_id}.")
        store.update_prompt(pid, query, reference, category)
        return pid, f"Prompt {pid} updated."
    new_id, added = store.add_prompt(query, reference, id=pid or None, category=category, source="added in the studio")
    return new_id, (f"Prompt {new_id} added." if added else f"That text is already stored as prompt {new_id}.")


def _upload_path(f) -> str | None:
    """The path of one uploaded file as Gradio hands it (a str, a NamedString or a file dict)."""
    if isinstance(f, dict):
        return f.get("path") or f.get("name")
    return f if isinstance(f, str) else getattr(f, "name", None)


def _msg(text: str, kind: str = "ok") -> str:
    return f'<div class="lib-msg {kind}" role="{"alert" if kind == "error" else "status"}">{html.escape(text)}</div>'


def _report_html(rep: ImportReport, name: str) -> str:
    """The import's counts, one count line per file, then every problem (file, line or whole file, field,
    fix) in a scrollable list."""
    head = rep.head(name) + (":" if rep.problems else ".")
    counts = "".join(f"<li>{html.escape(x)}</li>" for x in rep.files)
    if rep.ignored:
        counts += f"<li>{html.escape('not data files, left out: ' + ', '.join(rep.ignored))}</li>"
    counts = f'<ul class="lib-counts">{counts}</ul>' if counts else ""
    if not rep.problems:
        return (f'<div class="lib-msg ok" role="status">{html.escape(head)}{counts}</div>')
    items = "".join(f"<li>{html.escape(p)}</li>" for p in rep.problems)
    return (f'<div class="lib-msg warn" role="status">{html.escape(head)}{counts}'
            f'<ul class="lib-problems">{items}</ul></div>')


@dataclass(frozen=True)
class LibraryPage:
    """Handles the app needs to link this page with others."""

    selected: gr.State  # the picked prompt's id
    to_reer: gr.Button  # "Run REER on it"
    to_r2: gr.Button  # "Write with R2"
    changed: list  # events that change the prompt list (for other pages' menus): list of Dependency
    reload: Callable[..., dict]  # reload(search, category, page) -> the table (run counts) from the store
    reload_inputs: list  # [search, category, page]
    reload_outputs: list  # [table, category, page, pager]


def build(ctx: StudioContext) -> LibraryPage:
    """Create the page's components (inside the caller's Tab) and wire its listeners."""
    store = ctx.store
    selected = gr.State(None)
    gr.HTML('<div class="page-head"><h2>Library</h2><p>Prompts (query + reference answer) stored in the '
            'studio. Import files or the built-in samples, search and filter, add or edit by hand, then pick one '
            'to run. Files that belong together (HelloBench\'s task file and its responses file) are imported '
            'in one go: pick them together, or import the folder that holds them.</p></div>')
    with gr.Row(equal_height=False):
        with gr.Column(scale=7, min_width=520):
            with gr.Row(equal_height=True):
                search = gr.Textbox(label="Search", placeholder="words in the id, query, reference or category",
                                    elem_id="library-search", scale=3, max_lines=1)
                category = gr.Dropdown(choices=categories(store), value=ALL, label="Category",
                                       elem_id="library-category", scale=2, interactive=True)
            with gr.Row(equal_height=True):
                samples_btn = gr.Button("Import the built-in samples", elem_id="library-import-samples", size="sm")
                upload = gr.UploadButton("Import files (.jsonl / .json / .csv / .parquet)…", size="sm",
                                         file_count="multiple", file_types=list(DATA_SUFFIXES),
                                         elem_id="library-upload")
                upload_dir = gr.UploadButton("Import a folder…", size="sm", file_count="directory",
                                             elem_id="library-upload-folder")
            table = gr.Dataframe(value=prompt_rows(store), headers=HEADERS, interactive=False, wrap=True,
                                 elem_id="library-table", column_widths=["26%", "14%", "38%", "8%", "6%", "8%"],
                                 max_height=470, label="Prompts: click a row to open it")
            page_no = gr.State(0)  # the page of the table on screen (0-based)
            with gr.Row(equal_height=True, elem_id="library-pager"):
                prev_btn = gr.Button("← Previous", elem_id="library-prev", size="sm", scale=1)
                pager = gr.HTML(pager_html(store), elem_id="library-page", padding=False)
                next_btn = gr.Button("Next →", elem_id="library-next", size="sm", scale=1)
        with gr.Column(scale=5, min_width=380):
            with gr.Group():
                with gr.Row(equal_height=True):
                    pid = gr.Textbox(label="Id (empty: automatic)", elem_id="library-id", max_lines=1, scale=1)
                    cat = gr.Textbox(label="Category", elem_id="library-edit-category", max_lines=1, scale=1,
                                     placeholder="e.g. story_writing")
                query = gr.Textbox(label="Query (x): the writing task", lines=3, max_lines=6,
                                   elem_id="library-query")
                reference = gr.Textbox(label="Reference (y): a good answer", lines=7, max_lines=12,
                                       elem_id="library-reference")
            with gr.Row():
                new_btn = gr.Button("New", elem_id="library-new", size="sm")
                save_btn = gr.Button("Save", variant="secondary", elem_id="library-save", size="sm")
                to_reer = gr.Button("Run REER on it →", variant="primary", elem_id="library-to-reer", size="sm")
                to_r2 = gr.Button("Write with R2 →", variant="primary", elem_id="library-to-r2", size="sm")
            status = gr.HTML(_msg(f"{store.db['prompts'].count} prompt(s) in the library."), elem_id="library-status")

    def show_page(q, c, n=0) -> dict:
        pg = prompt_page(store, q, c, n)
        return {table: pg.rows, page_no: pg.page}

    def refresh(q, c):
        cats = categories(store)
        return {**show_page(q, c), category: gr.Dropdown(choices=cats, value=c if c in cats else ALL)}

    def do_samples(q, c):
        if ctx.samples_path is None or not Path(ctx.samples_path).is_file():
            return {status: _msg("No built-in samples file (data/samples.jsonl) found.", "error")}
        try:
            rep = import_upload(store, ctx.samples_path)
        except (InputError, StoreError) as e:
            return {status: _msg(str(e), "error")}
        return {**refresh(q, c), status: _report_html(rep, "built-in samples")}

    def do_upload(f, q, c):
        paths = [_upload_path(x) for x in (f if isinstance(f, (list, tuple)) else [f] if f else [])]
        paths = [p for p in paths if p]
        if not paths:
            return {status: _msg("No file received: pick .jsonl, .json, .csv or .parquet files, or a folder.",
                                 "warn")}
        name = Path(paths[0]).name if len(paths) == 1 else f"{len(paths)} files"
        try:
            rep = import_uploads(store, paths)
        except (InputError, StoreError) as e:
            gr.Warning(str(e))
            return {status: _msg(str(e), "error")}
        if rep.problems:
            gr.Warning(rep.message(name))
        return {**refresh(q, c), status: _report_html(rep, name)}

    def pick(evt: gr.SelectData):
        row = evt.row_value or []
        if not row:
            return {status: _msg("Click a row of the table to open its prompt.", "warn")}
        try:
            p = store.get_prompt(str(row[0]))
        except NotFound as e:
            return {status: _msg(str(e), "error")}
        return {selected: p["id"], pid: p["id"], cat: p.get("category") or "", query: p["query"],
                reference: p["reference"], status: _msg(f"Prompt {p['id']} opened: edit and Save, or run it.")}

    def do_new():
        return {selected: None, pid: "", cat: "", query: "", reference: "",
                status: _msg("New prompt: fill in the query and the reference, then Save.")}

    def do_save(i, c_, qx, ry, q, c):
        try:
            new_id, message = save_prompt(store, i, c_, qx, ry)
        except StoreError as e:
            return {status: _msg(str(e), "error")}
        return {**refresh(q, c), selected: new_id, pid: new_id, status: _msg(message)}

    # ---- listeners ---------------------------------------------------------------------------
    filt = [search, category]
    listed = [
        search.submit(refresh, filt, [table, category, page_no], api_name="library_search"),
        category.input(refresh, filt, [table, category, page_no], api_visibility="private"),
        prev_btn.click(lambda q, c, n: show_page(q, c, (n or 0) - 1), [*filt, page_no], [table, page_no],
                       api_name="library_prev"),
        next_btn.click(lambda q, c, n: show_page(q, c, (n or 0) + 1), [*filt, page_no], [table, page_no],
                       api_name="library_next"),
    ]
    changed = [
        samples_btn.click(do_samples, filt, [table, category, page_no, status], api_name="library_import_samples"),
        upload.upload(do_upload, [upload, *filt], [table, category, page_no, status], api_name="library_upload"),
        upload_dir.upload(do_upload, [upload_dir, *filt], [table, category, page_no, status],
                          api_name="library_upload_folder"),
        save_btn.click(do_save, [pid, cat, query, reference, *filt], [table, category, page_no, selected, pid, status],
                       api_name="library_save"),
    ]
    for dep in listed + changed:  # the line beside Previous / Next follows the table
        dep.then(lambda q, c, n: pager_html(store, q, c, n), [*filt, page_no], pager, api_visibility="private")
    table.select(pick, None, [selected, pid, cat, query, reference, status], api_visibility="private")
    new_btn.click(do_new, None, [selected, pid, cat, query, reference, status], api_visibility="private")

    def reload(q, c, n):
        """The page on screen again, from the store: run counts and best perplexities move with runs made
        on other tabs (the app calls this when the tab is selected and on load)."""
        return {**refresh(q, c), **show_page(q, c, n), pager: pager_html(store, q, c, n)}

    return LibraryPage(selected=selected, to_reer=to_reer, to_r2=to_r2, changed=changed, reload=reload,
                       reload_inputs=[*filt, page_no], reload_outputs=[table, category, page_no, pager])
