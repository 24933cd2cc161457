"""Benchmark evaluation: accuracy, format rate and step calibration, written as a resumable run.

`evaluate` (and `main`) live in `evaluate`, `EvalConfig` in `eval_config`, the summary and markdown
report in `report`, the metrics in `calibration`, the diagram in `reliability`, the command-line
flags in `cli_args`.

Names are resolved on first use (PEP 562): `evaluate` pulls in the rollout engines (torch,
transformers: seconds), which `fastcomt eval --help` and the config and metric modules do not need.
`evaluate` is also the name of a submodule; the package keeps the function under that name even
after the submodule is imported (see `_EvalPackage`).
"""

import importlib
import sys
import types

_EXPORTS = {
    "auroc": "calibration",
    "brier_score": "calibration",
    "calibration_report": "calibration",
    "expected_calibration_error": "calibration",
    "overconfident_error_rate": "calibration",
    "reliability_bins": "calibration",
    "add_eval_arguments": "cli_args",
    "run_eval_from_args": "cli_args",
    "EvalConfig": "eval_config",
    "PAPER_BENCHMARKS": "eval_config",
    "load_rows": "evaluate",
    "main": "evaluate",
    "run_config": "evaluate",
    "score_rollout": "evaluate",
    "step_confidence": "evaluate",
    "write_reliability_diagram": "reliability",
    "IN_DISTRIBUTION": "report",
    "OUT_OF_DISTRIBUTION": "report",
    "render_report": "report",
    "summarize_rows": "report",
}

__all__ = ["evaluate", *_EXPORTS]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


class _EvalPackage(types.ModuleType):
    """The package's module type: `fastcomt.eval.evaluate` is the function. The import system sets
    the package attribute of a submodule to the module once it is loaded; the setter ignores that
    (the submodule stays reachable through sys.modules and `from fastcomt.eval.evaluate import ...`)."""

    @property
    def evaluate(self) -> object:
        return importlib.import_module(f"{__name__}.evaluate").evaluate

    @evaluate.setter
    def evaluate(self, value: object) -> None:
        if not isinstance(value, types.ModuleType):
            raise AttributeError("fastcomt.eval.evaluate is the evaluation function; it cannot be replaced")


sys.modules[__name__].__class__ = _EvalPackage
