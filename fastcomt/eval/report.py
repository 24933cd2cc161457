"""Evaluation summary (numbers from the result rows) and its markdown report in the paper's layout.

Groups follow the paper: in-distribution GSM8K, SVAMP; out-of-distribution ASDiv, MAWPS, TabMWP,
GSM-Hard, GSM-Symbolic. A group's value is the unweighted mean of its benchmarks' values (each
benchmark counts once, whatever its size), over the benchmarks that were evaluated; "overall"
averages every evaluated benchmark, other ones (e.g. synthetic) included. Step calibration (ECE,
Brier, overconfident-error rate, AUROC) is computed per benchmark over all its numeric steps, then
averaged the same way; `steps_pooled` is the calibration of all steps together (the diagram's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastcomt.metrics.calibration import calibration_report

__all__ = [
    "IN_DISTRIBUTION",
    "OUT_OF_DISTRIBUTION",
    "GROUPS",
    "DISPLAY_NAMES",
    "benchmark_metrics",
    "answer_stated",
    "summarize_rows",
    "render_report",
]

IN_DISTRIBUTION: tuple[str, ...] = ("gsm8k", "svamp")
OUT_OF_DISTRIBUTION: tuple[str, ...] = ("asdiv", "mawps", "tabmwp", "gsm_hard", "gsm_symbolic")
GROUPS: dict[str, tuple[str, ...]] = {"in_distribution": IN_DISTRIBUTION, "out_of_distribution": OUT_OF_DISTRIBUTION}
DISPLAY_NAMES: dict[str, str] = {
    "gsm8k": "GSM8K",
    "svamp": "SVAMP",
    "asdiv": "ASDiv",
    "mawps": "MAWPS",
    "tabmwp": "TabMWP",
    "gsm_hard": "GSM-Hard",
    "gsm_symbolic": "GSM-Symbolic",
    "synthetic": "Synthetic",
}

# Metrics a group averages (per-benchmark values that are None, e.g. no steps, are left out).
_AVERAGED = (
    "strict_accuracy",
    "accuracy",
    "format_rate",
    "truncated_rate",
    "mean_response_tokens",
    "mean_plan_tokens",
    "mean_execution_tokens",
    "step_accuracy",
    "mean_confidence",
    "ece",
    "ece_mass",
    "brier",
    "overconfident_error_rate",
    "auroc",
)
_CALIBRATION_KEYS = {
    "accuracy": "step_accuracy",
    "mean_confidence": "mean_confidence",
    "ece": "ece",
    "ece_mass": "ece_mass",
    "brier": "brier",
    "overconfident_error_rate": "overconfident_error_rate",
    "auroc": "auroc",
}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _step_calibration(confidence: list[float], correct: list[int], n_bins: int, tau: float) -> dict[str, Any]:
    if not confidence:
        return {"steps": 0, **{key: None for key in _CALIBRATION_KEYS.values()}}
    report = calibration_report(confidence, correct, n_bins=n_bins, tau=tau)
    out: dict[str, Any] = {"steps": len(confidence)}
    for source, key in _CALIBRATION_KEYS.items():
        out[key] = _finite_or_none(float(report[source]))  # AUROC is NaN when every step is right
    return out


_NO_STATEMENT = "execution does not end in an answer statement"  # formats.check_format's reason


def answer_stated(row: Mapping[str, Any]) -> bool:
    """Whether a row's response ends in an answer statement in the expected format ("The answer is N.");
    rows written before the `answer_stated` field read it from the format check's reasons."""
    if "answer_stated" in row:
        return bool(row["answer_stated"])
    if "format_reasons" in row:
        return _NO_STATEMENT not in row["format_reasons"]
    return bool(row.get("format_ok"))


def benchmark_metrics(rows: Sequence[Mapping[str, Any]], *, n_bins: int = 10, tau: float = 0.9) -> dict[str, Any]:
    """Accuracy, format rate, token counts and step calibration of one benchmark's rows.

    strict_accuracy (the headline): right answer stated in the expected format; accuracy (lenient):
    right answer however it was found, a last-number guess from malformed or cut-off output included.
    """
    n = len(rows)
    metrics: dict[str, Any] = {
        "n": n,
        "strict_accuracy": _mean([1.0 if r["correct"] and answer_stated(r) else 0.0 for r in rows]),
        "accuracy": _mean([1.0 if r["correct"] else 0.0 for r in rows]),
        "format_rate": _mean([1.0 if r["format_ok"] else 0.0 for r in rows]),
        "truncated_rate": _mean([1.0 if r["finish_reason"] == "length" else 0.0 for r in rows]),
        "mean_response_tokens": _mean([float(r["response_tokens"]) for r in rows]),
        "mean_plan_tokens": _mean([float(r["plan_tokens"]) for r in rows]),
        "mean_execution_tokens": _mean([float(r["execution_tokens"]) for r in rows]),
        "mean_generated_tokens": _mean([float(r["generated_tokens"]) for r in rows]),
    }
    confidence = [float(s["confidence"]) for r in rows for s in r["steps"]]
    correct = [int(s["correct"]) for r in rows for s in r["steps"]]
    metrics.update(_step_calibration(confidence, correct, n_bins, tau))
    return metrics


def _group(per_benchmark: Mapping[str, Mapping[str, Any]], members: Sequence[str]) -> dict[str, Any]:
    present = [b for b in members if b in per_benchmark]
    group: dict[str, Any] = {"benchmarks": present, "n": sum(per_benchmark[b]["n"] for b in present)}
    for key in _AVERAGED:
        group[key] = _mean([per_benchmark[b][key] for b in present if per_benchmark[b].get(key) is not None])
    return group


def summarize_rows(
    rows_by_benchmark: Mapping[str, Sequence[Mapping[str, Any]]], *, n_bins: int = 10, tau: float = 0.9
) -> dict[str, Any]:
    """The summary: per-benchmark metrics, group averages (see module docstring), pooled steps."""
    if not isinstance(rows_by_benchmark, Mapping):
        raise TypeError(f"rows_by_benchmark: expected a mapping name -> rows, got {type(rows_by_benchmark).__name__}")
    per_benchmark = {name: benchmark_metrics(rows, n_bins=n_bins, tau=tau) for name, rows in rows_by_benchmark.items()}
    groups = {name: _group(per_benchmark, members) for name, members in GROUPS.items()}
    groups["overall"] = _group(per_benchmark, list(per_benchmark))
    confidence = [float(s["confidence"]) for rows in rows_by_benchmark.values() for r in rows for s in r["steps"]]
    correct = [int(s["correct"]) for rows in rows_by_benchmark.values() for r in rows for s in r["steps"]]
    return {
        "benchmarks": per_benchmark,
        "groups": groups,
        "steps_pooled": _step_calibration(confidence, correct, n_bins, tau),
        "n_bins": n_bins,
        "tau": tau,
    }


# --- markdown ------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _display(name: str) -> str:
    return DISPLAY_NAMES.get(name, name)


def _columns(summary: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(header, metrics) in the paper's order: ID benchmarks, ID avg, OOD ones, OOD avg, others, overall."""
    per, groups = summary["benchmarks"], summary["groups"]
    cols: list[tuple[str, Mapping[str, Any]]] = []
    for group_name, label in (("in_distribution", "ID avg"), ("out_of_distribution", "OOD avg")):
        members = groups[group_name]["benchmarks"]
        cols.extend((_display(b), per[b]) for b in members)
        if members:
            cols.append((f"**{label}**", groups[group_name]))
    grouped = set(IN_DISTRIBUTION) | set(OUT_OF_DISTRIBUTION)
    cols.extend((_display(b), per[b]) for b in per if b not in grouped)
    cols.append(("**Overall**", groups["overall"]))
    return cols


def render_report(summary: Mapping[str, Any], *, diagram: str | None = None) -> str:
    """Markdown: the paper-layout table, a per-benchmark table, the pooled calibration and diagram."""
    settings = summary.get("settings", {})
    fmt = settings.get("fmt", "?")
    tau = summary.get("tau", 0.9)
    n_bins = summary.get("n_bins", 10)
    overall = summary["groups"]["overall"]
    lines = [
        f"# Evaluation ({fmt} format)",
        "",
        f"Greedy decoding; {overall['n']} problems over {len(overall['benchmarks'])} benchmarks"
        + (f"; model `{settings['model']}`" if settings.get("model") else "")
        + ".",
        "Step confidence: "
        + {
            "geomean": "geometric mean of the step's token probabilities",
            "min": "probability of the step's least likely token",
            "first": "probability of the step's first token",
        }.get(settings.get("confidence", "geomean"), "?")
        + f"; ECE over {n_bins} equal-width bins; overconfident errors: wrong steps with confidence >= {tau}.",
        "Group columns are unweighted means over their benchmarks. Strict accuracy counts an answer only when the"
        ' response ends in an answer statement in the expected format ("The answer is N."); lenient accuracy also'
        " takes the last number of a malformed or cut-off response.",
        "",
    ]
    cols = _columns(summary)
    lines.append("| metric | " + " | ".join(h for h, _ in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    table_rows = (
        ("Strict accuracy (%)", "strict_accuracy", _pct),
        ("Lenient accuracy (%)", "accuracy", _pct),
        ("Format-correct (%)", "format_rate", _pct),
        ("Step ECE", "ece", _num),
        ("Step Brier", "brier", _num),
        ("Overconfident errors (%)", "overconfident_error_rate", _pct),
        ("Mean response tokens", "mean_response_tokens", lambda v: _num(v, 1)),
    )
    for label, key, show in table_rows:
        lines.append(f"| {label} | " + " | ".join(show(m.get(key)) for _, m in cols) + " |")

    lines += [
        "",
        "## Per benchmark",
        "",
        "| benchmark | n | strict acc (%) | lenient acc (%) | format (%) | truncated (%) | tokens: plan / execution | "
        "steps | step acc (%) | mean conf | ECE | ECE (mass) | Brier | overconf. (%) | AUROC |",
        "|---|" + "---:|" * 14,
    ]
    for name, m in summary["benchmarks"].items():
        lines.append(
            f"| {_display(name)} | {m['n']} | {_pct(m.get('strict_accuracy'))} | {_pct(m['accuracy'])} | {_pct(m['format_rate'])} | "
            f"{_pct(m['truncated_rate'])} | {_num(m['mean_plan_tokens'], 1)} / {_num(m['mean_execution_tokens'], 1)} | "
            f"{m['steps']} | {_pct(m['step_accuracy'])} | {_num(m['mean_confidence'])} | {_num(m['ece'])} | "
            f"{_num(m['ece_mass'])} | {_num(m['brier'])} | {_pct(m['overconfident_error_rate'])} | {_num(m['auroc'])} |"
        )
    pooled = summary.get("steps_pooled") or {}
    lines += ["", "## Step calibration, all benchmarks pooled", ""]
    if pooled.get("steps"):
        lines.append(
            f"{pooled['steps']} steps: accuracy {_pct(pooled['step_accuracy'])}%, mean confidence "
            f"{_num(pooled['mean_confidence'])}, ECE {_num(pooled['ece'])} (equal-mass {_num(pooled['ece_mass'])}), "
            f"Brier {_num(pooled['brier'])}, overconfident errors {_pct(pooled['overconfident_error_rate'])}%, "
            f"AUROC {_num(pooled['auroc'])}."
        )
        if diagram:
            lines += ["", f"![reliability diagram]({diagram})"]
    else:
        lines.append("No numeric steps were found in the responses.")
    return "\n".join(lines) + "\n"
