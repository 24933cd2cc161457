"""The training record and its JSONL files: appended one line at a time, durable, resumable.

A record is one line: {id, source, kind, question, target, answer, provenance}. `kind` is
"meta_thought" or "cot"; `provenance` says how the target was made (mode, teacher model, prompt
version, filter verdicts). Writers append complete lines, flush and fsync, so a crash loses at most
the batch being written (`fastcomt.jsonl`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastcomt.jsonl import iter_jsonl_dicts

__all__ = [
    "RECORD_KINDS",
    "ComtRecord",
    "read_records",
    "record_ids",
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
