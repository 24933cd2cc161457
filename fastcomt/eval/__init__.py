"""Benchmark evaluation: accuracy, format rate and step calibration, written as a resumable run.

`evaluate` (and `EvalConfig`, `run_config`, `main`) live in `runner`, the summary and markdown
report in `report`, the diagram in `reliability`, the command-line flags in `cli_args`; the
calibration metrics are `fastcomt.metrics.calibration`. Names are resolved on first use, so
importing the package (or one submodule) loads nothing else.
"""

import importlib

_EXPORTS = {
    "evaluate": "runner",
    "EvalConfig": "eval_config",
    "PAPER_BENCHMARKS": "eval_config",
    "score_rollout": "runner",
    "score_rollouts": "runner",
    "load_rows": "runner",
    "run_config": "runner",
    "main": "runner",
    "summarize_rows": "report",
    "render_report": "report",
    "IN_DISTRIBUTION": "report",
    "OUT_OF_DISTRIBUTION": "report",
    "add_eval_arguments": "cli_args",
    "run_eval_from_args": "cli_args",
    "write_reliability_diagram": "reliability",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastcomt.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
