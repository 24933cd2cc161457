"""Rollout engines: token-id groups in, sampled completions with log-probs out.

``TransformersEngine`` runs anywhere (CPU tests, the demo); ``SGLangEngine`` (in-process) and
``SGLangHTTPEngine`` (servers) target SGLang 0.5.23; ``VLLMEngine`` (in-process) and
``VLLMHTTPEngine`` (OpenAI-compatible servers) target vLLM 0.32.0. Importing this package never
imports sglang or vllm: an engine imports its backend when built and says how to install it.
"""

from fastcomt.rollout.cache_flush import CacheFlushError
from fastcomt.rollout.engine import RolloutEngine, WeightsSource
from fastcomt.rollout.server_health import ServerDiedError
from fastcomt.rollout.sglang_engine import SGLangEngine
from fastcomt.rollout.sglang_http_engine import SGLangHTTPEngine
from fastcomt.rollout.sglang_protocol import GenerationAbortedError
from fastcomt.rollout.transformers_engine import TransformersEngine
from fastcomt.rollout.types import GroupRequest, GroupResult, Sample, SamplingParams, rollout_totals
from fastcomt.rollout.vllm_engine import VLLMEngine
from fastcomt.rollout.vllm_http_engine import VLLMHTTPEngine

__all__ = [
    "CacheFlushError",
    "GenerationAbortedError",
    "GroupRequest",
    "GroupResult",
    "RolloutEngine",
    "SGLangEngine",
    "SGLangHTTPEngine",
    "ServerDiedError",
    "Sample",
    "SamplingParams",
    "TransformersEngine",
    "VLLMEngine",
    "VLLMHTTPEngine",
    "WeightsSource",
    "rollout_totals",
]
