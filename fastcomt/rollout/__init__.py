"""Rollout engines: token-id groups in, sampled completions with log-probs out.

``TransformersEngine`` runs anywhere (CPU tests, the demo); ``SGLangEngine`` (in-process) and
``SGLangHTTPEngine`` (servers) target SGLang 0.5.23. Importing this package never imports sglang:
``SGLangEngine`` imports it when built and says how to install it if it is missing.
"""

from fastcomt.rollout.engine import RolloutEngine, WeightsSource
from fastcomt.rollout.sglang_engine import SGLangEngine
from fastcomt.rollout.sglang_http_engine import SGLangHTTPEngine
from fastcomt.rollout.sglang_protocol import GenerationAbortedError
from fastcomt.rollout.transformers_engine import TransformersEngine
from fastcomt.rollout.types import GroupRequest, GroupResult, Sample, SamplingParams, rollout_totals

__all__ = [
    "GenerationAbortedError",
    "GroupRequest",
    "GroupResult",
    "RolloutEngine",
    "SGLangEngine",
    "SGLangHTTPEngine",
    "Sample",
    "SamplingParams",
    "TransformersEngine",
    "WeightsSource",
    "rollout_totals",
]
