"""`fastcomt demo --seeds 0,1,2`: the whole demo once per seed, and the spread of every number.

A number that one seed gives and the next does not is not a result. Each seed runs the full demo
(`recipes/demo.py`, every stage and split drawn from that seed) under `<output_dir>/seed-<s>`; a
seed whose results.json holds the same settings is read back, not rerun, so an interrupted sweep
resumes at the first unfinished seed (and inside it, at its first unfinished stage).

Printed (and written to `<output_dir>/seeds.md`, every number to `seeds.json`): per seed, each
stage's metrics and each paired effect with its 95% interval, then their mean and range over the
seeds, how many seeds' intervals lie above zero, below zero or straddle it, and the failed stage
checks.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastcomt.atomic_io import write_json_atomic, write_text_atomic
from fastcomt.config import config_to_dict

__all__ = ["COLUMNS", "EFFECTS", "seed_config", "seed_row", "spread_table", "effect_signs", "run_demo_seeds"]


def seed_config(cfg: Any, seed: int) -> Any:
    """The single-seed demo config of `seed`: its own folder under the sweep's output_dir."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seeds: expected non-negative ints, got {seed!r}")
    return dataclasses.replace(cfg, seed=seed, seeds=None, output_dir=str(Path(cfg.output_dir) / f"seed-{seed}"))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    # progress bars do not change a number
    return {k: v for k, v in config.items() if k != "progress"}


def _finished(cfg: Any) -> dict[str, Any] | None:
    path = Path(cfg.output_dir) / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    return results if _comparable(results.get("config", {})) == _comparable(config_to_dict(cfg)) else None


def _get(results: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def _acc(results: dict[str, Any], stage: str) -> float | None:
    return _get(results, "eval", stage, "benchmarks", "synthetic", "accuracy")


# Stage metrics: (column, unit, getter). "%": a fraction shown in percent.
COLUMNS: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("base CoT acc", "%", lambda r: _acc(r, "base_cot")),
    ("base gold-plan acc", "%", lambda r: _get(r, "checks", "base_gold_plan", "accuracy")),
    ("base CoMT acc", "%", lambda r: _acc(r, "base")),
    ("SFT acc", "%", lambda r: _acc(r, "sft")),
    ("SFT gold plans", "%", lambda r: _get(r, "plan_exact", "sft")),
    ("CCRL acc", "%", lambda r: _acc(r, "ccrl")),
    ("SFT step ECE", "", lambda r: _get(r, "eval", "sft", "benchmarks", "synthetic", "ece")),
    ("CCRL step ECE", "", lambda r: _get(r, "eval", "ccrl", "benchmarks", "synthetic", "ece")),
]

# Paired effects: (name, unit, getter of the paired dict with diff / ci_low / ci_high).
EFFECTS: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any] | None]]] = [
    ("SFT effect on ID acc (points)", "%", lambda r: _get(r, "sft_effect", "accuracy")),
    ("CCRL effect on ID acc (points)", "%", lambda r: _get(r, "effects", "synthetic", "accuracy")),
    ("CCRL effect on ID step ECE", "", lambda r: _get(r, "effects", "synthetic", "ece")),
    ("CCRL effect on OOD step ECE", "", lambda r: _get(r, "effects", "synthetic_ood", "ece")),
    (
        "calibration term (CCRL - GRPO lam 0) on ID step ECE",
        "",
        lambda r: _get(r, "compare", "calibration_term_effect", "synthetic", "ece"),
    ),
]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if unit == "%" else f"{value:.3f}"


def _fmt_effect(effect: dict[str, Any] | None, unit: str) -> str:
    if effect is None:
        return "-"
    scale, fmt = (100, "+.1f") if unit == "%" else (1, "+.3f")
    return f"{scale * effect['diff']:{fmt}} [{scale * effect['ci_low']:{fmt}}, {scale * effect['ci_high']:{fmt}}]"


def seed_row(results: dict[str, Any]) -> dict[str, Any]:
    """One seed's numbers: stage metrics, paired effects and the failed checks."""
    return {
        "seed": _get(results, "config", "seed"),
        "metrics": {name: get(results) for name, _, get in COLUMNS},
        "effects": {name: get(results) for name, _, get in EFFECTS},
        "warnings": list(_get(results, "checks", "warnings") or []),
    }


def effect_signs(effects: Sequence[dict[str, Any] | None]) -> dict[str, int]:
    """How many seeds' 95% intervals lie above zero, below zero, or contain it."""
    measured = [e for e in effects if e is not None]
    above = sum(e["ci_low"] > 0 for e in measured)
    below = sum(e["ci_high"] < 0 for e in measured)
    return {"above": above, "below": below, "straddle": len(measured) - above - below}


def _summary(values: Sequence[float | None]) -> tuple[float, float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.mean(vals), min(vals), max(vals)


def spread_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown tables: stage metrics per seed (+ mean, range), paired effects per seed (+ mean
    of the differences, their range, and the signs of the intervals)."""
    lines = [
        "| seed | " + " | ".join(name for name, _, _ in COLUMNS) + " | failed checks |",
        "|---:|" + "---:|" * len(COLUMNS) + "---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | "
            + " | ".join(_fmt(row["metrics"][n], u) for n, u, _ in COLUMNS)
            + f" | {len(row['warnings'])} |"
        )
    stats = {n: _summary([row["metrics"][n] for row in rows]) for n, _, _ in COLUMNS}
    lines.append("| mean | " + " | ".join(_fmt(stats[n] and stats[n][0], u) for n, u, _ in COLUMNS) + " | |")
    lines.append(
        "| range | "
        + " | ".join(
            "-" if stats[n] is None else f"{_fmt(stats[n][1], u)}-{_fmt(stats[n][2], u)}" for n, u, _ in COLUMNS
        )
        + " | |"
    )
    effects = [(n, u) for n, u, _ in EFFECTS if any(row["effects"][n] is not None for row in rows)]
    lines += [
        "",
        "Paired effects, difference [95% bootstrap CI] per seed:",
        "",
        "| seed | " + " | ".join(n for n, _ in effects) + " |",
        "|---:|" + "---|" * len(effects),
    ]
    for row in rows:
        lines.append(f"| {row['seed']} | " + " | ".join(_fmt_effect(row["effects"][n], u) for n, u in effects) + " |")
    diffs = {n: _summary([row["effects"][n] and row["effects"][n]["diff"] for row in rows]) for n, _ in effects}
    signed = {
        n: (lambda v, u: "-" if v is None else (f"{100 * v:+.1f}" if u == "%" else f"{v:+.3f}")) for n, _ in effects
    }
    lines.append("| mean | " + " | ".join(signed[n](diffs[n] and diffs[n][0], u) for n, u in effects) + " |")
    lines.append(
        "| range | "
        + " | ".join(
            "-" if diffs[n] is None else f"{signed[n](diffs[n][1], u)} to {signed[n](diffs[n][2], u)}"
            for n, u in effects
        )
        + " |"
    )
    signs = {n: effect_signs([row["effects"][n] for row in rows]) for n, _ in effects}
    lines.append(
        "| CI above / straddles / below 0 | "
        + " | ".join(f"{signs[n]['above']} / {signs[n]['straddle']} / {signs[n]['below']}" for n, _ in effects)
        + " |"
    )
    return lines


def run_demo_seeds(cfg: Any, run: Callable[[Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run (or read back) the demo for every seed of `cfg.seeds`; print and write the spread."""
    if run is None:
        from fastcomt_recipes.demo import run_demo as run
    seeds = list(cfg.seeds or [])
    if not seeds:
        raise ValueError(f"seeds: expected at least one seed, got {cfg.seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected distinct seeds, got {seeds}")
    rows, reused = [], []
    for seed in seeds:
        one = seed_config(cfg, seed)
        results = _finished(one)
        if results is None:
            print(f"=== seed {seed}: {one.output_dir}", flush=True)
            results = run(one)
        else:
            reused.append(seed)
        rows.append(seed_row(results))
    out = Path(cfg.output_dir)
    lines = [
        f"# fastcomt demo over seeds {', '.join(map(str, seeds))}",
        "",
        f"Each seed is the whole demo with that seed (its own data draws, base model, SFT and CCRL); "
        f"runs under {out}/seed-<s>.",
        "",
    ]
    if reused:
        lines += [f"Read back (finished before): seeds {', '.join(map(str, reused))}.", ""]
    lines += ["Stage metrics (500 held-out ID problems unless configured otherwise; accuracies in %):", ""]
    lines += spread_table(rows)
    failed = [(row["seed"], w) for row in rows for w in row["warnings"]]
    lines += ["", "Failed stage checks: " + ("none." if not failed else "")]
    lines += [f"- seed {seed}: {w}" for seed, w in failed]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "seeds.md", text)
    summary = {"seeds": seeds, "rows": rows}
    write_json_atomic(out / "seeds.json", summary)
    return summary
