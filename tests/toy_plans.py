"""Toy meta-thought records for the SFT tests that need a small data file, not particular content."""

import json
from pathlib import Path

from fastcomt.comt.records import ComtRecord


def toy_plan_rows(n: int) -> list[dict]:
    """`n` one-step plan records as dicts (ids t-0 ... t-{n-1})."""
    return [
        ComtRecord(
            f"t-{i}",
            "toy",
            "meta_thought",
            f"Ana has {i} pens and gets 2 more. How many?",
            "Steps:\n1. total = pens + more\nAnswer: total",
            float(i + 2),
        ).to_dict()
        for i in range(n)
    ]


def write_toy_plans(path: Path, n: int) -> Path:
    """Writes `n` toy plan records to the JSONL file `path` and returns it."""
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_plan_rows(n)))
    return path
