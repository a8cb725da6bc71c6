"""Which server paths the studio's pages may read and write.

The Train page takes typed paths (its data file and output folder) that the server then reads or
writes. Without a rule a studio user could read any file the server can (a data file is parsed and
its errors quoted) or write a model anywhere. By default a page accepts only paths inside the
workspace, the folder that holds the app's store (the current folder for an in-memory store),
plus files the caller lists (the exports the store recorded); `palimpsest app --allow-any-path`
lifts the rule on a single-user machine.

Knows: path resolution (a relative path is taken inside the workspace; symlinks are followed, so a
link that points out of the workspace is outside). Does not know Gradio, pages or the store.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class PathNotAllowed(ValueError):
    """A typed path outside the studio's workspace; the message names the field, the folder and the fix."""


@dataclass(frozen=True)
class Workspace:
    root: Path  # the folder the pages may read and write in (the store's folder)
    anywhere: bool = False  # --allow-any-path: any path the server process can reach

    @classmethod
    def for_store(cls, store_path: str | Path | None, anywhere: bool = False) -> Workspace:
        """The workspace of a store file (its folder), or of an in-memory store (the current folder)."""
        return cls((Path(store_path).parent if store_path else Path.cwd()).resolve(), anywhere)

    def path(self, text: str, what: str, also: Iterable[str | Path] = ()) -> Path:
        """`text` as a path the page may use (relative: inside the root), or PathNotAllowed naming
        `what` (the field). `also`: files outside the root that are allowed anyway."""
        p = Path(text.strip()).expanduser()
        p = p if p.is_absolute() else self.root / p
        if self.anywhere:
            return p
        real = p.resolve()
        if real == self.root or real.is_relative_to(self.root) or real in {Path(a).resolve() for a in also}:
            return p
        raise PathNotAllowed(f"{what}: {text.strip()} is outside the studio's folder {self.root}; use a path "
                             "inside it, pick an export from the list, or restart the app with --allow-any-path")
