"""The training record and its JSONL files: appended one line at a time, durable, resumable.

A record is one line: {id, source, kind, question, target, answer, provenance}. `kind` is
"meta_thought" or "cot"; `provenance` says how the target was made (mode, teacher model, prompt
version, filter verdicts). Writers append complete lines, flush and fsync, so a crash loses at most
the batch being written; `repair_jsonl_tail` drops a torn last line before a run resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastcomt.atomic_io import write_json_atomic  # re-exported: callers import it from here too

__all__ = [
    "RECORD_KINDS",
    "ComtRecord",
    "JsonlAppender",
    "read_records",
    "iter_jsonl_dicts",
    "record_ids",
    "repair_jsonl_tail",
    "write_json_atomic",
]

RECORD_KINDS = ("meta_thought", "cot")


@dataclass(frozen=True)
class ComtRecord:
    id: str
    source: str
    kind: str
    question: str
    target: str
    answer: float | str
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("id", "source", "question", "target"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: expected a non-empty str, got {getattr(self, name)!r}")
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"kind: expected one of {RECORD_KINDS}, got {self.kind!r}")
        if isinstance(self.answer, bool) or not isinstance(self.answer, (int, float, str)):
            raise TypeError(f"answer: expected a number or str, got {type(self.answer).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComtRecord:
        missing = [k for k in ("id", "source", "kind", "question", "target", "answer") if k not in data]
        if missing:
            raise ValueError(f"record: missing keys {missing} (have {sorted(data)})")
        return cls(
            id=str(data["id"]),
            source=data["source"],
            kind=data["kind"],
            question=data["question"],
            target=data["target"],
            answer=data["answer"],
            provenance=dict(data.get("provenance") or {}),
        )


def repair_jsonl_tail(path: str | os.PathLike[str]) -> int:
    """Cut a torn last line (no trailing newline: a crash mid-write); returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1  # 0 when the only line is torn
    with open(path, "rb+") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return len(data) - keep


class JsonlAppender:
    """Appends dict lines durably (flush + fsync per write call); repairs a torn tail on open."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self.write_many([row])

    def write_many(self, rows: list[dict[str, Any]]) -> None:
        """Append rows, then flush and fsync once (per batch: one fsync per line is slow on big sets)."""
        if not rows:
            return
        self._file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl_dicts(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every complete JSON line of a file (a torn last line without newline is skipped)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                return
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({exc})") from exc


def read_records(path: str | os.PathLike[str]) -> list[ComtRecord]:
    """All records of a data set file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data set file not found: {path}")
    return [ComtRecord.from_dict(row) for row in iter_jsonl_dicts(path)]


def record_ids(path: str | os.PathLike[str]) -> set[str]:
    """Ids already written to a file (empty when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return set()
    return {str(row["id"]) for row in iter_jsonl_dicts(path)}


