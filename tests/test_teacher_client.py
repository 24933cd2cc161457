"""TeacherClient against a local OpenAI-compatible stand-in: disk cache, retries, errors, limits."""

from __future__ import annotations

import json

import pytest
from standin_servers import StandInChatServer

from fastcomt.comt.teacher_client import TeacherClient
from fastcomt.http_retry import HTTPStatusError, MalformedResponseError, RetriesExhaustedError


def _msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Write an abstract plan."}, {"role": "user", "content": text}]


def _client(server, tmp_path, **kwargs) -> TeacherClient:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("timeout", 10)
    return TeacherClient(server.url, "teacher-7b", cache_dir=tmp_path / "cache", **kwargs)


@pytest.fixture
def server():
    with StandInChatServer() as srv:
        yield srv
    assert not srv.errors, srv.errors


def test_answers_in_order_and_cache_hits_never_reach_the_server(server, tmp_path):
    client = _client(server, tmp_path)
    prompts = [_msgs(f"q{i}") for i in range(5)] + [_msgs("q1")]  # one duplicate
    answers = client.complete_many(prompts, temperature=0.2)
    assert answers == [f"teacher-7b|q{i}|t=0.2" for i in (0, 1, 2, 3, 4, 1)]
    assert server.completions == 5 and client.stats.requests == 5
    assert client.complete(_msgs("q3"), temperature=0.2) == "teacher-7b|q3|t=0.2"
    assert server.completions == 5
    # Other parameters are another request.
    assert client.complete(_msgs("q3"), temperature=0.9) == "teacher-7b|q3|t=0.9"
    assert server.completions == 6
    sent = sorted(b["messages"][-1]["content"] for b in server.bodies[:5])
    assert sent == ["q0", "q1", "q2", "q3", "q4"] and all(b["model"] == "teacher-7b" for b in server.bodies)
    assert all(b["messages"][0] == {"role": "system", "content": "Write an abstract plan."} for b in server.bodies)


def test_a_rerun_resumes_from_disk_without_paying_again(server, tmp_path):
    prompts = [_msgs(f"q{i}") for i in range(4)]
    first = _client(server, tmp_path).complete_many(prompts[:3], seed=1)
    assert server.completions == 3
    rerun = _client(server, tmp_path)  # a new process after a crash, same cache_dir
    assert rerun.complete_many(prompts, seed=1)[:3] == first
    assert server.completions == 4 and rerun.stats.cache_hits == 3
    entries = list((tmp_path / "cache").rglob("*.json"))
    assert len(entries) == 4 and not list((tmp_path / "cache").rglob("*.tmp"))
    entry = json.loads(entries[0].read_text())
    assert set(entry) == {"request", "content", "response"}


def test_corrupt_cache_entry_is_asked_again(server, tmp_path):
    client = _client(server, tmp_path)
    client.complete(_msgs("q"))
    path = next((tmp_path / "cache").rglob("*.json"))
    path.write_text('{"request": {"model": "teacher-7b", "mess')  # torn write from another tool
    assert _client(server, tmp_path).complete(_msgs("q")) == "teacher-7b|q|t=None"
    assert server.completions == 2 and json.loads(path.read_text())["content"] == "teacher-7b|q|t=None"


def test_retries_on_500_429_and_dropped_connections(tmp_path):
    plan = {0: "500", 1: "429", 2: "drop"}
    with StandInChatServer(faults=lambda path, n: plan.get(n)) as srv:
        assert _client(srv, tmp_path).complete(_msgs("q")) == "teacher-7b|q|t=None"
        assert srv.counts["/v1/chat/completions"] == 4 and srv.completions == 1


def test_client_errors_are_not_retried(tmp_path):
    with StandInChatServer(faults=lambda path, n: "400") as srv:
        with pytest.raises(HTTPStatusError) as info:
            _client(srv, tmp_path).complete(_msgs("q"))
        assert info.value.status == 400 and srv.counts["/v1/chat/completions"] == 1


def test_retries_run_out(tmp_path):
    with StandInChatServer(faults=lambda path, n: "503") as srv:
        with pytest.raises(RetriesExhaustedError):
            _client(srv, tmp_path, max_retries=2).complete(_msgs("q"))
        assert srv.counts["/v1/chat/completions"] == 3
        assert not list((tmp_path / "cache").rglob("*.json"))


def test_api_key_comes_from_the_environment(tmp_path, monkeypatch):
    with StandInChatServer(api_key="sk-test") as srv:
        monkeypatch.setenv("TEACHER_KEY", "sk-test")
        assert _client(srv, tmp_path, api_key_env="TEACHER_KEY").complete(_msgs("q")).startswith("teacher-7b|q")
        monkeypatch.setenv("TEACHER_KEY", "wrong")
        with pytest.raises(HTTPStatusError) as info:
            _client(srv, tmp_path / "other", api_key_env="TEACHER_KEY").complete(_msgs("q"))
        assert info.value.status == 401


def test_concurrency_is_bounded(tmp_path):
    with StandInChatServer(delay=0.25) as srv:
        client = _client(srv, tmp_path, max_concurrency=2)
        client.complete_many([_msgs(f"q{i}") for i in range(6)])
        assert srv.max_active == 2


def test_malformed_answers_raise(tmp_path):
    with StandInChatServer(faults=lambda path, n: "not_json") as srv:
        with pytest.raises(MalformedResponseError, match="not JSON"):
            _client(srv, tmp_path).complete(_msgs("q"))
    with StandInChatServer(faults=lambda path, n: "bad_fields") as srv:
        with pytest.raises(MalformedResponseError, match="choices"):
            _client(srv, tmp_path).complete(_msgs("q"))


def test_base_url_forms_and_validation(server, tmp_path):
    assert (
        TeacherClient("https://api.example.com/v1", "m", cache_dir=tmp_path).url
        == "https://api.example.com/v1/chat/completions"
    )
    assert TeacherClient("http://h:8000/", "m", cache_dir=tmp_path).url == "http://h:8000/v1/chat/completions"
    assert _client(server, tmp_path, max_concurrency=1).complete(_msgs("x"), max_tokens=5).startswith("teacher-7b|x")
    client = _client(server, tmp_path)
    with pytest.raises(TypeError, match=r"messages\[0\]"):
        client.complete([{"role": "user"}])
    with pytest.raises(ValueError, match="params: expected none of"):
        client.complete(_msgs("q"), stream=True)
    with pytest.raises(TypeError, match="JSON"):
        client.complete(_msgs("q"), temperature=object())
    with pytest.raises(ValueError, match="base_url"):
        TeacherClient("api.example.com", "m", cache_dir=tmp_path)


def test_backoff_doubles_and_honours_retry_after(tmp_path):
    from fastcomt.http_retry import RetryPolicy, request_json

    policy = RetryPolicy(max_retries=3, backoff_base=0.2, backoff_max=0.5)
    waits: list[float] = []
    plan = {0: "503", 1: "503", 2: "429"}
    with StandInChatServer(faults=lambda path, n: plan.get(n)) as srv:
        body = {"model": "m", "messages": _msgs("q")}
        answer = request_json(
            "POST", srv.url + "/v1/chat/completions", body, timeout=5, policy=policy, sleep=waits.append
        )
    assert answer["choices"][0]["message"]["content"] == "m|q|t=None"
    # Jittered exponential backoff (0.2, then 0.4, each times [0.5, 1]), then the server's Retry-After: 0.
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.4 and waits[2] == 0.0
    assert RetryPolicy(backoff_base=1.0, backoff_max=3.0).delay(10) <= 3.0
