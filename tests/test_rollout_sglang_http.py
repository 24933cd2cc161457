"""SGLangHTTPEngine against a local stand-in SGLang server (tests/standin_servers.py): same samples
as the Transformers engine, retries without loss or duplication, clear errors, weight sync."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from rollout_models import random_ids, tiny_qwen2
from standin_servers import FakeSGLangRuntime, StandInSGLangServer, encode_torch_tensors

from fastcomt.http_retry import HTTPStatusError, MalformedResponseError, RetriesExhaustedError
from fastcomt.rollout import (
    CacheFlushError,
    GenerationAbortedError,
    GroupRequest,
    SamplingParams,
    ServerDiedError,
    SGLangHTTPEngine,
    TransformersEngine,
    rollout_totals,
)

# On an empty radix cache, by hand: the shared prompt (14) and each plan (4, 7) once, the other
# problem's prefix (9) once, plus the last prompt token that each of the 8 siblings recomputes.
FRESH_PREFILL = 14 + 4 + 7 + 9 + 8
SAMPLING = SamplingParams(temperature=0.9, top_p=0.9, top_k=40, max_new_tokens=6, stop_token_ids=(3, 17))


def _groups() -> list[GroupRequest]:
    prompt = random_ids(14, 1)
    groups = [
        GroupRequest.from_parts(
            prompt,
            random_ids(n, 20 + n),
            seeds=[10 * n + j for j in range(3)],
            sampling=SAMPLING,
            affinity_key="p1",
            request_id=f"p1-plan{n}",
        )
        for n in (4, 7)
    ]
    groups.append(GroupRequest(random_ids(9, 2), (5, 6), SAMPLING, affinity_key="p2", request_id="p2-plan0"))
    return groups


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2()


@pytest.fixture(scope="module")
def reference(model):
    return TransformersEngine(model).generate(_groups())


@pytest.fixture
def server(model):
    # A private copy: weight-update tests write into the server's model.
    runtime = FakeSGLangRuntime(TransformersEngine(copy.deepcopy(model)))
    with StandInSGLangServer(runtime) as srv:
        yield srv
    assert not srv.errors, srv.errors


def _engine(urls, **kwargs) -> SGLangHTTPEngine:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("timeout", 30)
    return SGLangHTTPEngine(urls, **kwargs)


def _assert_same_samples(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.request == e.request
        assert [s.seed for s in g.samples] == list(g.request.seeds)
        assert [s.token_ids for s in g.samples] == [s.token_ids for s in e.samples]
        assert [s.finish_reason for s in g.samples] == [s.finish_reason for s in e.samples]
        for sg, se in zip(g.samples, e.samples):
            assert torch.allclose(torch.tensor(sg.logprobs), torch.tensor(se.logprobs), atol=1e-5)


def test_http_samples_equal_transformers_samples(server, reference):
    with _engine(server.url) as engine:
        got = engine.generate(_groups())
    _assert_same_samples(got, reference)
    calls = [body for op, body in server.runtime.calls if op == "generate"]
    primes = [b for b in calls if not isinstance(b["input_ids"][0], list)]
    siblings = [b for b in calls if isinstance(b["input_ids"][0], list)]
    assert len(primes) == 3 and all(b["sampling_params"]["max_new_tokens"] == 0 for b in primes)
    for b in siblings:
        assert b["return_logprob"] is True and b["logprob_start_len"] == -1
        assert len({s["sampling_seed"] for s in b["sampling_params"]}) == len(b["input_ids"])
        assert all(s["no_stop_trim"] and s["stop_token_ids"] == [3, 17] for s in b["sampling_params"])
    # Primed siblings hit the radix cache for all but the last prompt token (SGLang recomputes
    # it); the priming request's work is charged to the siblings.
    assert rollout_totals(got)["prefill_tokens"] == FRESH_PREFILL


def test_retries_through_503_and_dropped_connections_lose_nothing(server, reference):
    faults = {0: "503", 1: "drop", 3: "drop_after", 4: "503", 6: "drop_after"}
    server.set_faults(lambda path, n: faults.get(n) if path == "/generate" else None)
    with _engine(server.url, max_concurrency=3) as engine:
        got = engine.generate(_groups())
    _assert_same_samples(got, reference)
    seen = server.runtime.seen_rids
    assert len(seen) == len(set(seen)), "every attempt must carry fresh request ids"
    # Besides the 3 primes + 8 siblings that were answered, the server did the work of the two
    # requests whose answers were dropped ("drop_after"): redone under new ids, never returned twice.
    assert len(seen) >= 3 + 8 + 2


def test_aborted_groups_are_resampled(server, reference):
    server.set_faults(lambda path, n: "abort" if path == "/generate" and n in (1, 2) else None)
    with _engine(server.url, max_concurrency=1) as engine:
        got = engine.generate(_groups())
    _assert_same_samples(got, reference)


@pytest.mark.parametrize("fault", ["not_json", "bad_fields"])
def test_malformed_response_is_a_clear_error_without_retry(server, fault):
    server.set_faults(lambda path, n: fault if path == "/generate" else None)
    with _engine(server.url) as engine, pytest.raises(MalformedResponseError, match="not JSON|meta_info"):
        engine.generate(_groups()[:1])
    assert server.counts["/generate"] == 1


def test_client_error_is_raised_at_once(server):
    server.set_faults(lambda path, n: "400" if path == "/generate" else None)
    with _engine(server.url) as engine, pytest.raises(HTTPStatusError) as info:
        engine.generate(_groups()[:1])
    assert info.value.status == 400 and server.counts["/generate"] == 1


def test_persistent_server_errors_exhaust_the_retries(server):
    server.set_faults(lambda path, n: "503")
    with _engine(server.url, max_retries=2) as engine, pytest.raises(RetriesExhaustedError, match="failed 3 times"):
        engine.generate(_groups()[:1])
    assert server.counts["/generate"] == 3


def test_unreachable_server_is_retried_then_reported():
    with (
        _engine("http://127.0.0.1:9", max_retries=1, timeout=2) as engine,
        pytest.raises(RetriesExhaustedError, match="failed 2 times"),
    ):
        engine.generate(_groups()[:1])


def test_weight_update_from_disk_then_flush(server, tmp_path):
    new = tiny_qwen2(seed=1)
    new.save_pretrained(tmp_path / "step3")
    expected = TransformersEngine(new, weight_version=3).generate(_groups())
    with _engine(server.url) as engine:
        engine.generate(_groups())
        assert server.runtime.cache
        server.runtime.calls.clear()
        engine.update_weights(tmp_path / "step3", version=3)
        ops = [op for op, _ in server.runtime.calls]
        assert ops == ["pause_generation", "update_weights_from_disk", "flush_cache", "continue_generation"]
        body = server.runtime.calls[1][1]
        assert body["model_path"] == str(tmp_path / "step3") and body["weight_version"] == "3"
        assert not server.runtime.cache and server.runtime.weight_version == "3"
        got = engine.generate(_groups())
    _assert_same_samples(got, expected)
    assert {s.weight_version for r in got for s in r.samples} == {3}
    # The prefix cache was flushed, so every prefix was computed again.
    assert rollout_totals(got)["prefill_tokens"] == FRESH_PREFILL


def test_weight_update_from_tensors_runs_inside_a_session(server):
    new = tiny_qwen2(seed=2)
    expected = TransformersEngine(new).generate(_groups())
    with _engine(server.url, tensor_serializer=encode_torch_tensors, tp_size=2) as engine:
        server.runtime.calls.clear()
        engine.update_weights(new.state_dict(), version=1)
        ops = [op for op, _ in server.runtime.calls]
        assert ops == [
            "pause_generation",
            "begin_weight_update",
            "update_weights_from_tensor",
            "end_weight_update",
            "flush_cache",
            "continue_generation",
        ]
        body = dict(server.runtime.calls)["update_weights_from_tensor"]
        assert (
            len(body["serialized_named_tensors"]) == 2 and body["weight_version"] == "1" and body["flush_cache"] is True
        )
        got = engine.generate(_groups())
    _assert_same_samples(got, expected)
    assert not server.runtime.session_open


def test_failed_update_closes_the_session_and_resumes(server):
    server.set_faults(lambda path, n: "400" if path == "/update_weights_from_tensor" else None)
    with _engine(server.url, tensor_serializer=encode_torch_tensors) as engine:
        with pytest.raises(HTTPStatusError):
            engine.update_weights(tiny_qwen2(seed=2).state_dict(), version=1)
        assert engine.weight_version == 0
    ops = [op for op, _ in server.runtime.calls]
    assert ops[-2:] == ["end_weight_update", "continue_generation"] and not server.runtime.session_open


def test_foreign_weight_change_is_detected(server, tmp_path):
    tiny_qwen2(seed=1).save_pretrained(tmp_path / "w")
    with _engine(server.url) as engine:
        engine.update_weights(tmp_path / "w", version=4)
        server.runtime.weight_version = "9"  # someone else pushed weights
        with pytest.raises(RuntimeError, match="weight version '9', expected '4'"):
            engine.generate(_groups()[:1])


def test_groups_of_one_problem_share_a_server(model, reference):
    runtimes = [FakeSGLangRuntime(TransformersEngine(copy.deepcopy(model))) for _ in range(3)]
    with (
        StandInSGLangServer(runtimes[0]) as a,
        StandInSGLangServer(runtimes[1]) as b,
        StandInSGLangServer(runtimes[2]) as c,
    ):
        with _engine([a.url, b.url, c.url]) as engine:
            got = engine.generate(_groups())
            homes = {g.affinity_key: engine.server_for(g) for g in _groups()}
    _assert_same_samples(got, reference)
    for runtime, url in zip(runtimes, (a.url, b.url, c.url)):
        problems = {r.split("-")[0] for r in runtime.seen_rids}
        assert problems == {k for k, home in homes.items() if home == url}


def test_flush_cache_and_closed_engine(server):
    with _engine(server.url) as engine:
        engine.generate(_groups()[:1])
        assert server.runtime.cache
        engine.flush_cache()
        assert not server.runtime.cache
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate(_groups()[:1])


def test_constructor_validation():
    with pytest.raises(ValueError, match="base_urls"):
        SGLangHTTPEngine("localhost:30000")
    with pytest.raises(ValueError, match="pause_mode"):
        SGLangHTTPEngine("http://127.0.0.1:1", pause_mode="stop")
    with pytest.raises(ValueError, match="max_concurrency"):
        SGLangHTTPEngine("http://127.0.0.1:1", max_concurrency=0)


def test_a_group_aborted_every_time_is_reported(server):
    server.set_faults(lambda path, n: "abort" if path == "/generate" else None)
    with _engine(server.url, max_retries=1) as engine, pytest.raises(GenerationAbortedError, match="aborted 2 times"):
        engine.generate(_groups()[:1])


def test_a_refused_flush_is_asked_again_until_it_succeeds(server, tmp_path):
    # SGLang can answer "not flushed" right after a request returns; the old KV would then be served.
    tiny_qwen2(seed=1).save_pretrained(tmp_path / "w")
    with _engine(server.url) as engine:
        engine.generate(_groups()[:1])
        server.runtime.refuse_flushes = 2
        server.runtime.calls.clear()
        engine.update_weights(tmp_path / "w", version=1)
        ops = [op for op, _ in server.runtime.calls]
        assert ops == [
            "pause_generation",
            "update_weights_from_disk",
            "flush_cache",
            "flush_cache",
            "flush_cache",
            "continue_generation",
        ]
        assert not server.runtime.cache and engine.weight_version == 1


def test_a_flush_refused_every_time_is_a_clear_error(server):
    with _engine(server.url) as engine:
        engine.generate(_groups()[:1])
        server.runtime.refuse_flushes = 1000
        with pytest.raises(CacheFlushError, match=r"/flush_cache: the prefix cache was not flushed after 10 attempts"):
            engine.flush_cache()
        assert server.runtime.cache  # nothing was flushed, and the caller knows it


@pytest.mark.parametrize("endpoint", ["/update_weights_from_disk", "/flush_cache"])
def test_a_server_that_dies_during_a_weight_push_is_a_clear_error(server, tmp_path, endpoint):
    tiny_qwen2(seed=1).save_pretrained(tmp_path / "w")
    server.set_faults(lambda path, n: "die" if path == endpoint else None)
    with _engine(server.url, timeout=5) as engine:
        start = time.monotonic()
        with pytest.raises(
            ServerDiedError, match=r"died during the weight update to version 1: it no longer answers /health"
        ):
            engine.update_weights(tmp_path / "w", version=1)
        assert time.monotonic() - start < 20  # retries are bounded: an error, not a hang
        assert engine.weight_version == 0
