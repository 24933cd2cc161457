"""OpenAI-compatible chat-completions client for the teacher model that writes meta-thoughts.

``POST {base_url}/v1/chat/completions`` works with an SGLang or vLLM server or a hosted API. The
API key comes from an environment variable (``OPENAI_API_KEY`` by default) and is sent as a bearer
token; a local server needs none.

Paying once: every answer is cached on disk under a key hashed from (model, messages, parameters):
``cache_dir/<2 hex>/<sha256>.json``, written to a temporary file, fsynced, then ``os.replace``d,
so a crash never leaves a half-written entry and a rerun answers finished requests from disk.
Identical requests in flight at the same time are sent once. Identical requests are by design
answered identically; to draw several samples of one prompt, vary ``seed``.

Reliability: at most ``max_concurrency`` requests in flight; connection errors, timeouts, 429 and
5xx are retried with exponential backoff (``fastcomt.http_retry``, honouring ``Retry-After``);
any other 4xx raises ``HTTPStatusError`` at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastcomt.atomic_io import write_json_atomic
from fastcomt.http_retry import MalformedResponseError, RetryPolicy, request_json

Message = Mapping[str, str]
_RESERVED_PARAMS = ("model", "messages", "stream", "n")


@dataclass
class TeacherStats:
    requests: int = 0  # chat completions paid for (answered by the server)
    cache_hits: int = 0  # answers served from disk or from an identical request in flight


class TeacherClient:
    """Cached, concurrent, retrying chat-completions client.

    base_url: server root (``http://host:port``) or API root ending in ``/v1``.
    cache_dir: where answers are kept (created if missing).
    api_key_env: environment variable holding the API key (ignored when ``api_key`` is given).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        cache_dir: str | os.PathLike,
        api_key_env: str = "OPENAI_API_KEY",
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s):// URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model: expected a non-empty str, got {model!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected an int >= 1, got {max_concurrency!r}")
        if not (timeout > 0):
            raise ValueError(f"timeout: expected > 0 seconds, got {timeout!r}")
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model = model
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = float(timeout)
        self._policy = RetryPolicy(max_retries=max_retries, backoff_base=backoff_base, backoff_max=backoff_max)
        self._max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future] = {}
        self.stats = TeacherStats()

    def complete(self, messages: Sequence[Message], **params: Any) -> str:
        """The assistant's reply to ``messages``; ``params`` go to the API (temperature, max_tokens, seed, ...)."""
        request = self._request(messages, params)
        return self._complete_request(request)

    def complete_many(self, list_of_messages: Sequence[Sequence[Message]], **params: Any) -> list[str]:
        """Replies in the order of ``list_of_messages``, computed concurrently. Finished answers
        are cached even if another one fails, so a rerun pays only for what is missing."""
        if isinstance(list_of_messages, (str, bytes)) or not isinstance(list_of_messages, Sequence):
            raise TypeError(
                f"list_of_messages: expected a sequence of message lists, got {type(list_of_messages).__name__}"
            )
        requests = [self._request(m, params) for m in list_of_messages]
        with ThreadPoolExecutor(max_workers=self._max_concurrency, thread_name_prefix="teacher") as pool:
            futures = [pool.submit(self._complete_request, r) for r in requests]
            return [f.result() for f in futures]

    def cache_key(self, messages: Sequence[Message], **params: Any) -> str:
        return _hash(self._request(messages, params))

    # -- internals -----------------------------------------------------------------------------

    def _request(self, messages: Sequence[Message], params: Mapping[str, Any]) -> dict[str, Any]:
        _check_messages(messages)
        reserved = [k for k in params if k in _RESERVED_PARAMS]
        if reserved:
            raise ValueError(
                f"params: expected none of {reserved} (the client sets model and messages, and supports one non-streamed answer), got them"
            )
        request = {"model": self.model, "messages": [dict(m) for m in messages], **params}
        try:
            json.dumps(request)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"params: expected JSON-serialisable values, got {exc}") from exc
        return request

    def _complete_request(self, request: dict[str, Any]) -> str:
        key = _hash(request)
        with self._lock:
            cached = self._read_cache(key, request)
            if cached is not None:
                self.stats.cache_hits += 1
                return cached
            pending = self._in_flight.get(key)
            owner = pending is None
            if owner:
                pending = Future()
                self._in_flight[key] = pending
            else:
                self.stats.cache_hits += 1
        if not owner:
            return pending.result()
        try:
            with self._slots:
                answer = request_json(
                    "POST", self.url, request, timeout=self._timeout, policy=self._policy, headers=self._headers
                )
            content = _content(answer, self.url)
            self._write_cache(key, request, answer, content)
            with self._lock:
                self.stats.requests += 1
            pending.set_result(content)
            return content
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._in_flight.pop(key, None)

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _read_cache(self, key: str, request: dict[str, Any]) -> str | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # unreadable entry: ask again and overwrite it
        if not isinstance(entry, dict) or entry.get("request") != request or not isinstance(entry.get("content"), str):
            return None
        return entry["content"]

    def _write_cache(self, key: str, request: dict[str, Any], answer: Any, content: str) -> None:
        write_json_atomic(self._path(key), {"request": request, "content": content, "response": answer}, indent=None)


def _hash(request: Mapping[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _check_messages(messages: Sequence[Message]) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise TypeError(
            f"messages: expected a non-empty list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TypeError(f"messages[{i}]: expected a dict with str 'role' and 'content', got {m!r:.100}")


def _content(answer: Any, url: str) -> str:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise MalformedResponseError(f"{url} answered without choices[0].message.content: {str(answer)[:300]}") from exc
    if not isinstance(content, str):
        raise MalformedResponseError(f"{url} answered a non-string message content: {content!r:.100}")
    return content
