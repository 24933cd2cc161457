"""The CCRL loop end to end on a tiny model: logs, checkpoints, exact resume, weight sync."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from fastcomt.rollout import GroupRequest, SamplingParams, TransformersEngine
from fastcomt.tasks import synthetic_problems
from fastcomt.tokenizer import train_tokenizer
from fastcomt.train.models import build_tiny_model
from fastcomt.train.rl import run_rl
from fastcomt_recipes.pretrain import tokenizer_texts

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}
LOGGED = (
    "reward",
    "accuracy",
    "ece",
    "overconfident_error_rate",
    "clip_frac_low",
    "clip_frac_high",
    "kl",
    "entropy",
    "tokens_per_s",
    "prefix_cache_hit_rate",
    "time_rollout",
    "time_scoring",
    "time_update",
)


@pytest.fixture(scope="module")
def start_dir(tmp_path_factory):
    """A tiny "SFT checkpoint": random weights and a tokenizer that knows the synthetic words."""
    problems = synthetic_problems(16, seed=5)
    tok = train_tokenizer(tokenizer_texts(problems), kind="number_word", number_max=120, vocab_size=900)
    model = build_tiny_model(TINY, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    path = tmp_path_factory.mktemp("start")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _config(start_dir, out_dir, **extra):
    cfg = {
        "output_dir": str(out_dir),
        "model": {"path": str(start_dir)},
        "steps": 2,
        "data": {"num_problems": 12, "seed": 1},
        "rollout": {"problems_per_step": 2, "executions_per_plan": 2, "max_new_tokens": 8, "plan_max_new_tokens": 8},
        "loss": {"micro_batch_tokens": 64, "beta": 0.05},
        "optim": {"lr": 1e-2, "warmup_steps": 0, "min_lr_ratio": 0.5},
        "progress": False,
    }
    for key, value in extra.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return cfg


def _final_weights(out_dir):
    summary = json.loads((out_dir / "summary.json").read_text())
    return load_file(f"{summary['model_dir']}/model.safetensors"), summary


def _metrics(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if not (k.startswith("time_") or k in ("seconds",) or k.endswith("per_s"))}
        for r in rows
    ]


def test_two_steps_then_exact_resume(start_dir, tmp_path):
    straight = tmp_path / "straight"
    run_rl(_config(start_dir, straight))
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in LOGGED:
        assert key in rows[0]
    assert rows[0]["executions"] == 4 and rows[1]["weight_version"] == 2
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # step 1 starts at the reference
    assert rows[1]["kl"] > 0  # ... and step 2 has moved away from it

    resumed = tmp_path / "resumed"
    first = run_rl(_config(start_dir, resumed), stop_after_steps=1)
    assert first["interrupted"] and first["steps"] == 1
    second = run_rl(_config(start_dir, resumed))
    assert second["steps"] == 2 and not second["interrupted"]

    w_straight, _ = _final_weights(straight)
    w_resumed, _ = _final_weights(resumed)
    assert w_straight.keys() == w_resumed.keys()
    for name in w_straight:
        assert torch.equal(w_straight[name], w_resumed[name]), name
    assert _metrics(straight) == _metrics(resumed)


def test_weights_reach_the_engine(start_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(start_dir)
    engine = TransformersEngine(copy.deepcopy(model).eval())
    probe = [GroupRequest((5, 6, 7, 8), (0,), SamplingParams(temperature=0.0, max_new_tokens=6))]
    before = engine.generate(probe)[0].samples[0]
    summary = run_rl(
        _config(start_dir, tmp_path / "run", steps=1, loss={"beta": 0.0}, optim={"lr": 5e-2}), engine=engine
    )
    assert engine.weight_version == 1
    after = engine.generate(probe)[0].samples[0]
    assert after.weight_version == 1
    assert after.logprobs != before.logprobs
    trained, _ = _final_weights(tmp_path / "run")
    for name, p in engine.model.named_parameters():
        torch.testing.assert_close(p.detach(), trained[name], rtol=0, atol=0)
    assert summary["steps"] == 1


def test_config_errors_name_the_key(start_dir, tmp_path):
    with pytest.raises(ValueError, match="rollout.executions_per_plan"):
        run_rl(_config(start_dir, tmp_path / "x", rollout={"executions_per_plan": 0}))
    with pytest.raises(ValueError, match="model.path"):
        run_rl({**_config(start_dir, tmp_path / "y"), "model": {}})
    with pytest.raises(ValueError, match="format 'cot'"):
        run_rl(_config(start_dir, tmp_path / "z", format="cot", rollout={"plans_per_problem": 2}))
