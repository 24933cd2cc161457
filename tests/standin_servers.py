"""Local stand-ins for the servers the rollout and teacher clients talk to, for tests.

- ``FakeSGLangRuntime``: the subset of SGLang 0.5.23 the clients use (``/generate`` with token ids,
  priming with ``max_new_tokens=0``, ``cached_tokens`` from a simulated radix cache, output
  log-probs, weight updates from disk and from tensors inside a begin/end session, pause/continue,
  ``flush_cache`` that refuses while requests run), backed by a ``TransformersEngine``. Each
  request is sampled as its own one-sample group with its ``sampling_seed``; since a sample depends
  only on its seed, a client must get the same tokens as the engine sampling the whole group.
- ``StandInSGLangServer``: that runtime behind a ``ThreadingHTTPServer`` on 127.0.0.1 (random
  port), with fault injection: 503s, dropped connections before or after the work, malformed
  bodies, 4xx.
- ``FakeSGLangModule``: the runtime shaped as the ``sglang`` package (``sglang.Engine``), for the
  in-process engine.
- ``StandInChatServer``: an OpenAI-compatible ``/v1/chat/completions`` with fault injection.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
import types
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from fastcomt.rollout import GroupRequest, SamplingParams, TransformersEngine
from fastcomt.rollout.weights import read_checkpoint

# A fault plan maps (path, 0-based index of this request on that path) to a fault name or None:
# "500", "503", "429" (with Retry-After: 0), "400", "drop" (close before doing the work), "drop_after" (do
# the work, then close without answering), "not_json" (200 with a truncated body), "bad_fields"
# (200, JSON without meta_info), "abort" (200, every output finished with type "abort"), "die" (close
# the connection and stop the server: later connections are refused, as after a crash).
FaultPlan = Callable[[str, int], str | None]


def encode_torch_tensors(named: list[tuple[str, torch.Tensor]]) -> str:
    """Test serialiser for ``SGLangHTTPEngine(tensor_serializer=...)``: torch.save + base64."""
    buf = io.BytesIO()
    torch.save([(n, t.detach().cpu()) for n, t in named], buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_torch_tensors(text: str) -> list[tuple[str, torch.Tensor]]:
    return list(torch.load(io.BytesIO(base64.b64decode(text)), weights_only=True))


class RequestRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class FakeSGLangRuntime:
    """SGLang's request handling over a TransformersEngine (see module docstring)."""

    def __init__(self, engine: TransformersEngine, *, weight_version: str = "default") -> None:
        self.engine = engine
        self.weight_version = weight_version
        self.cache: list[tuple[int, ...]] = []
        self.session_open = False
        self.paused = False
        self.in_flight = 0
        self.live_rids: set[str] = set()
        self.calls: list[tuple[str, Any]] = []  # (operation, body) in arrival order
        self.seen_rids: list[str] = []
        # Idle flushes to refuse, as SGLang does right after a request has returned to the client.
        self.refuse_flushes = 0
        self._lock = threading.Lock()

    # /generate ---------------------------------------------------------------------------------

    def generate(self, body: dict[str, Any]) -> Any:
        batch = (
            isinstance(body.get("input_ids"), list)
            and bool(body["input_ids"])
            and isinstance(body["input_ids"][0], list)
        )
        inputs = body["input_ids"] if batch else [body.get("input_ids")]
        params = body.get("sampling_params") or {}
        params = params if isinstance(params, list) else [params] * len(inputs)
        rids = body.get("rid")
        rids = rids if isinstance(rids, list) else [rids]
        if not all(isinstance(x, list) and x for x in inputs) or len(params) != len(inputs) or len(rids) != len(inputs):
            raise RequestRejected(400, "input_ids, sampling_params and rid must have one entry per request")
        with self._lock:
            self.calls.append(("generate", body))
            dup = [r for r in rids if r in self.live_rids]
            if dup:
                raise RequestRejected(400, f"Duplicate request ID detected: {dup[0]}")
            self.live_rids.update(rids)
            self.seen_rids.extend(rids)
            self.in_flight += 1
            cached = [self._cached_prefix(tuple(x)) for x in inputs]
        try:
            outputs = self._run(
                inputs, params, rids, cached, bool(body.get("return_logprob")), body.get("logprob_start_len")
            )
        finally:
            with self._lock:
                self.in_flight -= 1
                self.live_rids.difference_update(rids)
                self.cache.extend(tuple(x) for x in inputs)
        return outputs if batch else outputs[0]

    def _cached_prefix(self, ids: tuple[int, ...]) -> int:
        # Radix-cache hit length; SGLang always recomputes at least the last prompt token.
        best = max((len(os.path.commonprefix([ids, c])) for c in self.cache), default=0)
        return min(best, len(ids) - 1)

    def _run(self, inputs, params, rids, cached, return_logprob, logprob_start_len) -> list[dict[str, Any]]:
        groups, positions = [], []
        for i, (ids, p) in enumerate(zip(inputs, params)):
            if p.get("max_new_tokens", 128) == 0:
                continue
            sampling = SamplingParams(
                temperature=float(p.get("temperature", 1.0)),
                top_p=float(p.get("top_p", 1.0)),
                top_k=int(p.get("top_k", -1)),
                max_new_tokens=int(p.get("max_new_tokens", 128)),
                stop_token_ids=tuple(p.get("stop_token_ids") or ()),
            )
            groups.append(GroupRequest(tuple(ids), (int(p.get("sampling_seed", 42)),), sampling))
            positions.append(i)
        generated = dict(zip(positions, self.engine.generate(groups))) if groups else {}
        outputs = []
        for i, (ids, rid) in enumerate(zip(inputs, rids)):
            # Prompt log-probs stop the radix match at logprob_start_len, as in SGLang.
            hit = cached[i]
            if return_logprob and logprob_start_len not in (None, -1):
                hit = min(hit, int(logprob_start_len))
            meta: dict[str, Any] = {
                "id": rid,
                "prompt_tokens": len(ids),
                "cached_tokens": hit,
                "weight_version": self.weight_version,
            }
            if i in generated:
                sample = generated[i].samples[0]
                out_ids = list(sample.token_ids)
                meta["finish_reason"] = (
                    {"type": "stop", "matched": out_ids[-1]}
                    if sample.finish_reason == "stop"
                    else {"type": "length", "length": len(out_ids)}
                )
                if return_logprob:
                    meta["output_token_logprobs"] = [[lp, t, None] for lp, t in zip(sample.logprobs, out_ids)]
            else:
                out_ids = []
                meta["finish_reason"] = {"type": "length", "length": 0}
                if return_logprob:
                    meta["output_token_logprobs"] = []
            meta["completion_tokens"] = len(out_ids)
            outputs.append({"output_ids": out_ids, "meta_info": meta})
        return outputs

    # control endpoints -------------------------------------------------------------------------

    def flush_cache(self) -> bool:
        with self._lock:
            self.calls.append(("flush_cache", None))
            if self.in_flight:
                return False  # SGLang refuses to flush while requests run
            if self.refuse_flushes > 0:
                self.refuse_flushes -= 1
                return False
            self.cache.clear()
            return True

    def pause(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(("pause_generation", body))
            self.paused = True

    def resume(self) -> None:
        with self._lock:
            self.calls.append(("continue_generation", None))
            self.paused = False

    def begin_weight_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("begin_weight_update", body))
            if self.session_open:
                return {"success": False, "message": "a weight-update session is already open"}
            self.session_open = True
            return {"success": True, "message": "Success"}

    def end_weight_update(self) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("end_weight_update", None))
            if not self.session_open:
                return {"success": False, "message": "no weight-update session is open"}
            self.session_open = False
            return {"success": True, "message": "Success"}

    def update_weights_from_tensor(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("update_weights_from_tensor", body))
            if not self.session_open:
                return {
                    "success": False,
                    "message": "update_weights_from_tensor must run between begin_weight_update() and end_weight_update()",
                }
        payloads = body["serialized_named_tensors"]
        self._install(decode_torch_tensors(payloads[0]), body)
        return {"success": True, "message": "Success"}

    def update_weights_from_disk(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("update_weights_from_disk", body))
        try:
            pairs = read_checkpoint(body["model_path"])
        except ValueError as exc:
            return {"success": False, "message": str(exc), "num_paused_requests": 0}
        self._install(list(pairs.items()), body)
        return {"success": True, "message": "Succeeded to update model weights.", "num_paused_requests": 0}

    def _install(self, pairs: list[tuple[str, torch.Tensor]], body: dict[str, Any]) -> None:
        self.engine.update_weights(pairs, self.engine.weight_version + 1)
        with self._lock:
            if body.get("weight_version") is not None:
                self.weight_version = str(body["weight_version"])
            if body.get("flush_cache", True):
                self.cache.clear()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._dispatch(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        self._dispatch(body)

    def _dispatch(self, body: dict[str, Any] | None) -> None:
        path = self.path.split("?")[0]
        if self.server.dead:  # accepted just before the listening socket closed
            self._drop()
            return
        fault = self.server.next_fault(path)
        if fault == "drop":
            self._drop()
            return
        if fault == "die":
            self._drop()
            self.server.die()
            return
        if fault in ("500", "503", "429", "400"):
            # A 429 says when to come back, as rate-limited APIs do.
            extra = {"Retry-After": "0"} if fault == "429" else {}
            self._send(int(fault), {"error": {"message": f"injected {fault}"}}, extra)
            return
        try:
            status, answer = self.server.route(path, body or {})
        except RequestRejected as exc:
            status, answer = exc.status, {"error": {"message": str(exc)}}
        except Exception as exc:  # a bug in the stand-in: answer 500 and keep it for the test
            self.server.errors.append(exc)
            status, answer = 500, {"error": {"message": repr(exc)}}
        if fault == "abort" and status == 200:
            # As when a pause in "abort" mode cuts the requests: valid outputs, finish type abort.
            for item in answer if isinstance(answer, list) else [answer]:
                item["meta_info"]["finish_reason"] = {"type": "abort", "message": "Abort before prefill"}
            self._send(status, answer)
        elif fault == "drop_after":
            self._drop()
        elif fault == "not_json":
            self._send_raw(200, b'{"output_ids": [1, 2', "application/json")
        elif fault == "bad_fields":
            self._send(200, {"output_ids": [1], "text": "no meta_info here"})
        else:
            self._send(status, answer)

    def _send(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(answer, str):
            self._send_raw(status, answer.encode(), "text/plain", headers)
        else:
            self._send_raw(status, json.dumps(answer).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        # The connection closes with no status line: the client sees RemoteDisconnected.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, route: Callable[[str, dict], tuple[int, Any]], faults: FaultPlan | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.route = route
        self.faults = faults
        self.counts: dict[str, int] = {}
        self.errors: list[Exception] = []
        self.dead = False
        self._count_lock = threading.Lock()

    def next_fault(self, path: str) -> str | None:
        with self._count_lock:
            n = self.counts.get(path, 0)
            self.counts[path] = n + 1
        return self.faults(path, n) if self.faults else None

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are intentional here

    def die(self) -> None:
        """Stop serving and close the listening socket (from another thread: shutdown waits for
        the serving loop, which must not be this handler's caller)."""
        self.dead = True

        def stop() -> None:
            self.shutdown()
            self.server_close()

        threading.Thread(target=stop, daemon=True).start()


class _Running:
    """Serve in a daemon thread; use as a context manager."""

    def __init__(self, route: Callable[[str, dict], tuple[int, Any]], faults: FaultPlan | None) -> None:
        self._server = _Server(route, faults)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def counts(self) -> dict[str, int]:
        """Requests received per path, faulted ones included."""
        return self._server.counts

    @property
    def errors(self) -> list[Exception]:
        """Exceptions raised inside the stand-in itself (should stay empty)."""
        return self._server.errors

    def set_faults(self, faults: FaultPlan | None) -> None:
        self._server.faults = faults
        self._server.counts.clear()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._server.dead:
            self._server.shutdown()
            self._server.server_close()
        self._thread.join(timeout=5)


class StandInSGLangServer(_Running):
    def __init__(self, runtime: FakeSGLangRuntime, faults: FaultPlan | None = None) -> None:
        self.runtime = runtime
        super().__init__(self._route, faults)

    def _route(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        rt = self.runtime
        if path == "/generate":
            return 200, rt.generate(body)
        if path == "/health":
            return 200, ""
        if path == "/flush_cache":
            ok = rt.flush_cache()
            return (200, "Cache flushed.\n") if ok else (400, "Flush cache failed: requests are running.\n")
        if path == "/pause_generation":
            rt.pause(body)
            return 200, {"message": "Generation paused successfully.", "status": "ok"}
        if path == "/continue_generation":
            rt.resume()
            return 200, {"message": "Generation continued successfully.", "status": "ok"}
        if path == "/begin_weight_update":
            answer = rt.begin_weight_update(body)
        elif path == "/end_weight_update":
            answer = rt.end_weight_update()
        elif path == "/update_weights_from_tensor":
            answer = rt.update_weights_from_tensor(body)
        elif path == "/update_weights_from_disk":
            answer = rt.update_weights_from_disk(body)
        else:
            return 404, {"error": {"message": f"no route {path}"}}
        return (200 if answer["success"] else 400), answer


class FakeSGLangModule(types.ModuleType):
    """Stands in for the ``sglang`` package: ``sglang.Engine(model_path=..., **server_args)``
    loads the model with transformers (fp32, CPU) and answers like ``sglang.Engine``."""

    def __init__(self) -> None:
        super().__init__("sglang")
        self.engines: list[Any] = []
        module = self

        class Engine:
            def __init__(self, model_path: str, **server_args: Any) -> None:
                from transformers import AutoModelForCausalLM

                self.server_args = server_args
                model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
                self.runtime = FakeSGLangRuntime(TransformersEngine(model))
                self.closed = False
                module.engines.append(self)

            def generate(self, **kwargs: Any) -> Any:
                return self.runtime.generate(kwargs)

            def flush_cache(self) -> Any:
                return types.SimpleNamespace(success=self.runtime.flush_cache(), message="")

            def begin_weight_update(self, selector: str = "all") -> tuple[bool, str]:
                a = self.runtime.begin_weight_update({"selector": selector})
                return a["success"], a["message"]

            def end_weight_update(self) -> tuple[bool, str]:
                a = self.runtime.end_weight_update()
                return a["success"], a["message"]

            def update_weights_from_tensor(self, named_tensors, load_format=None, flush_cache=True) -> tuple[bool, str]:
                a = self.runtime.update_weights_from_tensor(
                    {
                        "serialized_named_tensors": [encode_torch_tensors(list(named_tensors))],
                        "flush_cache": flush_cache,
                    }
                )
                return a["success"], a["message"]

            def update_weights_from_disk(self, model_path: str, load_format=None) -> tuple[bool, str, int]:
                a = self.runtime.update_weights_from_disk({"model_path": model_path})
                return a["success"], a["message"], a["num_paused_requests"]

            def shutdown(self) -> None:
                self.closed = True

        self.Engine = Engine


class StandInChatServer(_Running):
    """OpenAI-compatible chat completions; answers ``<model>|<last message>|t=<temperature>``."""

    def __init__(self, faults: FaultPlan | None = None, api_key: str | None = None, delay: float = 0.0) -> None:
        self.api_key = api_key
        self.delay = delay
        self.bodies: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0  # most chat requests served at the same time
        self._lock = threading.Lock()
        super().__init__(self._route, faults)
        self._server.RequestHandlerClass = self._with_auth_check()

    def _with_auth_check(self) -> type[_Handler]:
        outer = self

        class Handler(_Handler):
            def _dispatch(self, body):
                if outer.api_key is not None and self.headers.get("Authorization") != f"Bearer {outer.api_key}":
                    self._send(401, {"error": {"message": "bad api key"}})
                    return
                super()._dispatch(body)

        return Handler

    @property
    def completions(self) -> int:
        """Chat requests that reached the model (faults excluded)."""
        return len(self.bodies)

    def _route(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, {"error": {"message": "messages must be a non-empty list"}}
        with self._lock:
            self.bodies.append(body)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        content = f"{body.get('model')}|{messages[-1]['content']}|t={body.get('temperature')}"
        return 200, {
            "id": f"chatcmpl-{len(self.bodies)}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


class StandInVLLMServer(_Running):
    """The subset of a vLLM 0.32.0 OpenAI-compatible server (dev mode) that ``VLLMHTTPEngine`` uses:
    ``/v1/completions`` with token-id prompts (one sample per request, sampled by a
    ``TransformersEngine`` with the request's seed), a whole-block prefix cache whose hits are
    reported in ``usage.prompt_tokens_details.cached_tokens``, ``/reset_prefix_cache`` (can be told
    to refuse), ``/collective_rpc`` ``reload_weights`` from a folder, ``/health``."""

    def __init__(self, engine: TransformersEngine, *, block_size: int = 4, faults: FaultPlan | None = None) -> None:
        self.engine = engine
        self.block_size = block_size
        self.blocks: set[tuple[int, ...]] = set()  # cached whole-block prefixes
        self.refuse_resets = 0
        self.calls: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        super().__init__(self._route, faults)

    def _route(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/health":
            return 200, ""
        with self._lock:
            self.calls.append((path, body))
        if path == "/v1/completions":
            return 200, self._complete(body)
        if path == "/reset_prefix_cache":
            with self._lock:
                if self.refuse_resets > 0:
                    self.refuse_resets -= 1
                    return 200, {"success": False}
                self.blocks.clear()
            return 200, {"success": True}
        if path == "/collective_rpc":
            if body.get("method") != "reload_weights":
                return 400, {"error": {"message": f"unknown method {body.get('method')!r}"}}
            pairs = read_checkpoint(body["kwargs"]["weights_path"])
            self.engine.update_weights(list(pairs.items()), self.engine.weight_version + 1)
            return 200, {"results": [None]}
        return 404, {"error": {"message": f"no route {path}"}}

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = tuple(body["prompt"])
        if body.get("top_k", 0) not in (0, -1) or body.get("top_p", 1.0) != 1.0 or body.get("logprobs") != 0:
            raise RequestRejected(400, "the stand-in serves top_k=0, top_p=1, logprobs=0 only")
        sampling = SamplingParams(
            temperature=float(body["temperature"]),
            max_new_tokens=int(body["max_tokens"]),
            stop_token_ids=tuple(body.get("stop_token_ids") or ()),
        )
        b = self.block_size
        with self._lock:
            hittable = (len(prompt) - 1) // b
            hit = 0
            while hit < hittable and prompt[: (hit + 1) * b] in self.blocks:
                hit += 1
            self.blocks.update(prompt[: (k + 1) * b] for k in range(len(prompt) // b))
        sample = self.engine.generate([GroupRequest(prompt, (int(body["seed"]),), sampling)])[0].samples[0]
        tokens = list(sample.token_ids)
        return {
            "object": "text_completion",
            "choices": [
                {
                    "index": 0,
                    "text": "",
                    "token_ids": tokens,
                    "finish_reason": sample.finish_reason,
                    "logprobs": {"token_logprobs": list(sample.logprobs), "tokens": [f"token_id:{t}" for t in tokens]},
                }
            ],
            "usage": {
                "prompt_tokens": len(prompt),
                "completion_tokens": len(tokens),
                "prompt_tokens_details": {"cached_tokens": hit * b},
            },
        }
