"""Telling a dead server from a failed call, for the HTTP rollout backends' control calls.

A server can die in the middle of a weight push (SGLang 0.5.23 on CPU crashes in
``update_weights_from_disk`` on a model with biases). The client then sees dropped or refused
connections, retries them, and finally an ``HTTPRequestError`` that does not say the server is gone.
``server_call`` turns that into ``ServerDiedError`` naming the server and the step, after one
short liveness probe; every call has a timeout, so nothing waits forever.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

from fastcomt.http_retry import HTTPRequestError

T = TypeVar("T")
PROBE_TIMEOUT_S = 5.0


class ServerDiedError(RuntimeError):
    """A server stopped answering while a control call (weight push, cache flush) was under way."""


def server_alive(url: str, *, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One ``GET /health`` (SGLang and vLLM both serve it); False when nothing answers 200."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_call(url: str, what: str, call: Callable[[], T]) -> T:
    """Run ``call``; if it fails with an HTTP error and the server no longer answers, say it died."""
    try:
        return call()
    except HTTPRequestError as exc:
        if not server_alive(url):
            raise ServerDiedError(
                f"{url} died during {what}: it no longer answers /health (last error: {exc})"
            ) from exc
        raise
