"""Rollouts on an in-process ``sglang.Engine`` (targets SGLang 0.5.23; ``pip install 'fastcomt[sglang]'``).

sglang is imported only when an ``SGLangEngine`` is built, never by ``import fastcomt.rollout``.
APIs used (paths inside the sglang 0.5.23 wheel):

- ``sglang.Engine(model_path=..., skip_tokenizer_init=True, **server_args)``
  (``srt/entrypoints/engine.py``; keyword arguments are ``ServerArgs`` fields);
- ``Engine.generate(input_ids=..., sampling_params=..., return_logprob=True,
  logprob_start_len=-1, rid=...)``: request and output format in ``sglang_protocol``; all priming
  requests go in one call, then all siblings of all groups in a second call, so every sibling finds
  its prefix in the radix cache;
- ``Engine.begin_weight_update(selector="all")`` / ``Engine.end_weight_update()``: the
  weight-update session that ``update_weights_from_tensor`` requires since sgl-project/sglang PR
  #28001 (without it the scheduler answers "update_weights_from_tensor must run between
  begin_weight_update() and end_weight_update()", ``srt/managers/scheduler_components/
  weight_updater.py``);
- ``Engine.update_weights_from_tensor(named_tensors, load_format=None, flush_cache=...)``,
  ``Engine.update_weights_from_disk(model_path, load_format=None)``, ``Engine.flush_cache()``,
  ``Engine.shutdown()``.

No pause is needed around a weight update here (``pause_generation`` is an HTTP-server feature):
``generate`` and ``update_weights`` hold the same lock, so the scheduler is idle when weights
change and the radix cache can be flushed. The cache is flushed after every update, and every
flush is confirmed (asked again until SGLang reports success, ``cache_flush``).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import torch

from fastcomt.rollout.cache_flush import confirm_flush
from fastcomt.rollout.engine import RolloutEngine, WeightsSource, check_groups, check_version
from fastcomt.rollout.sglang_protocol import (
    TARGET_SGLANG_VERSION,
    build_samples,
    outputs_by_rid,
    priming_payload,
    siblings_payload,
)
from fastcomt.rollout.types import GroupRequest, GroupResult
from fastcomt.rollout.weights import named_tensors


def import_sglang() -> Any:
    try:
        import sglang
    except ImportError as exc:
        raise ImportError(
            f"SGLangEngine needs sglang {TARGET_SGLANG_VERSION}: pip install 'fastcomt[sglang]' "
            "(or use TransformersEngine, or SGLangHTTPEngine against a running server)"
        ) from exc
    return sglang


class SGLangEngine(RolloutEngine):
    """RolloutEngine on an in-process SGLang engine.

    model_path: the HF model directory or hub id SGLang loads.
    update_bucket_bytes: tensors are pushed in buckets of about this many bytes, so a large model
        is never serialised in one piece.
    server_args: further ``sglang.srt.server_args.ServerArgs`` fields (tp_size, mem_fraction_static,
        ...); pass ``enable_deterministic_inference=True`` for samples reproducible from their
        seeds (see ``sglang_protocol``).
    """

    def __init__(
        self,
        model_path: str,
        *,
        weight_version: int = 0,
        update_bucket_bytes: int = 1 << 30,
        **server_args: Any,
    ) -> None:
        if not isinstance(model_path, str) or not model_path:
            raise ValueError(f"model_path: expected a non-empty str, got {model_path!r}")
        if isinstance(update_bucket_bytes, bool) or not isinstance(update_bucket_bytes, int) or update_bucket_bytes < 1:
            raise ValueError(f"update_bucket_bytes: expected an int >= 1, got {update_bucket_bytes!r}")
        if server_args.get("skip_tokenizer_init", True) is not True:
            raise ValueError("skip_tokenizer_init: expected True (SGLangEngine exchanges token ids only), got False")
        sglang = import_sglang()
        server_args["skip_tokenizer_init"] = True
        self._engine: Any = sglang.Engine(model_path=model_path, **server_args)
        self._version = check_version(weight_version)
        self._bucket_bytes = update_bucket_bytes
        self._lock = threading.Lock()

    @property
    def weight_version(self) -> int:
        return self._version

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        groups = check_groups(groups)
        if not groups:
            return []
        call = uuid.uuid4().hex[:12]
        names = [g.request_id or f"{call}-{i}" for i, g in enumerate(groups)]
        with self._lock:
            engine = self._open()
            primes = [priming_payload(g, f"{n}.p") for g, n in zip(groups, names)]
            prime_out = outputs_by_rid(
                engine.generate(**_batch(primes, logprobs=False)), [p["rid"] for p in primes], expect_logprobs=False
            )
            siblings = [siblings_payload(g, [f"{n}.s{i}" for i in range(g.num_samples)]) for g, n in zip(groups, names)]
            flat = _flatten(siblings)
            outputs = outputs_by_rid(engine.generate(**flat), flat["rid"], expect_logprobs=True)
            version = self._version
        results = []
        for g, n, s in zip(groups, names, siblings):
            samples = build_samples(g, s["rid"], outputs, version, prime_cached=prime_out[f"{n}.p"].cached_tokens)
            results.append(GroupResult(request=g, samples=samples))
        return results

    def update_weights(self, weights: WeightsSource, version: int) -> None:
        version = check_version(version)
        with self._lock:
            engine = self._open()
            if isinstance(weights, (str, os.PathLike)):
                _check(engine.update_weights_from_disk(model_path=os.fspath(weights)), "update_weights_from_disk")
            else:
                self._push_tensors(engine, named_tensors(weights))
            _confirmed_flush(engine)
            self._version = version

    def _push_tensors(self, engine: Any, pairs: list[tuple[str, torch.Tensor]]) -> None:
        _check(engine.begin_weight_update(selector="all"), "begin_weight_update")
        try:
            for bucket in _buckets(pairs, self._bucket_bytes):
                # One flush at the end of the update, not one per bucket.
                _check(
                    engine.update_weights_from_tensor(named_tensors=bucket, load_format=None, flush_cache=False),
                    "update_weights_from_tensor",
                )
        except BaseException:
            try:
                engine.end_weight_update()  # leave no session open; report the first error
            except Exception:
                pass
            raise
        _check(engine.end_weight_update(), "end_weight_update")

    def flush_cache(self) -> None:
        with self._lock:
            _confirmed_flush(self._open())

    def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
            if engine is not None:
                engine.shutdown()

    def _open(self) -> Any:
        if self._engine is None:
            raise RuntimeError("SGLangEngine is closed")
        return self._engine


def _batch(payloads: list[dict[str, Any]], *, logprobs: bool) -> dict[str, Any]:
    """Single-request payloads as one ``Engine.generate`` batch call."""
    return {
        "input_ids": [p["input_ids"] for p in payloads],
        "sampling_params": [p["sampling_params"] for p in payloads],
        "rid": [p["rid"] for p in payloads],
        "return_logprob": logprobs,
    }


def _flatten(siblings: list[dict[str, Any]]) -> dict[str, Any]:
    """The sibling batches of every group as one ``Engine.generate`` call."""
    return {
        "input_ids": [ids for s in siblings for ids in s["input_ids"]],
        "sampling_params": [p for s in siblings for p in s["sampling_params"]],
        "rid": [r for s in siblings for r in s["rid"]],
        "return_logprob": True,
        "logprob_start_len": -1,
    }


def _buckets(pairs: list[tuple[str, torch.Tensor]], max_bytes: int) -> list[list[tuple[str, torch.Tensor]]]:
    out: list[list[tuple[str, torch.Tensor]]] = [[]]
    size = 0
    for name, tensor in pairs:
        nbytes = tensor.numel() * tensor.element_size()
        if out[-1] and size + nbytes > max_bytes:
            out.append([])
            size = 0
        out[-1].append((name, tensor))
        size += nbytes
    return out


def _confirmed_flush(engine: Any) -> None:
    """``flush_cache`` until SGLang says it flushed: right after a request returns it can answer
    "not flushed", and the next request would then reuse KV of the old weights (``cache_flush``)."""
    confirm_flush(lambda: _succeeded(engine.flush_cache()), what="sglang Engine.flush_cache")


def _succeeded(answer: Any) -> bool:
    if isinstance(answer, tuple) and answer and isinstance(answer[0], bool):
        return answer[0]
    if hasattr(answer, "success"):
        return bool(answer.success)
    if isinstance(answer, dict) and "success" in answer:
        return bool(answer["success"])
    return True  # builds that answer nothing raise on failure themselves


def _check(answer: Any, what: str) -> None:
    """SGLang answers (success, message[, ...]) tuples or objects with ``success``; raise on failure."""
    if isinstance(answer, tuple) and answer and isinstance(answer[0], bool):
        ok, message = answer[0], answer[1] if len(answer) > 1 else ""
    elif hasattr(answer, "success"):
        ok, message = bool(answer.success), getattr(answer, "message", "")
    elif isinstance(answer, dict) and "success" in answer:
        ok, message = bool(answer["success"]), answer.get("message", "")
    else:
        return  # methods that answer nothing (older builds) raise on failure themselves
    if not ok:
        raise RuntimeError(f"sglang {what} failed: {message}")
