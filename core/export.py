"""Exporting curated trajectories as the files training tools read, each with a dataset card.

Knows the formats and their exact record shapes (also in the README's export section):
- chat      train.jsonl: {"id", "messages": [{"role": "user", "content": QUERY}, {"role": "assistant",
            "content": assistant_turn(THINKING, ANSWER)}], "source", "scores"} per line, the
            assistant turn as core.format writes it (TRL's SFTTrainer and most trainers read it;
            core.train.data reads it back).
- sharegpt  data.json: [{"id", "conversations": [{"from": "human", ...}, {"from": "gpt", ...}], "source",
            "scores"}] + dataset_info.json, as LLaMA-Factory reads them.
- alpaca    data.json: [{"id", "instruction", "input": "", "output", "source", "scores"}] + dataset_info.json.
- parquet   data.parquet: one row per trajectory with every field (id, query, thinking, answer,
            messages, source, status, rating, tags, notes, category, rubric, model, scores as JSON text).
- hf        a `datasets` save_to_disk folder with the parquet columns.
            Both also carry, when people judged the exported drafts in a judging queue, the judgments
            table (judgments.parquet / judgments/) and rm_pairs.jsonl (core.judging.export), and the
            card gains their agreement figures.
- prm       train.jsonl: {"id", "prompt", "steps" (= "completions"): [reflection...], "labels": [bool...], "rewards": [...],
            "reward_components": [...]} from R2 rounds (label: the reflection's total reward > 0).
- dpo       train.jsonl: preference pairs in TRL's conversational layout, from REER steps, people's forces
            and edits, R2 revisions and judging queues (core.pairs has the record and the rules).
The text exported is each trajectory's current version (core.data.curation). Every export writes
README.md (the dataset card: counts, filters, score statistics per scale (REER's and the
judge's apart, never averaged together), source models, settings)
beside the data, `.palimpsest-export.json` (the manifest: the names this export wrote), and a row
in the store's exports table.

How a folder is written: into a temporary folder beside it (same parent, so the rename is atomic),
every file and folder fsynced, then swapped into place (an atomic exchange where the file system
has one, else the old folder renamed aside, the new one renamed in, the old one removed). The
earlier export survives any failure: a kill, a full disk, an exception. An earlier export is
replaced only when everything in the folder is its own (the manifest's names; for exports made
before manifests, the card's); anything else there is refused by name and never deleted. A
symlink as the folder, a full disk, a read-only folder: one-line errors (ExportError /
ExportFailed). Leftovers of a killed export (its temporary folder, or an old folder set aside) are
tidied by the next export to the same folder. R2 records are read from the
trajectory's `details`: {id, query, rounds: [{round, draft, judgment: {scores, overall,
critique, judge, parsed}, reflection, revision, reward: {improvement, redundancy,
circularity, length, total}}], thinking, final}.

Does not know: how trajectories were made or reviewed (core.reer.search, core.r2.loop, core.data.curation), nor
chat templates (core.data.template_check).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import statistics
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.data.curation import (
    SCALES,
    TrajectoryFilter,
    judge_score,
    list_trajectories,
    score_scale,
)
from core.format import assistant_turn
from core import pairs as pp
from core.judging.export import write_tables as write_judgments
from core.export_swap import ASIDE, PARTIAL, swap_in, tidy  # noqa: F401 (ASIDE: the names tests look for)
from core.outputs import OutputBusy, exclusive, fsync_tree, oserror_line
from core.store import BadValue, Store, now

FORMATS = ("chat", "sharegpt", "alpaca", "parquet", "hf", "prm", "dpo")
STATUS_CHOICES = ("accepted", "any", "pending", "rejected")
SOURCE_CHOICES = ("all", "reer", "r2", "import")
DATA_FILES = {"chat": "train.jsonl", "sharegpt": "data.json", "alpaca": "data.json", "parquet": "data.parquet",
              "hf": None, "prm": "train.jsonl", "dpo": "train.jsonl"}
DESCRIBE = {
    "chat": "one JSON object per line: id, messages (user = the query; assistant = `<think>\\n` thinking "
            "`\\n</think>\\n` answer, as core.format writes it), source, scores",
    "sharegpt": "a JSON list of {id, conversations: [{from: human, value: query}, {from: gpt, value: <think> "
                "block + answer}], source, scores}; dataset_info.json registers it for LLaMA-Factory as `palimpsest`",
    "alpaca": "a JSON list of {id, instruction: query, input: \"\", output: <think> block + answer, source, scores}; "
              "dataset_info.json registers it for LLaMA-Factory as `palimpsest`",
    "parquet": "one row per trajectory: id, query, thinking, answer, messages, source, status, rating, tags, "
               "notes, category, rubric, model, scores (JSON text)",
    "hf": "a `datasets` folder (load_from_disk) with the parquet columns",
    "prm": "one JSON object per line: id, prompt, steps (the R2 reflections), labels (reward total > 0), "
           "rewards (totals), reward_components",
    "dpo": "one JSON object per line in TRL's conversational preference layout: id, source (reer-step, "
           "reer-human, r2-revision or people), prompt ([user turn]), chosen and rejected ([assistant turn] in the "
           "training layout), run, step, segment, chosen_score, rejected_score, margin, scale, annotator, "
           "trajectory_id (docs/formats.md)",
}


MANIFEST = ".palimpsest-export.json"  # in each export folder: {"format", "files": names this export wrote, ...}


class ExportError(BadValue):
    """An export cannot be written as asked (bad format, filter or output path)."""


class ExportFailed(ExportError):
    """The system refused to write an export (disk full, read-only folder, permissions): one line;
    the earlier export in the folder is unchanged."""


@dataclass
class ExportReport:
    """What one export wrote."""
    format: str  # one of FORMATS
    out: str  # the output folder
    files: list[str] = field(default_factory=list)  # data files written (the card is `card`)
    count: int = 0  # records written
    trajectories: int = 0  # trajectories they came from
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> trajectories left out
    stats: dict = field(default_factory=dict)  # score statistics per scale (see score_stats)
    card: str = ""  # the dataset card's path
    export_id: int | None = None  # its row in the exports table
    template_issues: list = field(default_factory=list)  # core.data.template_check.TemplateIssue, when checked

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.items()) or "none"
        return f"wrote {self.count} {self.format} record(s) from {self.trajectories} trajectory(ies) to {self.out}; skipped: {skipped}"


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _rounds(row: dict) -> list[dict]:
    rounds = (row.get("details") or {}).get("rounds")
    return [r for r in rounds if isinstance(r, dict)] if isinstance(rounds, list) else []


REER_FIELDS = ("initial_score", "final_score", "initial_ppl", "final_ppl")  # REER's scale: lower is better
JUDGE_FIELDS = ("initial_overall", "final_overall", "reward_total", "rounds")  # the R2 judge's: higher is better


def scores_of(row: dict) -> dict:
    """The numbers worth carrying with a record, each name with one meaning: REER's scores and
    perplexities as `initial_score`/`final_score`/`*_ppl` (REER trajectories only); the judge's
    overall score of the first draft and of the answer as `initial_overall`/`final_overall` (the
    same numbers the trajectory row and the Review page show), R2's reward total and rounds;
    and for an import the scores it arrived with."""
    details = row.get("details") or {}
    out = {}
    if row.get("kind") == "import" and isinstance(details.get("scores"), dict):
        out.update({k: v for k, v in details["scores"].items() if _num(v)})
    if score_scale(row) == "reer":
        out.update({k: row[k] for k in REER_FIELDS if _num(row.get(k))})
        return out
    for k in ("initial_score", "final_score"):  # an export older than the split put judge scores here
        out.pop(k, None)
    for which in ("initial", "final"):
        v = judge_score(row, which)
        if v is not None:
            out[f"{which}_overall"] = v
    rounds = _rounds(row)
    if rounds and row.get("kind") != "import":
        totals = [r.get("reward", {}).get("total") for r in rounds if isinstance(r.get("reward"), dict)]
        totals = [t for t in totals if _num(t)]
        if totals:
            out["reward_total"] = round(sum(totals), 6)
        out["rounds"] = len(rounds)
    return out


def _examples(store: Store, status: str, source: str) -> tuple[list[dict], Counter]:
    if status not in STATUS_CHOICES:
        raise ExportError(f"--status: {status!r} is not allowed; use one of {', '.join(STATUS_CHOICES)}")
    if source not in SOURCE_CHOICES:
        raise ExportError(f"--source: {source!r} is not allowed; use one of {', '.join(SOURCE_CHOICES)}")
    flt = TrajectoryFilter(status=None if status == "any" else status)
    rows = list_trajectories(store, flt)
    skipped: Counter = Counter()
    out, seen, runs = [], set(), {}
    for r in rows:
        if source != "all" and r["source"] != source and not (source == "import" and r["kind"] == "import"):
            continue
        prompt = store.get_prompt(r["prompt_id"])
        if prompt.get("query_pending"):
            skipped["without a query yet"] += 1
            continue
        if not r["thinking"].strip() or not r["answer"].strip():
            skipped["with empty thinking or answer"] += 1
            continue
        details = r.get("details") or {}
        rid = str(details.get("id") or r["prompt_id"])
        if rid in seen:
            rid = f"{rid}#{r['id']}"
        seen.add(rid)
        run = runs.get(r["run_id"]) or runs.setdefault(r["run_id"], store.get_run(r["run_id"]))
        out.append({
            "id": rid, "query": prompt["query"], "thinking": r["thinking"], "answer": r["answer"],
            "source": r["source"], "kind": r["kind"], "scale": r["scale"], "scores": scores_of(r),
            "model": run.get("model") or "",
            "category": prompt.get("category") or "", "rubric": prompt.get("rubric") or [],
            "status": r["status"], "rating": r.get("rating"), "tags": r["tags"], "notes": r.get("notes") or "",
            "version": r["version"], "trajectory_id": r["id"], "rounds": _rounds(r), "settings": run.get("settings"),
            "run_id": r["run_id"],
        })
    return out, skipped


def chat_record(ex: dict) -> dict:
    return {"id": ex["id"], "messages": [{"role": "user", "content": ex["query"]},
                                         {"role": "assistant", "content": assistant_turn(ex["thinking"], ex["answer"])}],
            "source": ex["source"], "scores": ex["scores"]}


def _flat(ex: dict) -> dict:
    rec = chat_record(ex)
    return {"id": ex["id"], "query": ex["query"], "thinking": ex["thinking"], "answer": ex["answer"],
            "messages": rec["messages"], "source": ex["source"], "status": ex["status"],
            "rating": ex["rating"], "tags": ex["tags"], "notes": ex["notes"], "category": ex["category"],
            "rubric": ex["rubric"], "model": ex["model"],
            "scores": json.dumps(ex["scores"], sort_keys=True)}


def prm_records(ex: dict) -> list[dict]:
    steps, labels, rewards, comps = [], [], [], []
    for r in ex["rounds"]:
        reward = r.get("reward") if isinstance(r.get("reward"), dict) else None
        if not isinstance(r.get("reflection"), str) or not r["reflection"].strip() or reward is None \
                or not _num(reward.get("total")):
            continue
        steps.append(r["reflection"])
        labels.append(reward["total"] > 0)
        rewards.append(float(reward["total"]))
        comps.append({k: float(reward[k]) for k in ("improvement", "redundancy", "circularity", "length", "total")
                      if _num(reward.get(k))})
    if not steps:
        return []
    return [{"id": ex["id"], "prompt": ex["query"], "steps": steps, "completions": steps, "labels": labels,
             "rewards": rewards, "reward_components": comps}]  # completions: TRL's stepwise-supervision name


STAT_GROUPS = ("reer", "judge", "imported")  # score_stats' groups, in the card's order


def score_stats(examples: list[dict]) -> dict:
    """{scale: {score name: {n, min, mean, max}}} over the exported records, one group per scale,
    never a statistic across scales: "reer" (REER_FIELDS of REER-scale records), "judge"
    (JUDGE_FIELDS of judged records: R2, and imports of R2 exports) and "imported" (any other
    score an imported record arrived with)."""
    values: dict[str, dict[str, list[float]]] = {}
    for ex in examples:
        scale = ex.get("scale") or "reer"
        for k, v in ex["scores"].items():
            group = scale if k in (REER_FIELDS if scale == "reer" else JUDGE_FIELDS) else "imported"
            values.setdefault(group, {}).setdefault(k, []).append(float(v))
    order = {k: i for i, k in enumerate(REER_FIELDS + JUDGE_FIELDS)}
    return {g: {k: {"n": len(v), "min": min(v), "mean": statistics.fmean(v), "max": max(v)}
                for k, v in sorted(values[g].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))}
            for g in STAT_GROUPS if g in values}


STAT_TITLES = {"reer": SCALES["reer"], "judge": SCALES["judge"] + ", with R2's reward total and rounds",
               "imported": "other scores, as imported (their meaning is the source's)"}


def _judge_scales(examples: list[dict]) -> str:
    """The judge scales the R2 runs were judged on ("1 to 10"), from their settings."""
    seen = []
    for ex in examples:
        j = (ex.get("settings") or {}).get("judge") if isinstance(ex.get("settings"), dict) else None
        if ex.get("kind") == "r2" and isinstance(j, dict) and _num(j.get("low")) and _num(j.get("high")):
            text = f"{j['low']:g} to {j['high']:g}"
            if text not in seen:
                seen.append(text)
    return ", ".join(seen)


def _stats_lines(stats: dict, examples: list[dict]) -> list[str]:
    """The card's score statistics: one table per scale, each titled with its direction."""
    if not stats:
        return ["No scores recorded."]
    lines = []
    for group, table in stats.items():
        lines += [f"### {STAT_TITLES.get(group, group)}", ""]
        if group == "judge" and _judge_scales(examples):
            lines += [f"Judged on a scale of {_judge_scales(examples)}.", ""]
        lines += ["| score | n | min | mean | max |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {s['n']} | {s['min']:.4g} | {s['mean']:.4g} | {s['max']:.4g} |" for k, s in table.items()]
        lines.append("")
    return lines[:-1]


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _earlier_export(out: Path) -> set[str]:
    """The names in folder `out` that an earlier export wrote: its manifest's, or for an export made
    before manifests, the card's ("Files: ..." plus the card and dataset_info.json); none when no
    export was written there."""
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if isinstance(manifest, dict) and isinstance(manifest.get("files"), list):
            return {n for n in manifest["files"] if isinstance(n, str) and "/" not in n} | {MANIFEST}
    except (OSError, ValueError):
        pass
    try:
        card = (out / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    head = re.match(r"# Palimpsest export \((\w+)\)\n", card)
    files = re.search(r"^Written .* by Palimpsest\. Files: (.*)\.$", card, re.M)
    if not head or not files:
        return set()
    names = {"README.md", *(n.strip() for n in files.group(1).split(","))}
    return names | ({"dataset_info.json"} if head.group(1) in ("sharegpt", "alpaca") else set())


def _check_out(out: Path) -> None:
    """Refuse a target that is a symlink or a file, or a folder holding anything an earlier export
    did not write (named in the message; never deleted)."""
    if out.is_symlink():
        raise ExportError(f"--out {out}: is a symbolic link (to {os.readlink(out)}); give the folder it points to, "
                          "or a new path")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is a file; exports are folders (data file + README.md), give a folder path")
    if not out.is_dir():
        return
    if os.path.ismount(out):
        raise ExportError(f"--out {out}: is a mount point, which cannot be swapped for a new folder; give a folder "
                          f"inside it, such as {out / 'export'}")
    try:
        names = sorted(os.listdir(out))
    except OSError as exc:
        raise ExportFailed(f"--out {out}: cannot read the folder ({oserror_line(exc)})") from None
    ours = _earlier_export(out)
    foreign = [n for n in names if n not in ours or (out / n).is_symlink()]
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise ExportError(f"--out {out}: a folder with other files in it, which no export wrote ({shown}); they "
                          "are never deleted: move them elsewhere, or give a new or empty folder")


def _rows(fmt: str, examples: list[dict], store: Store | None = None, min_margin: float = pp.DEFAULT_MIN_MARGIN,
          sources: tuple[str, ...] = pp.SOURCES) -> tuple[list[dict], Counter]:
    """The records of format `fmt` (one per trajectory, per R2 step, or per preference pair), and why
    any trajectories were left out."""
    skipped: Counter = Counter()
    if fmt == "chat":
        return [chat_record(ex) for ex in examples], skipped
    if fmt == "sharegpt":
        return [{"id": ex["id"], "conversations": [
            {"from": "human", "value": ex["query"]},
            {"from": "gpt", "value": assistant_turn(ex["thinking"], ex["answer"])}],
            "source": ex["source"], "scores": ex["scores"]} for ex in examples], skipped
    if fmt == "alpaca":
        return [{"id": ex["id"], "instruction": ex["query"], "input": "",
                 "output": assistant_turn(ex["thinking"], ex["answer"]), "source": ex["source"],
                 "scores": ex["scores"]} for ex in examples], skipped
    if fmt in ("parquet", "hf"):
        return [_flat(ex) for ex in examples], skipped
    if fmt == "dpo":
        return pp.preference_rows(store, examples, min_margin, sources)
    rows = []
    for ex in examples:
        got = prm_records(ex)
        if not got:
            skipped["without R2 rounds that make step labels"] += 1
        rows += got
    return rows, skipped


def _write(fmt: str, out: Path, rows: list[dict]) -> Path:
    """Write the rows into folder `out`; returns the data file (or folder)."""
    data = out / (DATA_FILES[fmt] or "data")
    if fmt in ("chat", "prm", "dpo"):
        _write_jsonl(data, rows)
    elif fmt in ("sharegpt", "alpaca"):
        _write_json(data, rows)
        info = {"file_name": data.name, "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
        if fmt == "sharegpt":
            info = {"file_name": data.name, "formatting": "sharegpt", "columns": {"messages": "conversations"},
                    "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
        _write_json(out / "dataset_info.json", {"palimpsest": info})
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), data)
    else:
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(data))
    return data


def _card(report: ExportReport, fmt: str, status: str, source: str, examples: list[dict], check: str | None,
          pairs: dict | None = None) -> str:
    by_source = Counter(ex["source"] for ex in examples)
    models = Counter(ex["model"] for ex in examples)
    settings: dict[str, dict] = {}
    for ex in examples:
        if isinstance(ex["settings"], dict):
            settings.setdefault(json.dumps(ex["settings"], sort_keys=True), ex["settings"])
    lines = [f"# Palimpsest export ({fmt})", "",
             f"Written {now()} by Palimpsest. Files: {', '.join(Path(f).name for f in report.files)}.", "",
             f"Each record: {DESCRIBE[fmt]}.", "",
             "## Filters", f"- status: {status}", f"- source: {source}",
             "- text: each trajectory's current version (human edits applied)", "",
             "## Counts", f"- records: {report.count}", f"- trajectories: {report.trajectories}"]
    lines += [f"- from {k}: {v}" for k, v in sorted(by_source.items())]
    lines += [f"- skipped {why}: {n}" for why, n in report.skipped.items()]
    if fmt == "dpo":
        lines += ["", "## Preference pairs", f"- sources: {', '.join(pairs['sources'])}",
                  f"- min margin: {pairs['min_margin']:g} (score-ordered pairs closer than this are left out)"]
        lines += [f"- pairs from {k}: {pairs['counts'].get(k, 0)}" for k in pp.SOURCES]
    lines += ["", "## Score statistics", ""] + _stats_lines(report.stats, examples)
    lines += ["", "## Source models"] + ([f"- {m or 'unknown'}: {n}" for m, n in models.most_common()] or ["- none"])
    lines += ["", "## Settings", f"{len(settings)} distinct run setting(s)."]
    lines += [f"- `{json.dumps(s, sort_keys=True)}`" for s in list(settings.values())[:10]]
    if check is not None:
        lines += ["", "## Chat template check", check]
    return "\n".join(lines) + "\n"


def export(store: Store, fmt: str, out: str | Path, status: str = "accepted", source: str = "all",
           check_template: bool = False, tokenizer=None, judgments: bool = True,
           min_margin: float = pp.DEFAULT_MIN_MARGIN, sources: str | tuple[str, ...] | None = None) -> ExportReport:
    """Write the trajectories matching status/source in format `fmt` to the folder `out`, with a
    dataset card, and record the export in the store. With check_template, the chat records are
    rendered through `tokenizer`'s chat template (the built-in model's by default) first and the
    records whose think block is dropped or mangled are reported (report.template_issues).
    `judgments` False leaves people's judgments out (the studio: only a lead exports them).
    dpo only: `sources` (names from core.pairs.SOURCES, or "all") and `min_margin`."""
    sources, min_margin = _checked(fmt, sources, min_margin)
    out = Path(os.path.abspath(Path(out).expanduser()))
    try:  # one export into a folder at a time: a second at once is refused (it replaced the first unseen)
        with exclusive(out):
            return _export(store, fmt, out, status, source, check_template, tokenizer, judgments, min_margin, sources)
    except OutputBusy as exc:
        raise ExportError(str(exc)) from None
    except OSError as exc:
        raise ExportFailed(f"--out {out}: {oserror_line(exc)}") from None


def _export(store: Store, fmt: str, out: Path, status: str, source: str, check_template: bool, tokenizer,
            judgments: bool, min_margin: float = pp.DEFAULT_MIN_MARGIN,
            sources: tuple[str, ...] = pp.SOURCES) -> ExportReport:
    try:
        tidy(out)  # a killed export's leftovers: its earlier export put back, its temporary folder removed
    except OSError as exc:
        raise ExportFailed(f"--out {out}: {oserror_line(exc)}") from None
    _check_out(out)  # before any work; again just before writing
    examples, skipped = _examples(store, status, source)
    report = ExportReport(fmt, str(out), trajectories=len(examples), skipped=dict(skipped))
    check = None
    if check_template:
        from core.data.template_check import check_records

        report.template_issues = check_records([chat_record(ex) for ex in examples], tokenizer)
        check = (f"Rendered {len(examples)} record(s) through the chat template: "
                 f"{len(report.template_issues)} lost or changed the think block.")
        check += "".join(f"\n- {i}" for i in report.template_issues[:20])
    rows, more = _rows(fmt, examples, store, min_margin, sources)
    report.skipped.update(more)
    report.trajectories -= sum(more.values())
    if not rows:
        why = "; ".join(f"{n} {k}" for k, n in report.skipped.items()) or "no trajectory matches the filters"
        raise ExportError(f"nothing to export as {fmt} (status {status}, source {source}): {why}; "
                          "try --status any or --source all, or accept some trajectories first")
    _check_out(out)
    report.count, report.stats = len(rows), score_stats(examples)
    had = out.exists()
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()  # as a plain mkdir would make it (the umask's mode)
        data = _write(fmt, tmp, rows)
        # parquet / hf: people's judgments of these drafts as their own table, reward-model pairs (core.judging.export)
        judged, judged_card = (write_judgments(store, fmt, tmp, {ex["trajectory_id"] for ex in examples})
                               if judgments else ([], []))
        report.files = [str(out / data.name)] + [str(out / p.name) for p in judged]
        with open(tmp / "README.md", "w", encoding="utf-8") as f:
            pairs = {"sources": sources, "min_margin": min_margin, "counts": Counter(r.get("source") for r in rows)}
            f.write(_card(report, fmt, status, source, examples, check, pairs) + "".join(x + "\n" for x in judged_card))
        written = sorted(os.listdir(tmp) + [MANIFEST])
        _write_json(tmp / MANIFEST, {"format": fmt, "files": written, "records": report.count, "written": now()})
        if had:  # the earlier export's folder mode, once everything is written
            os.chmod(tmp, stat.S_IMODE(out.stat().st_mode))
        fsync_tree(tmp)
        swap_in(tmp, out)
    except OSError as exc:
        raise ExportFailed(f"--out {out}: {oserror_line(exc)}; "
                           + ("the earlier export there is unchanged" if had else "nothing was written")) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    report.card = str(out / "README.md")
    with store.transaction():
        report.export_id = store.db["exports"].insert({
            "format": fmt, "out": str(out.resolve()), "status": status, "source": source, "count": report.count,
            "skipped": json.dumps(report.skipped), "stats": json.dumps(report.stats),
            "settings": json.dumps({"check_template": check_template, "trajectories": len(examples)}),
            "created_at": now()}).last_pk
    return report


def list_exports(store: Store) -> list[dict]:
    """Every export recorded, newest first."""
    return store.list_exports()


def preview(store: Store, fmt: str, status: str = "accepted", source: str = "all",
            n: int = 3, min_margin: float = pp.DEFAULT_MIN_MARGIN,
            sources: str | None = None) -> tuple[list[dict], int, dict[str, int]]:
    """What `export` would write, without writing: (its first `n` records, how many records in all,
    reason -> trajectories left out). Raises ExportError for a bad format, status or source."""
    sources, min_margin = _checked(fmt, sources, min_margin)
    examples, skipped = _examples(store, status, source)
    rows, more = _rows(fmt, examples, store, min_margin, sources)
    return rows[: max(0, n)], len(rows), {**skipped, **more}


def _checked(fmt: str, sources, min_margin) -> tuple[tuple[str, ...], float]:
    """The format checked, and (sources, min_margin) parsed; ExportError naming the fix."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not a format; use one of {', '.join(FORMATS)}")
    try:
        return pp.options(sources, min_margin)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
