"""JSON over HTTP with timeouts and exponential-backoff retries (stdlib only).

Shared by the SGLang HTTP rollout client and the teacher (chat-completions) client.

What is retried: connection failures (refused, reset, dropped mid-response), timeouts, and the
statuses in ``RetryPolicy.retry_statuses`` (429 and 5xx by default), honouring ``Retry-After``.
What is not: any other 4xx (``HTTPStatusError``, raised at once: the request itself is wrong) and a
complete 2xx response that is not the JSON the caller expects (``MalformedResponseError``).

A request body can be a callable of the attempt number, so a caller can give every attempt a
fresh request id: a server that still holds the dropped attempt then never sees a duplicate id.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Payload = Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None


class HTTPRequestError(RuntimeError):
    """Base of the errors this module raises."""


class HTTPStatusError(HTTPRequestError):
    """The server answered with a status that is not retried (a 4xx: the request is wrong)."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"{url} answered HTTP {status}: {body[:500]}")
        self.url, self.status, self.body = url, status, body


class RetriesExhaustedError(HTTPRequestError):
    """Every attempt failed with a retryable error; ``last_error`` is the final one."""

    def __init__(self, url: str, attempts: int, last_error: BaseException) -> None:
        super().__init__(f"{url} failed {attempts} times; last error: {last_error}")
        self.url, self.attempts, self.last_error = url, attempts, last_error


class MalformedResponseError(HTTPRequestError):
    """A complete response that is not what the protocol promises."""


@dataclass(frozen=True)
class RetryPolicy:
    """max_retries: retries after the first attempt; the wait before retry i (0-based) is
    ``min(backoff_max, backoff_base * 2**i)`` scaled by a random factor in [0.5, 1] (jitter keeps
    many clients from retrying in lockstep), or the server's ``Retry-After`` when it sends one."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({408, 429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries: expected an int >= 0, got {self.max_retries!r}")
        if not (self.backoff_base >= 0 and self.backoff_max >= 0):
            raise ValueError(
                f"backoff_base and backoff_max: expected >= 0, got {self.backoff_base}, {self.backoff_max}"
            )

    def delay(self, retry_index: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.backoff_max, max(0.0, retry_after))
        return min(self.backoff_max, self.backoff_base * 2**retry_index) * random.uniform(0.5, 1.0)


class _Retryable(Exception):
    def __init__(self, error: BaseException, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.retry_after = error, retry_after


def request_json(
    method: str,
    url: str,
    payload: Payload = None,
    *,
    timeout: float,
    policy: RetryPolicy,
    headers: Mapping[str, str] | None = None,
    expect_json: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Send ``payload`` as JSON and return the decoded JSON body (or the text if not expect_json).

    payload: a mapping, a callable ``attempt -> mapping`` (fresh ids per attempt), or None.
    """
    if method not in ("GET", "POST", "PUT"):
        raise ValueError(f"method: expected GET, POST or PUT, got {method!r}")
    if not (timeout > 0):
        raise ValueError(f"timeout: expected > 0 seconds, got {timeout!r}")
    last: _Retryable | None = None
    for attempt in range(policy.max_retries + 1):
        if attempt > 0:
            assert last is not None
            sleep(policy.delay(attempt - 1, last.retry_after))
        body = payload(attempt) if callable(payload) else payload
        try:
            text = _send_once(method, url, body, timeout, headers, policy)
        except _Retryable as exc:
            last = exc
            continue
        if not expect_json:
            return text
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise MalformedResponseError(f"{url} returned a body that is not JSON ({exc}): {text[:200]!r}") from exc
    assert last is not None
    raise RetriesExhaustedError(url, policy.max_retries + 1, last.error) from last.error


def _send_once(
    method: str,
    url: str,
    body: Mapping[str, Any] | None,
    timeout: float,
    headers: Mapping[str, str] | None,
    policy: RetryPolicy,
) -> str:
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        text = _read_error_body(exc)
        if exc.code in policy.retry_statuses:
            raise _Retryable(HTTPStatusError(url, exc.code, text), _retry_after(exc)) from exc
        raise HTTPStatusError(url, exc.code, text) from exc
    except urllib.error.URLError as exc:
        raise _Retryable(exc) from exc
    # RemoteDisconnected/IncompleteRead (connection dropped mid-response), resets, timeouts.
    except (http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
        raise _Retryable(exc) from exc


def _read_error_body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode("utf-8", errors="replace")
    except (http.client.HTTPException, OSError):
        return ""


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
