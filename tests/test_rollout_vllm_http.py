"""VLLMHTTPEngine against a local stand-in vLLM server (tests/standin_servers.py), and the lazy-import
contract of the vLLM engines. Runs without vllm; the real server is tested in
test_rollout_vllm_http_real.py (`make test-vllm`)."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from rollout_models import random_ids, tiny_qwen2
from standin_servers import StandInVLLMServer

from fastcomt.http_retry import MalformedResponseError
from fastcomt.rollout import (
    CacheFlushError,
    GroupRequest,
    SamplingParams,
    ServerDiedError,
    TransformersEngine,
    VLLMEngine,
    VLLMHTTPEngine,
)

SAMPLING = SamplingParams(temperature=0.9, max_new_tokens=6, stop_token_ids=(3, 17))


def _groups() -> list[GroupRequest]:
    prompt = random_ids(14, 1)
    return [
        GroupRequest.from_parts(
            prompt, random_ids(n, 20 + n), seeds=[10 * n + j for j in range(3)], sampling=SAMPLING, affinity_key="p1"
        )
        for n in (4, 7)
    ] + [GroupRequest(random_ids(9, 2), (5, 6), SAMPLING, affinity_key="p2")]


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2()


@pytest.fixture
def server(model):
    with StandInVLLMServer(TransformersEngine(copy.deepcopy(model))) as srv:
        yield srv
    assert not srv.errors, srv.errors


def _engine(urls, **kwargs) -> VLLMHTTPEngine:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("timeout", 30)
    return VLLMHTTPEngine(urls, **kwargs)


def _same(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.request == e.request and [s.seed for s in g.samples] == list(g.request.seeds)
        assert [(s.token_ids, s.finish_reason) for s in g.samples] == [
            (s.token_ids, s.finish_reason) for s in e.samples
        ]
        for sg, se in zip(g.samples, e.samples):
            torch.testing.assert_close(torch.tensor(sg.logprobs), torch.tensor(se.logprobs), atol=1e-5, rtol=0)


def test_samples_equal_the_transformers_engine_and_cache_hits_are_read_back(server, model):
    with _engine(server.url) as engine:
        got = engine.generate(_groups())
    _same(got, TransformersEngine(model).generate(_groups()))
    bodies = [b for p, b in server.calls if p == "/v1/completions"]
    assert len(bodies) == 8 and sorted(b["seed"] for b in bodies) == sorted(s for g in _groups() for s in g.seeds)
    assert all(
        b["logprobs"] == 0 and b["ignore_eos"] and b["return_token_ids"] and b["stop_token_ids"] == [3, 17]
        for b in bodies
    )
    # Whole blocks of 4; prefixes of 18, 21 and 9 tokens (the last token is always computed) can be
    # served 4, 5 and 2 blocks per request. Whatever the arrival order, each distinct block is
    # computed once: the plans share 3 blocks of the 14-token prompt and own 1 and 2 more, p2 has 2.
    # So (4*3 + 5*3 + 2*2) - (3 + 1 + 2 + 2) blocks are served from the cache.
    assert sum(r.cached_tokens for r in got) == 4 * ((12 + 15 + 4) - 8)


def test_weight_update_from_tensors_reloads_then_flushes(server, model):
    new = tiny_qwen2(seed=2)
    with _engine(server.url) as engine:
        engine.generate(_groups())
        server.calls.clear()
        engine.update_weights(new.state_dict(), version=4)
        assert [p for p, _ in server.calls] == ["/collective_rpc", "/reset_prefix_cache"]
        assert server.calls[0][1]["kwargs"]["weights_path"].startswith("/") and not server.blocks
        got = engine.generate(_groups())
    _same(got, TransformersEngine(new).generate(_groups()))
    assert {s.weight_version for r in got for s in r.samples} == {4}


def test_a_refused_reset_is_asked_again(server, tmp_path):
    tiny_qwen2(seed=1).save_pretrained(tmp_path / "w")
    with _engine(server.url) as engine:
        server.refuse_resets = 2
        engine.update_weights(tmp_path / "w", version=1)
        assert [p for p, _ in server.calls].count("/reset_prefix_cache") == 3 and engine.weight_version == 1
        server.refuse_resets = 1000
        with pytest.raises(
            CacheFlushError, match="reset_prefix_cache: the prefix cache was not flushed after 10 attempts"
        ):
            engine.flush_cache()


def test_a_server_that_dies_during_the_reload_is_a_clear_error(server, tmp_path):
    tiny_qwen2(seed=1).save_pretrained(tmp_path / "w")
    server.set_faults(lambda path, n: "die" if path == "/collective_rpc" else None)
    with _engine(server.url, timeout=5) as engine:
        start = time.monotonic()
        with pytest.raises(ServerDiedError, match="died during the weight update to version 1"):
            engine.update_weights(tmp_path / "w", version=1)
        assert time.monotonic() - start < 20 and engine.weight_version == 0


def test_a_server_without_prompt_tokens_details_is_named(server, monkeypatch):
    real = server._complete

    def without_details(body):
        answer = real(body)
        del answer["usage"]["prompt_tokens_details"]
        return answer

    monkeypatch.setattr(server, "_complete", without_details)
    with _engine(server.url) as engine, pytest.raises(MalformedResponseError, match="--enable-prompt-tokens-details"):
        engine.generate(_groups()[:1])


def test_groups_of_one_problem_share_a_server(model):
    servers = [StandInVLLMServer(TransformersEngine(copy.deepcopy(model))) for _ in range(3)]
    with servers[0] as a, servers[1] as b, servers[2] as c, _engine([a.url, b.url, c.url]) as engine:
        engine.generate(_groups())
        homes = {g.affinity_key: engine.server_for(g) for g in _groups()}
        for srv in (a, b, c):
            prompts = {tuple(body["prompt"][:9]) for p, body in srv.calls if p == "/v1/completions"}
            keys = {g.affinity_key for g in _groups() if tuple(g.prefix_ids[:9]) in prompts}
            assert keys == {k for k, home in homes.items() if home == srv.url}


def test_bad_arguments_and_closed_engine(server):
    with pytest.raises(ValueError, match="base_urls: expected one or more"):
        VLLMHTTPEngine("localhost:8000")
    with pytest.raises(ValueError, match="max_concurrency"):
        VLLMHTTPEngine("http://127.0.0.1:1", max_concurrency=0)
    with _engine(server.url) as engine:
        filtered = GroupRequest((1, 2, 3), (0,), SamplingParams(temperature=1.0, top_k=5))
        with pytest.raises(ValueError, match=r"groups\[0\].sampling: expected top_k=-1 and top_p=1.0"):
            engine.generate([filtered])
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate(_groups()[:1])


def test_importing_the_package_never_imports_vllm():
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "vllm" or name.startswith("vllm."):
                    raise AssertionError("vllm was imported")
        sys.meta_path.insert(0, Block())
        import fastcomt.rollout
        from fastcomt.rollout import VLLMEngine, VLLMHTTPEngine
        import fastcomt.rollout.vllm_server
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_missing_vllm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"make install-vllm"):
        VLLMEngine("some/model")
    with pytest.raises(ValueError, match="logprobs_mode: expected 'processed_logprobs'"):
        VLLMEngine("some/model", logprobs_mode="raw_logprobs")
