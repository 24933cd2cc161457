"""Rollouts on one or more SGLang servers through the native HTTP API (targets SGLang 0.5.23).

Start each server with ``--skip-tokenizer-init`` (token ids in and out). Endpoints used (paths
inside the sglang 0.5.23 wheel, ``srt/entrypoints/http_server.py``):

- ``POST /generate``: the ``GenerateReqInput`` body of ``sglang_protocol``; one priming request
  (``max_new_tokens=0``) per group, then one batch request with its G siblings;
- ``POST /pause_generation`` ``{"mode": "abort"|"retract"|"in_place"}`` and ``POST
  /continue_generation`` (``PauseGenerationReqInput``/``ContinueGenerationReqInput``): the
  server must be idle for a cache flush, and ``/flush_cache`` answers 400 while requests run;
- ``POST /begin_weight_update`` ``{"selector": "all"}`` and ``POST /end_weight_update``: since
  sgl-project/sglang PR #28001 ("refactor weight processing in RL weight update"),
  ``update_weights_from_tensor`` (and ``_from_distributed``) fail unless they run inside this
  session (``srt/managers/scheduler_components/weight_updater.py``); ``end_weight_update``
  finalises the loaded weights. ``update_weights_from_disk`` is not session-gated;
- ``POST /update_weights_from_tensor`` ``{"serialized_named_tensors": [one base64 payload per TP
  rank], "load_format", "flush_cache", "weight_version"}``: the payload is sglang's
  ``MultiprocessingSerializer`` (CUDA IPC handles), so the trainer must share the server's GPUs;
- ``POST /update_weights_from_disk`` ``{"model_path", "load_format", "weight_version",
  "flush_cache"}`` (answers ``{"success", "message", "num_paused_requests"}``): for remote servers;
- ``GET|POST /flush_cache``: empties the radix cache.

Weight sync: pause (mode "abort": this client holds no request in flight during an update, so
only strangers' requests are cut) -> [begin session] -> update (``flush_cache=true``,
``weight_version``) -> [end session] -> ``/flush_cache`` -> continue. The prefix cache is flushed
after every update: its KV came from the old weights. A flush is confirmed: right after a request
returns, SGLang can still answer that it did not flush (and then serves old-weight KV), so
``/flush_cache`` is asked again until it succeeds (``cache_flush``). A server that dies during an
update (SGLang 0.5.23 on CPU can crash in ``update_weights_from_disk``) raises ``ServerDiedError``.

Reliability: every HTTP call has a timeout and retries with exponential backoff on connection
errors, 429 and 5xx (``fastcomt.http_retry``); a 4xx raises at once. Each attempt carries fresh
request ids (``<group>.s<i>.t<attempt>``); results are matched by id, so a retried group can never
yield lost or duplicated samples. A group aborted by the server is retried the same way.
Groups with the same ``affinity_key`` (use the problem id) go to the same server, so one
problem's plans share the cached prompt.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import torch

from fastcomt.http_retry import HTTPStatusError, RetryPolicy, request_json
from fastcomt.rollout.cache_flush import confirm_flush
from fastcomt.rollout.engine import RolloutEngine, WeightsSource, check_groups, check_version
from fastcomt.rollout.server_health import ServerDiedError, server_call
from fastcomt.rollout.sglang_protocol import (
    TARGET_SGLANG_VERSION,
    GenerationAbortedError,
    build_samples,
    outputs_by_rid,
    priming_payload,
    siblings_payload,
)
from fastcomt.rollout.types import GroupRequest, GroupResult
from fastcomt.rollout.weights import named_tensors

TensorSerializer = Callable[[list[tuple[str, torch.Tensor]]], str]
_PAUSE_MODES = ("abort", "retract", "in_place")


def sglang_ipc_serializer(named: list[tuple[str, torch.Tensor]]) -> str:
    """sglang's own CUDA-IPC serialisation, base64 text as ``/update_weights_from_tensor`` expects."""
    try:
        from sglang.srt.utils import MultiprocessingSerializer
        from sglang.srt.utils.patch_torch import monkey_patch_torch_reductions
    except ImportError as exc:
        raise ImportError(
            f"updating an SGLang server from tensors needs sglang {TARGET_SGLANG_VERSION} in this process "
            "(pip install 'fastcomt[sglang]'); or pass a checkpoint path to update_weights"
        ) from exc
    monkey_patch_torch_reductions()  # CUDA tensors travel as IPC handles keyed by device UUID
    return MultiprocessingSerializer.serialize(named, output_str=True)


class SGLangHTTPEngine(RolloutEngine):
    """RolloutEngine over SGLang HTTP servers.

    base_urls: one server URL or several (e.g. ``http://10.0.0.5:30000``).
    timeout: seconds per HTTP call (a generate call waits for its whole group).
    max_concurrency: groups in flight at once over all servers.
    tp_size: tensor-parallel size of the servers (one tensor payload per rank).
    tensor_serializer: how ``update_weights`` ships named tensors; sglang's IPC serialiser by
        default (co-located GPUs). A checkpoint path goes through ``/update_weights_from_disk``.
    api_key: sent as ``Authorization: Bearer`` when the servers run with ``--api-key``.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        weight_version: int = 0,
        timeout: float = 600.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_concurrency: int = 32,
        pause_mode: str = "abort",
        tp_size: int = 1,
        tensor_serializer: TensorSerializer | None = None,
        api_key: str | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise ValueError(f"base_urls: expected one or more http(s):// URLs, got {base_urls!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected an int >= 1, got {max_concurrency!r}")
        if pause_mode not in _PAUSE_MODES:
            raise ValueError(f"pause_mode: expected one of {_PAUSE_MODES}, got {pause_mode!r}")
        if isinstance(tp_size, bool) or not isinstance(tp_size, int) or tp_size < 1:
            raise ValueError(f"tp_size: expected an int >= 1, got {tp_size!r}")
        if not (timeout > 0):
            raise ValueError(f"timeout: expected > 0 seconds, got {timeout!r}")
        self._urls = [u.rstrip("/") for u in urls]
        self._version = check_version(weight_version)
        self._timeout = float(timeout)
        self._policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self._pause_mode = pause_mode
        self._tp_size = tp_size
        self._serialize = tensor_serializer or sglang_ipc_serializer
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="sglang-http"
        )
        # Readers: generate calls; writer: a weight update. A write waits for in-flight groups.
        self._state = threading.Condition()
        self._generating = 0
        self._updating = False
        # Set once this client has pushed a version to the servers; before that they report the
        # version they were launched with (``--weight-version``, "default" unless set).
        self._version_pinned = False

    @property
    def weight_version(self) -> int:
        return self._version

    # -- generation ----------------------------------------------------------------------------

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        groups = check_groups(groups)
        pool = self._open_pool()
        with self._state:
            self._state.wait_for(lambda: not self._updating)
            self._generating += 1
            version = self._version
        try:
            call_id = uuid.uuid4().hex[:12]
            futures = [
                pool.submit(self._run_group, g, g.request_id or f"{call_id}-{i}", version) for i, g in enumerate(groups)
            ]
            # Let every group finish before reporting a failure, so no request of this call is
            # still running when a weight update is allowed in.
            wait(futures)
            return [f.result() for f in futures]
        finally:
            with self._state:
                self._generating -= 1
                self._state.notify_all()

    def server_for(self, group: GroupRequest) -> str:
        """The server a group goes to: a stable hash of its affinity key (default: its prefix)."""
        key = group.affinity_key.encode() if group.affinity_key is not None else repr(group.prefix_ids).encode()
        return self._urls[zlib.crc32(key) % len(self._urls)]

    def _run_group(self, group: GroupRequest, name: str, version: int) -> GroupResult:
        url = self.server_for(group)
        last_abort: GenerationAbortedError | None = None
        for round_ in range(self._policy.max_retries + 1):
            if round_:
                time.sleep(self._policy.delay(round_ - 1))
            try:
                return self._sample_group(url, group, f"{name}.r{round_}", version)
            except GenerationAbortedError as exc:
                last_abort = exc
        raise GenerationAbortedError(
            f"group {name} was aborted {self._policy.max_retries + 1} times; last: {last_abort}"
        )

    def _sample_group(self, url: str, group: GroupRequest, name: str, version: int) -> GroupResult:
        prime_rids: list[str] = []

        def prime(attempt: int) -> dict[str, Any]:
            prime_rids.append(f"{name}.p.t{attempt}")
            return priming_payload(group, prime_rids[-1])

        primed = self._post(url, "/generate", prime)
        prime_out = outputs_by_rid(primed, prime_rids[-1:], expect_logprobs=False)[prime_rids[-1]]

        sibling_rids: list[list[str]] = []

        def siblings(attempt: int) -> dict[str, Any]:
            sibling_rids.append([f"{name}.s{i}.t{attempt}" for i in range(group.num_samples)])
            return siblings_payload(group, sibling_rids[-1])

        response = self._post(url, "/generate", siblings)
        rids = sibling_rids[-1]  # the attempt that answered
        outputs = outputs_by_rid(response, rids, expect_logprobs=True)
        expected = str(version)
        for out in outputs.values():
            if self._version_pinned and out.weight_version is not None and out.weight_version != expected:
                raise RuntimeError(
                    f"{url} sampled request {out.rid} with weight version {out.weight_version!r}, expected {expected!r}: "
                    "another client updated this server's weights"
                )
        samples = build_samples(group, rids, outputs, version, prime_cached=prime_out.cached_tokens)
        return GroupResult(request=group, samples=samples)

    # -- weights and cache ---------------------------------------------------------------------

    def update_weights(self, weights: WeightsSource, version: int) -> None:
        version = check_version(version)
        self._open_pool()
        # A path is read by the servers, on their file system; tensors are shipped.
        path = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else None
        # Serialise before pausing anything: a serialiser error must not leave servers paused.
        # One payload per TP rank, as sglang's own clients do (each rank takes its own copy).
        payloads = None
        if path is None:
            pairs = named_tensors(weights)
            payloads = [self._serialize(pairs) for _ in range(self._tp_size)]
        with self._state:
            self._state.wait_for(lambda: not self._updating and self._generating == 0)
            self._updating = True
        try:
            for url in self._urls:
                self._update_server(url, path, payloads, version)
            self._version = version
            self._version_pinned = True
        finally:
            with self._state:
                self._updating = False
                self._state.notify_all()

    def _update_server(self, url: str, path: str | None, payloads: list[str] | None, version: int) -> None:
        what = f"the weight update to version {version}"

        def post(endpoint: str, payload: Any) -> Any:
            return server_call(url, what, lambda: self._post(url, endpoint, payload))

        post("/pause_generation", {"mode": self._pause_mode})
        try:
            if payloads is None:
                self._check_success(
                    url,
                    "/update_weights_from_disk",
                    post(
                        "/update_weights_from_disk",
                        {"model_path": path, "weight_version": str(version), "flush_cache": True},
                    ),
                )
            else:
                self._check_success(url, "/begin_weight_update", post("/begin_weight_update", {"selector": "all"}))
                try:
                    self._check_success(
                        url,
                        "/update_weights_from_tensor",
                        post(
                            "/update_weights_from_tensor",
                            {"serialized_named_tensors": payloads, "flush_cache": True, "weight_version": str(version)},
                        ),
                    )
                except BaseException:
                    # Close the session so the server accepts the next update; report the first error.
                    try:
                        self._post(url, "/end_weight_update", {})
                    except Exception:
                        pass
                    raise
                self._check_success(url, "/end_weight_update", post("/end_weight_update", {}))
            # The update's own flush can be refused (see cache_flush): flush again, confirmed.
            self._flush(url, what)
        except BaseException as exc:
            # Resume the server if it is still there, but report the first error, not this one.
            if not isinstance(exc, ServerDiedError):
                try:
                    self._post(url, "/continue_generation", {})
                except Exception:
                    pass
            raise
        post("/continue_generation", {})

    def flush_cache(self) -> None:
        self._open_pool()
        with self._state:
            self._state.wait_for(lambda: not self._updating and self._generating == 0)
            self._updating = True
        try:
            for url in self._urls:
                self._flush(url, "a prefix-cache flush")
        finally:
            with self._state:
                self._updating = False
                self._state.notify_all()

    def _flush(self, url: str, what: str) -> None:
        """``/flush_cache`` until it answers 200 ("Cache flushed."); it answers 400 while it holds requests."""

        def once() -> bool:
            try:
                server_call(url, what, lambda: self._post(url, "/flush_cache", {}, expect_json=False))
            except HTTPStatusError as exc:
                if exc.status == 400:
                    return False
                raise
            return True

        confirm_flush(once, what=f"{url}/flush_cache")

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _open_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            raise RuntimeError("SGLangHTTPEngine is closed")
        return self._pool

    def _post(self, url: str, path: str, payload: Any, *, expect_json: bool = True) -> Any:
        return request_json(
            "POST",
            url + path,
            payload,
            timeout=self._timeout,
            policy=self._policy,
            headers=self._headers,
            expect_json=expect_json,
        )

    @staticmethod
    def _check_success(url: str, path: str, answer: Any) -> None:
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise RuntimeError(f"{url}{path} did not succeed: {answer!r:.300}")
