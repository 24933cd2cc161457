"""The atomic writers leave the old file in place when a write fails, and no temp files behind."""

import json

import pytest

from fastcomt.atomic_io import atomic_path, write_json_atomic, write_text_atomic


def test_writes_replace_the_file_and_leave_no_temp(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    write_text_atomic(tmp_path / "report.md", "hello\n")
    assert (tmp_path / "report.md").read_text() == "hello\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["report.md", "summary.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer crashed"):
        with atomic_path(target, suffix=".png") as tmp:
            assert tmp.suffix == ".png" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
