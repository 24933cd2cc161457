"""Rollouts on a fleet of SGLang servers (data-parallel replicas, each possibly tensor-parallel):
prefix affinity, balance, fail-over, and weight updates streamed in buckets.

`SGLangFleetEngine` is `SGLangHTTPEngine` (same protocol, same per-request retries, same ids) with:

- **affinity + balance**: the first group with a given affinity key (use the problem id) goes to the
  live server with the fewest samples assigned so far, and every later group with that key to the same
  server, so one problem's plans and executions share its cached [prompt + plan] prefix. The map is
  cleared at every cache flush (a new weight version starts with empty caches), so each step is
  balanced afresh.
- **fail-over**: a server that stops answering (connection refused or reset, 5xx, until the
  per-request retries are spent) is marked dead; its groups, those in flight included, are sampled again
  on another live server with fresh request ids. Results are matched by request id and a group's result
  is only taken from the attempt that answered whole, so a sample is never lost and never doubled;
  sampling is seeded per sample, so the retried group has exactly the tokens it would have had.
  Dead servers get no more requests and no weight updates (restart them with the current weights and
  build a new engine to bring them back).
- **bucketed weight updates**: `update_weights_in_buckets(buckets, version)` pauses every live
  server, opens a weight-update session on each, streams each bucket of (name, full tensor) pairs to
  all of them as it arrives (`/update_weights_from_tensor`, cache flush at the end only), closes the
  sessions, flushes the caches and continues: a trainer that gathers its sharded weights bucket by
  bucket never holds the whole model at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from fastcomt.http_retry import RetriesExhaustedError
from fastcomt.rollout.engine import check_version
from fastcomt.rollout.sglang_http_engine import SGLangHTTPEngine
from fastcomt.rollout.sglang_protocol import GenerationAbortedError
from fastcomt.rollout.types import GroupRequest, GroupResult

__all__ = ["SGLangFleetEngine", "NoLiveServerError"]


class NoLiveServerError(RuntimeError):
    """Every server of the fleet stopped answering."""


class SGLangFleetEngine(SGLangHTTPEngine):
    """`SGLangHTTPEngine` over several servers with affinity, balance and fail-over (module docstring)."""

    def __init__(self, base_urls: str | Sequence[str], **kwargs: Any) -> None:
        super().__init__(base_urls, **kwargs)
        self._fleet_lock = threading.Lock()
        self._dead: set[str] = set()
        self._assigned: dict[str, str] = {}  # affinity key -> server, until the next cache flush
        self._load: dict[str, int] = {u: 0 for u in self._urls}  # samples assigned since the last flush

    @property
    def live_servers(self) -> list[str]:
        with self._fleet_lock:
            return [u for u in self._urls if u not in self._dead]

    @property
    def samples_per_server(self) -> dict[str, int]:
        """Samples assigned to each server since the last cache flush (the balance)."""
        with self._fleet_lock:
            return dict(self._load)

    def generate(self, groups: Sequence[GroupRequest]) -> list[GroupResult]:
        # assign in the caller's order, before any request runs: the balance does not depend on timing
        for g in groups:
            if isinstance(g, GroupRequest):
                url = self.server_for(g)
                with self._fleet_lock:
                    self._load[url] += g.num_samples
        return super().generate(groups)

    def server_for(self, group: GroupRequest) -> str:
        """The group's server: the one its affinity key went to, else the live one with the fewest samples."""
        key = group.affinity_key if group.affinity_key is not None else repr(group.prefix_ids)
        with self._fleet_lock:
            url = self._assigned.get(key)
            if url is None or url in self._dead:
                live = [u for u in self._urls if u not in self._dead]
                if not live:
                    raise NoLiveServerError(f"base_urls: none of the {len(self._urls)} servers answers any more")
                url = min(live, key=lambda u: (self._load[u], self._urls.index(u)))
                self._assigned[key] = url
            return url

    def _run_group(self, group: GroupRequest, name: str, version: int) -> GroupResult:
        for attempt in range(len(self._urls)):
            url = self.server_for(group)
            try:
                # a new name per server: the ids of an attempt that died never meet the next one's
                return self._run_group_on(url, group, f"{name}.f{attempt}", version)
            except RetriesExhaustedError:
                with self._fleet_lock:
                    self._dead.add(url)
                    self._load[url] = 0
                self._load_add(group)
        raise NoLiveServerError(f"group {name}: every server failed")

    def _load_add(self, group: GroupRequest) -> None:
        url = self.server_for(group)  # its new server (after a fail-over)
        with self._fleet_lock:
            self._load[url] += group.num_samples

    def _run_group_on(self, url: str, group: GroupRequest, name: str, version: int) -> GroupResult:
        """The group on `url`; a group the server aborted (a pause in "abort" mode) is sent again there."""
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

    # -- weights and cache ---------------------------------------------------------------------

    def update_weights(self, weights: Any, version: int) -> None:
        """As `SGLangHTTPEngine.update_weights`, on the live servers only."""
        all_urls, self._urls = self._urls, self.live_servers
        try:
            super().update_weights(weights, version)
        finally:
            self._urls = all_urls
            self._reset_assignment()

    def flush_cache(self) -> None:
        all_urls, self._urls = self._urls, self.live_servers
        try:
            super().flush_cache()
        finally:
            self._urls = all_urls
            self._reset_assignment()

    def update_weights_in_buckets(self, buckets: Iterable[Sequence[tuple[str, torch.Tensor]]], version: int) -> int:
        """Stream `buckets` of (name, full tensor) to every live server inside one weight-update session
        per server; returns the number of buckets. The caches are flushed and `version` set at the end."""
        version = check_version(version)
        self._open_pool()
        urls = self.live_servers
        with self._state:
            self._state.wait_for(lambda: not self._updating and self._generating == 0)
            self._updating = True
        count = 0
        try:
            for url in urls:
                self._post(url, "/pause_generation", {"mode": self._pause_mode})
                self._check_success(
                    url, "/begin_weight_update", self._post(url, "/begin_weight_update", {"selector": "all"})
                )
            try:
                for bucket in buckets:
                    pairs = [(str(n), t) for n, t in bucket]
                    payloads = [self._serialize(pairs) for _ in range(self._tp_size)]
                    for url in urls:
                        self._check_success(
                            url,
                            "/update_weights_from_tensor",
                            self._post(
                                url,
                                "/update_weights_from_tensor",
                                {
                                    "serialized_named_tensors": payloads,
                                    "flush_cache": False,
                                    "weight_version": str(version),
                                },
                            ),
                        )
                    count += 1
            finally:  # close every session, even after an error, so the servers accept the next update
                for url in urls:
                    self._check_success(url, "/end_weight_update", self._post(url, "/end_weight_update", {}))
            for url in urls:
                self._post(url, "/flush_cache", {}, expect_json=False)
            self._version = version
            self._version_pinned = True
        finally:
            for url in urls:
                try:
                    self._post(url, "/continue_generation", {})
                except Exception:
                    pass
            with self._state:
                self._updating = False
                self._state.notify_all()
            self._reset_assignment()
        return count

    def _reset_assignment(self) -> None:
        with self._fleet_lock:
            self._assigned.clear()
            self._load = {u: 0 for u in self._urls}
