"""Benchmark evaluation: accuracy, format rate and step calibration, written as a resumable run.

`evaluate` (and `EvalConfig`, `main`) live in `evaluate`, the summary and markdown report in
`report`, the metrics in `calibration`, the diagram in `reliability`, the command-line flags in
`cli_args`.

The function `evaluate` is imported here eagerly: the submodule of the same name would otherwise
shadow it as the package attribute once anything imported `fastcomt.eval.evaluate` first.
"""

from .calibration import (
    auroc,
    brier_score,
    calibration_report,
    expected_calibration_error,
    overconfident_error_rate,
    reliability_bins,
)
from .cli_args import add_eval_arguments, run_eval_from_args
from .evaluate import PAPER_BENCHMARKS, EvalConfig, evaluate, load_rows, main, run_config, score_rollout, step_confidence
from .reliability import write_reliability_diagram
from .report import IN_DISTRIBUTION, OUT_OF_DISTRIBUTION, render_report, summarize_rows

__all__ = [
    "evaluate",
    "EvalConfig",
    "PAPER_BENCHMARKS",
    "IN_DISTRIBUTION",
    "OUT_OF_DISTRIBUTION",
    "score_rollout",
    "step_confidence",
    "load_rows",
    "run_config",
    "main",
    "summarize_rows",
    "render_report",
    "add_eval_arguments",
    "run_eval_from_args",
    "calibration_report",
    "expected_calibration_error",
    "brier_score",
    "overconfident_error_rate",
    "auroc",
    "reliability_bins",
    "write_reliability_diagram",
]
