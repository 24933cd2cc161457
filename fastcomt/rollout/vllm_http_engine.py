"""Rollouts on one or more vLLM OpenAI-compatible servers (targets vLLM 0.32.0; stdlib HTTP only).

Start each server with (``VLLMServer`` in ``vllm_server`` does it for tests and single machines)::

    VLLM_SERVER_DEV_MODE=1 python -m vllm.entrypoints.openai.api_server --model DIR \\
        --enable-prefix-caching --enable-prompt-tokens-details --logprobs-mode processed_logprobs

Endpoints (``entrypoints/openai/completion/protocol.py`` and ``entrypoints/serve/dev/`` in the
vllm 0.32.0 wheel):

- ``POST /v1/completions`` with ``prompt`` a list of token ids, one request per sample (the seed is
  per request), ``logprobs: 0``, ``return_token_ids`` (``choices[0].token_ids``) and
  ``return_tokens_as_token_ids`` (``logprobs.tokens`` as ``"token_id:N"``, checked against the ids);
  ``usage.prompt_tokens_details.cached_tokens`` (needs ``--enable-prompt-tokens-details``) is the
  prefix-cache hit. Sampling fields and log-prob meaning: ``vllm_protocol``;
- dev mode (``VLLM_SERVER_DEV_MODE=1``): ``POST /collective_rpc`` ``{"method": "reload_weights",
  "kwargs": {"weights_path": DIR}}`` and ``POST /reset_prefix_cache`` (answers ``{"success":
  bool}``; false while blocks are held, so it is confirmed, ``cache_flush``).

Weight sync waits until no ``generate`` call of this client is running, then per server: reload
from a folder the server can read (tensors are staged into ``staging_dir``, which must be on the
servers' file system), confirmed cache reset. A server that dies meanwhile raises
``ServerDiedError``. HTTP calls time out and retry like the SGLang client's (``fastcomt.http_retry``);
a seeded request is idempotent, so a retried sample is the same sample. Groups with the same
``affinity_key`` go to the same server.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from fastcomt.http_retry import MalformedResponseError, RetryPolicy, request_json
from fastcomt.rollout.cache_flush import confirm_flush
from fastcomt.rollout.engine import RolloutEngine, WeightsSource, check_groups, check_version
from fastcomt.rollout.server_health import server_call
from fastcomt.rollout.types import GroupRequest, GroupResult, Sample
from fastcomt.rollout.vllm_protocol import WeightStager, check_vllm_groups, make_sample, sampling_fields


class VLLMHTTPEngine(RolloutEngine):
    """RolloutEngine over vLLM OpenAI-compatible servers.

    base_urls: one server URL or several (e.g. ``http://127.0.0.1:8000``).
    model: the served model name sent with each request; None lets a one-model server choose.
    timeout: seconds per HTTP call (a completion waits for its whole sample).
    max_concurrency: samples in flight at once over all servers.
    staging_dir: where tensors given to ``update_weights`` are written; the servers must be able to
        read it (same machine or shared storage). None: a private temporary folder (same machine).
    api_key: sent as ``Authorization: Bearer`` when the servers run with ``--api-key``.
    """

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        model: str | None = None,
        weight_version: int = 0,
        timeout: float = 600.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_concurrency: int = 64,
        staging_dir: str | os.PathLike | None = None,
        api_key: str | None = None,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise ValueError(f"base_urls: expected one or more http(s):// URLs, got {base_urls!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected an int >= 1, got {max_concurrency!r}")
        if not (timeout > 0):
            raise ValueError(f"timeout: expected > 0 seconds, got {timeout!r}")
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"model: expected a non-empty str or None, got {model!r}")
        self._urls = [u.rstrip("/") for u in urls]
        self._model = model
        self._version = check_version(weight_version)
        self._timeout = float(timeout)
        self._policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._stager = WeightStager(staging_dir)
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="vllm-http"
        )
        # Readers: generate calls; writer: a weight update or flush, which waits for in-flight samples.
        self._state = threading.Condition()
        self._generating = 0
        self._updating = False

    @property
    def weight_version(self) -> int:
        return self._version

    def server_for(self, group: GroupRequest) -> str:
        """The server a group goes to: a stable hash of its affinity key (default: its prefix)."""
        key = group.affinity_key.encode() if group.affinity_key is not None else repr(group.prefix_ids).encode()
        return self._urls[zlib.crc32(key) % len(self._urls)]

    # -- generation ----------------------------------------------------------------------------

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        groups = check_groups(groups)
        check_vllm_groups(groups)
        pool = self._open_pool()
        with self._state:
            self._state.wait_for(lambda: not self._updating)
            self._generating += 1
            version = self._version
        try:
            futures = [
                [
                    pool.submit(self._sample, self.server_for(g), g, seed, version, f"groups[{gi}] sample {j}")
                    for j, seed in enumerate(g.seeds)
                ]
                for gi, g in enumerate(groups)
            ]
            # Let every sample finish before reporting a failure: no request of this call may
            # still run when a weight update is let in.
            wait([f for row in futures for f in row])
            return [GroupResult(request=g, samples=tuple(f.result() for f in row)) for g, row in zip(groups, futures)]
        finally:
            with self._state:
                self._generating -= 1
                self._state.notify_all()

    def _sample(self, url: str, group: GroupRequest, seed: int, version: int, where: str) -> Sample:
        body: dict[str, Any] = {
            "prompt": list(group.prefix_ids),
            **sampling_fields(group, seed),
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
        }
        if self._model is not None:
            body["model"] = self._model
        answer = self._post(url, "/v1/completions", body)
        where = f"{url} {where}"
        try:
            choice = answer["choices"][0]
            tokens = choice["token_ids"]
            logprobs = choice["logprobs"]
            values, names = logprobs["token_logprobs"], logprobs["tokens"]
            usage = answer["usage"]
        except (KeyError, IndexError, TypeError) as exc:
            raise MalformedResponseError(
                f"{where}: not a completion with token ids and log-probs: {str(answer)[:300]}"
            ) from exc
        if not isinstance(tokens, list) or names != [f"token_id:{t}" for t in tokens]:
            raise MalformedResponseError(
                f"{where}: logprobs.tokens {str(names)[:200]} do not name token_ids {str(tokens)[:200]}"
            )
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        if not isinstance(details, dict) or not isinstance(details.get("cached_tokens"), int):
            raise MalformedResponseError(
                f"{where}: usage.prompt_tokens_details.cached_tokens is missing: start the server with --enable-prompt-tokens-details"
            )
        if any(not isinstance(v, (int, float)) for v in values):
            raise MalformedResponseError(f"{where}: logprobs.token_logprobs must be numbers, got {str(values)[:200]}")
        return make_sample(
            group,
            seed,
            token_ids=tokens,
            logprobs=values,
            finish_reason=choice.get("finish_reason"),
            cached_tokens=details["cached_tokens"],
            weight_version=version,
            where=where,
        )

    # -- weights and cache ---------------------------------------------------------------------

    def update_weights(self, weights: WeightsSource, version: int) -> None:
        version = check_version(version)
        self._open_pool()
        with self._exclusive():
            folder = self._stager.folder_for(weights)
            for url in self._urls:
                what = f"the weight update to version {version}"
                answer = server_call(
                    url,
                    what,
                    lambda url=url: self._post(
                        url, "/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": folder}}
                    ),
                )
                if not isinstance(answer, dict) or "results" not in answer:
                    raise MalformedResponseError(f"{url}/collective_rpc reload_weights answered {answer!r:.300}")
                self._flush(url, what)
            self._version = version

    def flush_cache(self) -> None:
        self._open_pool()
        with self._exclusive():
            for url in self._urls:
                self._flush(url, "a prefix-cache flush")

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
            self._stager.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _flush(self, url: str, what: str) -> None:
        def once() -> bool:
            answer = server_call(url, what, lambda: self._post(url, "/reset_prefix_cache", {}))
            if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
                raise MalformedResponseError(
                    f"{url}/reset_prefix_cache answered {answer!r:.300}, expected {{'success': bool}}"
                )
            return answer["success"]

        confirm_flush(once, what=f"{url}/reset_prefix_cache")

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Wait for in-flight generate calls, then hold new ones back until the block ends."""
        with self._state:
            self._state.wait_for(lambda: not self._updating and self._generating == 0)
            self._updating = True
        try:
            yield
        finally:
            with self._state:
                self._updating = False
                self._state.notify_all()

    def _open_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            raise RuntimeError("VLLMHTTPEngine is closed")
        return self._pool

    def _post(self, url: str, path: str, payload: Any) -> Any:
        return request_json(
            "POST", url + path, payload, timeout=self._timeout, policy=self._policy, headers=self._headers
        )
