"""studio.workspace: the Train page's typed paths stay in the store's folder (a studio user could
read any file the server can, or write a model anywhere, before)."""
from __future__ import annotations

import pytest

from studio.workspace import PathNotAllowed, Workspace


def test_paths_inside_the_store_folder_are_taken_and_relative_ones_land_there(tmp_path):
    ws = Workspace.for_store(tmp_path / "studio.db")
    assert ws.root == tmp_path.resolve()
    assert ws.path("models/run1", "Output folder") == tmp_path.resolve() / "models" / "run1"
    assert ws.path(str(tmp_path / "chat.jsonl"), "Data") == tmp_path / "chat.jsonl"


@pytest.mark.parametrize("text", ["/etc/passwd", "../outside.jsonl", "models/../../outside"])
def test_paths_outside_are_refused_naming_the_field_and_the_fix(tmp_path, text):
    ws = Workspace.for_store(tmp_path / "inner" / "studio.db")
    with pytest.raises(PathNotAllowed, match=r"^Data: .* is outside the studio's folder .*--allow-any-path"):
        ws.path(text, "Data")


def test_a_symlink_out_of_the_folder_is_outside(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "secret.txt").write_text("key")
    (tmp_path / "ws" / "link.jsonl").symlink_to(tmp_path / "secret.txt")
    ws = Workspace.for_store(tmp_path / "ws" / "studio.db")
    with pytest.raises(PathNotAllowed, match="outside"):
        ws.path(str(tmp_path / "ws" / "link.jsonl"), "Data")


def test_listed_files_and_allow_any_path_are_let_through(tmp_path):
    export = tmp_path / "exports" / "train.jsonl"
    ws = Workspace.for_store(tmp_path / "ws" / "studio.db")
    assert ws.path(str(export), "Data", also=[export]) == export
    assert Workspace.for_store(tmp_path / "ws" / "studio.db", anywhere=True).path("/etc/passwd", "Data").name == "passwd"
