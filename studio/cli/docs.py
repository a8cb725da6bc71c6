"""docs/cli.md, generated from the `palimpsest` parser: every command, every flag, its help.

`python -m studio.cli.docs` rewrites docs/cli.md; `--check` exits 1 when the file is stale
(tests/studio/cli/test_cli_docs.py checks the same). The reference is built from the parser's actions, not
from argparse's --help text, so it does not change with the Python version or the terminal.

Knows: argparse's parser objects (the walk over subcommands), Markdown tables. Does not know any
command: flags of engine settings come from their configs through core.settings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
HEADER = """# `palimpsest` command reference

Generated from the command's parser by `python -m studio.cli.docs`; do not edit by hand
(tests/studio/cli/test_cli_docs.py fails when this file is stale). The flags of engine settings (`score`,
`reer run`, `r2 run`, `train`) are generated from the config dataclasses (core/settings.py), so
their names, defaults, ranges and help are the configs' own. A bad value is refused with one line
naming the flag and the allowed range, exit status 2.
"""


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("palimpsest",)):
    """(command words, parser) of the parser and every subcommand, depth first."""
    yield path, parser
    for a in parser._actions:
        if not isinstance(a, argparse._SubParsersAction):
            continue
        for name, sub in a.choices.items():
            yield from commands(sub, path + (name,))


def subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    out = {}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            out.update({c.dest: c.help or "" for c in a._choices_actions})
    return out


def flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of one (sub)command."""
    return {s for a in parser._actions for s in a.option_strings}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(a: argparse.Action) -> str:
    if a.nargs == 0:
        return ""
    if a.choices is not None and not isinstance(a, argparse._SubParsersAction):
        word = " ".join(map(str, a.choices)) if a.nargs in ("*", "+") else "|".join(map(str, a.choices))
        return word + (" ..." if a.nargs in ("*", "+") else "")
    word = a.metavar or (a.dest.upper() if a.option_strings else a.dest)
    return f"{word} ..." if a.nargs in ("*", "+") else word


def _name(a: argparse.Action) -> str:
    return ", ".join(f"`{s}`" for s in a.option_strings) if a.option_strings else f"`{a.dest}`"


def render(parser: argparse.ArgumentParser | None = None) -> str:
    if parser is None:
        from studio.cli.main import build_parser

        parser = build_parser()
    out = [HEADER]
    for path, p in commands(parser):
        subs = subcommand_help(p)
        out.append(f"\n## `{' '.join(path)}`\n")
        if p.description:
            out.append(_cell(p.description) + "\n")
        if subs:
            out.append("| command | what it does |\n|---|---|")
            out += [f"| `{' '.join(path + (name,))}` | {_cell(h)} |" for name, h in subs.items()]
        for group in p._action_groups:
            acts = [a for a in group._group_actions
                    if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
            if not acts:
                continue
            title = group.title if group.title not in ("options", "optional arguments") else "options"
            out.append(f"\n{title}:\n\n| flag | value | what it does |\n|---|---|---|")
            for a in acts:
                req = " (required)" if a.required and a.option_strings else ""
                out.append(f"| {_name(a)} | {_cell(_value(a))} | {_cell(a.help or '')}{req} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is stale: run `python -m studio.cli.docs`", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
