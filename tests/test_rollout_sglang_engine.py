"""SGLangEngine (in-process) against a stand-in ``sglang`` package, and the lazy-import contract."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from rollout_models import random_ids, tiny_qwen2
from standin_servers import FakeSGLangModule

from fastcomt.rollout import GroupRequest, SamplingParams, SGLangEngine, TransformersEngine

SAMPLING = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=5, stop_token_ids=(11,))


def _groups() -> list[GroupRequest]:
    prompt = random_ids(12, 3)
    return [
        GroupRequest.from_parts(prompt, random_ids(5, 40), seeds=(1, 2, 3), sampling=SAMPLING, request_id="q1-a"),
        GroupRequest.from_parts(prompt, random_ids(3, 41), seeds=(4, 5), sampling=SAMPLING, request_id="q1-b"),
    ]


@pytest.fixture
def fake_sglang(monkeypatch):
    module = FakeSGLangModule()
    monkeypatch.setitem(sys.modules, "sglang", module)
    return module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "model"
    tiny_qwen2().save_pretrained(path)
    return path


def _same(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert [s.token_ids for s in g.samples] == [s.token_ids for s in e.samples]
        for sg, se in zip(g.samples, e.samples):
            assert torch.allclose(torch.tensor(sg.logprobs), torch.tensor(se.logprobs), atol=1e-5)


def test_importing_the_package_never_imports_sglang():
    # A fresh interpreter in which `import sglang` would fail loudly.
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "sglang" or name.startswith("sglang."):
                    raise AssertionError("sglang was imported")
        sys.meta_path.insert(0, Block())
        import fastcomt.rollout
        from fastcomt.rollout import SGLangEngine, SGLangHTTPEngine
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_missing_sglang_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sglang", None)  # makes `import sglang` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'fastcomt\[sglang\]'"):
        SGLangEngine("some/model")


def test_generate_matches_transformers_and_primes_first(fake_sglang, checkpoint):
    engine = SGLangEngine(str(checkpoint), mem_fraction_static=0.5)
    backend = fake_sglang.engines[0]
    assert backend.server_args == {"mem_fraction_static": 0.5, "skip_tokenizer_init": True}
    got = engine.generate(_groups())
    _same(got, TransformersEngine(tiny_qwen2()).generate(_groups()))
    calls = [body for op, body in backend.runtime.calls if op == "generate"]
    assert len(calls) == 2
    assert all(p["max_new_tokens"] == 0 for p in calls[0]["sampling_params"])
    assert calls[1]["return_logprob"] is True and calls[1]["logprob_start_len"] == -1
    assert calls[1]["rid"] == ["q1-a.s0", "q1-a.s1", "q1-a.s2", "q1-b.s0", "q1-b.s1"]
    assert [s["sampling_seed"] for s in calls[1]["sampling_params"]] == [1, 2, 3, 4, 5]
    # Primed in one batch: both primes miss; each sibling recomputes only the last prefix token.
    assert sum(r.prefill_tokens for r in got) == (12 + 5) + (12 + 3) + 5
    engine.close()
    assert backend.closed
    with pytest.raises(RuntimeError, match="closed"):
        engine.generate(_groups())


def test_tensor_update_runs_in_one_session_then_flushes(fake_sglang, checkpoint):
    engine = SGLangEngine(str(checkpoint), update_bucket_bytes=40_000)
    runtime = fake_sglang.engines[0].runtime
    engine.generate(_groups())
    runtime.calls.clear()
    new = tiny_qwen2(seed=1)
    engine.update_weights(new.state_dict(), version=2)
    ops = [op for op, _ in runtime.calls]
    assert ops[0] == "begin_weight_update" and ops[-2:] == ["end_weight_update", "flush_cache"]
    updates = [body for op, body in runtime.calls if op == "update_weights_from_tensor"]
    assert len(updates) > 1 and not any(b["flush_cache"] for b in updates)  # bucketed, flushed once
    assert not runtime.cache and not runtime.session_open
    got = engine.generate(_groups())
    _same(got, TransformersEngine(new).generate(_groups()))
    assert {s.weight_version for r in got for s in r.samples} == {2}


def test_disk_update_and_failed_session(fake_sglang, checkpoint, tmp_path):
    engine = SGLangEngine(str(checkpoint))
    runtime = fake_sglang.engines[0].runtime
    new = tiny_qwen2(seed=2)
    new.save_pretrained(tmp_path / "step5")
    engine.update_weights(tmp_path / "step5", version=5)
    assert [op for op, _ in runtime.calls][-2:] == ["update_weights_from_disk", "flush_cache"]
    _same(engine.generate(_groups()), TransformersEngine(new).generate(_groups()))
    runtime.session_open = True  # a session someone else left open: begin must fail loudly
    with pytest.raises(RuntimeError, match="begin_weight_update failed"):
        engine.update_weights(new.state_dict(), version=6)
    assert engine.weight_version == 5


def test_constructor_validation(fake_sglang):
    with pytest.raises(ValueError, match="skip_tokenizer_init"):
        SGLangEngine("m", skip_tokenizer_init=False)
    with pytest.raises(ValueError, match="model_path"):
        SGLangEngine("")


def test_a_refused_flush_is_confirmed_by_asking_again(fake_sglang, checkpoint):
    engine = SGLangEngine(str(checkpoint))
    runtime = fake_sglang.engines[0].runtime
    engine.generate(_groups())
    runtime.refuse_flushes = 1  # "not flushed" right after a request, as SGLang 0.5.23 answers
    runtime.calls.clear()
    engine.update_weights(tiny_qwen2(seed=1).state_dict(), version=1)
    assert [op for op, _ in runtime.calls][-2:] == ["flush_cache", "flush_cache"] and not runtime.cache
