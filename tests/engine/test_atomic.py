"""Files are replaced whole or not at all."""

from __future__ import annotations

import pytest

from agr_suite.core.atomic import write_atomic, write_text_atomic


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "results.json"
    write_text_atomic(path, "first")
    write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "last.pt"
    path.write_text("good")

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
