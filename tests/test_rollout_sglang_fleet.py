"""SGLangFleetEngine over two stand-in SGLang servers (tests/standin_servers.py): every group of a
prefix on one server, balanced samples, a server killed mid-batch loses and doubles nothing, weights
streamed bucket by bucket to both servers."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from rollout_models import random_ids, tiny_qwen2
from standin_servers import FakeSGLangRuntime, StandInSGLangServer, encode_torch_tensors

from fastcomt.distributed.weight_sync import gathered_buckets
from fastcomt.rollout import GroupRequest, SamplingParams, TransformersEngine
from fastcomt.rollout.sglang_fleet import SGLangFleetEngine
from fastcomt.train.rl import push_weights

SAMPLING = SamplingParams(temperature=0.9, top_p=0.95, max_new_tokens=5)


def _groups() -> list[GroupRequest]:
    """6 problems x 2 plans, 3 executions each: 12 groups under 6 affinity keys."""
    groups = []
    for p in range(6):
        prompt = random_ids(10 + p, 100 + p)
        for plan in range(2):
            groups.append(
                GroupRequest.from_parts(
                    prompt,
                    random_ids(3 + plan, 10 * p + plan),
                    seeds=[1000 * p + 10 * plan + j for j in range(3)],
                    sampling=SAMPLING,
                    affinity_key=f"problem-{p}",
                    request_id=f"p{p}-plan{plan}",
                )
            )
    return groups


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2()


@pytest.fixture(scope="module")
def reference(model):
    return TransformersEngine(model).generate(_groups())


@pytest.fixture
def servers(model):
    a = StandInSGLangServer(FakeSGLangRuntime(TransformersEngine(copy.deepcopy(model))))
    b = StandInSGLangServer(FakeSGLangRuntime(TransformersEngine(copy.deepcopy(model))))
    with a, b:
        yield a, b
    assert not a.errors and not b.errors


def _fleet(servers, **kwargs):
    return SGLangFleetEngine(
        [s.url for s in servers],
        backoff_base=0.01,
        max_retries=2,
        timeout=30,
        tensor_serializer=encode_torch_tensors,
        **kwargs,
    )


def _sampled_rids(server) -> list[str]:
    return [
        rid
        for op, body in server.runtime.calls
        if op == "generate" and isinstance(body["input_ids"][0], list)
        for rid in body["rid"]
    ]


def _assert_same_samples(got, expected):
    assert [g.request.request_id for g in got] == [e.request.request_id for e in expected]
    for g, e in zip(got, expected):
        assert [s.seed for s in g.samples] == list(e.request.seeds)  # each sample once, none lost
        assert [s.token_ids for s in g.samples] == [s.token_ids for s in e.samples]


def test_groups_of_a_prefix_share_a_server_and_servers_are_balanced(servers, reference):
    with _fleet(servers) as fleet:
        got = fleet.generate(_groups())
        load = fleet.samples_per_server
    _assert_same_samples(got, reference)
    where: dict[str, set[str]] = {}
    for server in servers:
        for rid in _sampled_rids(server):
            where.setdefault(rid.split("-plan")[0], set()).add(server.url)
    assert len(where) == 6 and all(len(urls) == 1 for urls in where.values())  # affinity
    per_server = [sum(1 for urls in where.values() if s.url in urls) for s in servers]
    assert per_server == [3, 3]  # 6 problems of 6 samples each: 18 samples per server
    assert sorted(load.values()) == [18, 18]


def test_a_server_killed_mid_batch_loses_and_doubles_nothing(servers, reference):
    doomed, survivor = servers
    killed = threading.Event()

    def kill_on_second_batch(path, n):
        if path == "/generate" and n == 1:  # the first group's siblings are under way: the server dies
            threading.Thread(target=lambda: (doomed._server.shutdown(), doomed._server.server_close())).start()
            killed.set()
            return "drop"
        return None

    doomed.set_faults(kill_on_second_batch)
    with _fleet(servers) as fleet:
        got = fleet.generate(_groups())
        assert fleet.live_servers == [survivor.url]
        # the next call and a weight update go to the survivor alone
        fleet.update_weights_in_buckets(gathered_buckets(tiny_qwen2(seed=3), bucket_bytes=1 << 16), 1)
        again = fleet.generate(_groups()[:2])
    assert killed.is_set()
    _assert_same_samples(got, reference)
    rids = _sampled_rids(survivor)
    assert len(rids) == len(set(rids))  # no request id twice
    assert all(g.samples[0].weight_version == 1 for g in again)


def test_weights_stream_to_both_servers_in_buckets(servers, model):
    new = tiny_qwen2(seed=7)
    with _fleet(servers) as fleet:
        fleet.generate(_groups()[:4])
        push_weights(fleet, new, 3)  # the trainer's sync: buckets of gathered full tensors
        assert fleet.weight_version == 3
        got = fleet.generate(_groups())
    expected = TransformersEngine(new).generate(_groups())
    _assert_same_samples(got, expected)
    for server in servers:
        ops = [op for op, _ in server.runtime.calls]
        start = ops.index("begin_weight_update")
        assert ops[start - 1] == "pause_generation"
        session = ops[start : ops.index("end_weight_update") + 1]
        assert session.count("update_weights_from_tensor") >= 1 and session[-1] == "end_weight_update"
        assert "flush_cache" in ops[ops.index("end_weight_update") :]
        assert server.runtime.weight_version == "3" and server.runtime.cache[-1]  # cache refilled after the flush
        for (_name, p), (_, q) in zip(server.runtime.engine.model.named_parameters(), new.named_parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_buckets_are_bounded(model):
    sizes = [sum(t.numel() * t.element_size() for _, t in b) for b in gathered_buckets(model, bucket_bytes=1 << 16)]
    biggest = max(p.numel() * p.element_size() for p in model.parameters())
    assert len(sizes) > 2 and all(s <= max(1 << 16, biggest) for s in sizes)
    assert sum(sizes) == sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize("sync", ["tensor", "disk"])
def test_rl_run_on_a_fleet_pushes_every_step_to_both_servers(tmp_path, sync):
    """`fastcomt rl` with a fleet: two steps, each followed by a push (version 1, 2) to both servers,
    streamed in buckets (tensor) or written bucket by bucket to a folder the servers load (disk)."""
    from fastcomt.tasks import synthetic_problems
    from fastcomt.tokenizer import train_tokenizer
    from fastcomt.train.models import build_tiny_model, load_pretrained_model
    from fastcomt.train.rl import run_rl
    from fastcomt_recipes.pretrain import tokenizer_texts

    tok = train_tokenizer(
        tokenizer_texts(synthetic_problems(16, seed=5)), kind="number_word", number_max=120, vocab_size=900
    )
    model = build_tiny_model(
        {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64},
        len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model.save_pretrained(tmp_path / "start")
    tok.save_pretrained(tmp_path / "start")
    a = StandInSGLangServer(FakeSGLangRuntime(TransformersEngine(copy.deepcopy(model))))
    b = StandInSGLangServer(FakeSGLangRuntime(TransformersEngine(copy.deepcopy(model))))
    with a, b, _fleet((a, b)) as fleet:
        summary = run_rl(
            {
                "output_dir": str(tmp_path / "run"),
                "model": {"path": str(tmp_path / "start")},
                "steps": 2,
                "data": {"num_problems": 12, "seed": 1},
                "progress": False,
                "rollout": {
                    "problems_per_step": 4,
                    "executions_per_plan": 2,
                    "max_new_tokens": 6,
                    "plan_max_new_tokens": 6,
                    "weight_sync": sync,
                },
                "loss": {"micro_batch_tokens": 64},
            },
            engine=fleet,
        )
    assert summary["steps"] == 2 and fleet.weight_version == 2
    for server in (a, b):
        ops = [op for op, _ in server.runtime.calls]
        assert ops.count("update_weights_from_disk" if sync == "disk" else "end_weight_update") == 2, ops
    if sync == "disk":  # only the newest version's folder is kept
        assert sorted(p.name for p in (tmp_path / "run" / "weight_sync").iterdir()) == ["v00000002"]
    final = dict(load_pretrained_model(str(tmp_path / "run" / "final")).named_parameters())
    for server in (a, b):
        assert server.runtime.weight_version == "2"
        assert any(op == "generate" for op, _ in server.runtime.calls)  # both servers sampled
        for name, p in server.runtime.engine.model.named_parameters():
            torch.testing.assert_close(p, final[name], rtol=0, atol=0)
    assert not a.errors and not b.errors
