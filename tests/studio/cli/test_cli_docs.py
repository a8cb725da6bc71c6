"""The command's docs agree with the command: docs/cli.md is what the parser generates today, every
flag the README or docs/*.md names after a `palimpsest ...` command exists on that command, and
every flag has help and is in the reference. No model."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from needs import ROOT

from studio.cli.docs import DOC, commands, flags, render
from studio.cli.main import build_parser

COMMAND = re.compile(r"(?:\bpalimpsest|-m\s+studio\.cli)\s+(.*)")
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def command_texts(markdown: str) -> list[str]:
    """Every `palimpsest ...` command written in the text: in inline code, and in fenced blocks
    with their continuation lines (indented, or after a trailing backslash)."""
    out = []
    for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", markdown):
        out += [m.group(1) for m in COMMAND.finditer(span)]
    for block in re.findall(r"```[^\n]*\n(.*?)```", markdown, flags=re.S):
        current = None
        for line in block.splitlines():
            m = COMMAND.search(line)
            if m:
                current = m.group(1)
                out.append(current)
            elif current is not None and (line[:1].isspace() or out[-1].rstrip().endswith("\\")) and line.strip():
                out[-1] += " " + line.strip()
            else:
                current = None
    return out


def unknown_flags(text: str, parser=None) -> list[str]:
    """The flags of one command text that its (sub)command does not have ("a|b" subcommands: any)."""
    parser = parser or build_parser()
    reached, words = [parser], text.split()
    while words:
        subs = {}
        for p in reached:
            for a in p._actions:
                if hasattr(a, "choices") and isinstance(a.choices, dict):
                    subs.update(a.choices)
        names = words[0].split("|")
        if not subs or not all(n in subs for n in names):
            break
        reached, words = [subs[n] for n in names], words[1:]
    known = set().union(*(flags(p) for p in reached))
    return [f for f in FLAG.findall(" ".join(words)) if f not in known]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_cli_reference_is_fresh():
    assert DOC.is_file(), "docs/cli.md is missing: run `python -m studio.cli.docs`"
    assert DOC.read_text(encoding="utf-8") == render(), "docs/cli.md is stale: run `python -m studio.cli.docs`"


def test_every_flag_named_in_the_docs_exists():
    parser = build_parser()
    bad, seen = [], 0
    for path in doc_files():
        if path.name == "cli.md" or not path.is_file():
            continue
        for text in command_texts(path.read_text(encoding="utf-8")):
            seen += 1
            bad += [f"{path.name}: `palimpsest {text[:60]}`: {flag}" for flag in unknown_flags(text, parser)]
    assert seen > 0, "no palimpsest command found in README.md or docs/"
    assert not bad, "flags named in the docs that the command does not have:\n" + "\n".join(bad)


def test_every_flag_has_help_and_is_in_the_reference():
    reference = DOC.read_text(encoding="utf-8")
    missing = []
    for path, p in commands(build_parser()):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                continue  # its commands are listed with their own help
            if a.help is None or not a.help.strip():
                missing.append(f"{' '.join(path)} {a.option_strings or a.dest}: no help")
            for s in a.option_strings:
                if s not in ("-h", "--help") and f"`{s}`" not in reference:
                    missing.append(f"{' '.join(path)} {s}: not in docs/cli.md")
    assert not missing, "\n".join(missing)


def test_the_checker_finds_commands_and_flags_that_do_not_exist():
    md = ("Run `palimpsest reer run --input x --cnadidates 2` now.\n\n```bash\npalimpsest r2 run --input F \\\n"
          "  --rounds 2 --no-such-flag\npalimpsest review accept|reject ID --reason WHY\nls --color\n```\n"
          "and `accelerate launch -m studio.cli train --data d --lora`.\n")
    found = {t.split()[0]: unknown_flags(t) for t in command_texts(md)}
    assert found == {"reer": ["--cnadidates"], "r2": ["--no-such-flag"], "review": [], "train": []}
