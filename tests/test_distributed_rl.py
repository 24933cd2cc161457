"""`fastcomt rl` (CCRL) under torchrun (2 CPU processes, gloo, FSDP2) against the same run on one process.

As for SFT, one two-rank run serves both checks: its first steps must give the one-process rewards,
losses and gradient norms (same step problems, split by rank; loss normalised by the global token
count), then rank 1 is killed right after a checkpoint and one plain process resumes from the
sharded checkpoint and finishes as the one-process run did.
"""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torchrun_launch import torchrun

from fastcomt.tasks import synthetic_problems
from fastcomt.tokenizer import train_tokenizer
from fastcomt.train.models import build_tiny_model
from fastcomt.train.rl import run_rl
from fastcomt_recipes.pretrain import tokenizer_texts

MODEL = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}
STEPS, KILL_AFTER = 4, 3
COMPARED = (
    "reward",
    "accuracy",
    "loss",
    "grad_norm",
    "kl",
    "entropy",
    "trained_tokens",
    "generated_tokens",
    "executions",
)


@pytest.fixture(scope="module")
def start_dir(tmp_path_factory):
    """A tiny "SFT checkpoint": random weights and a tokenizer that knows the synthetic words."""
    problems = synthetic_problems(16, seed=5)
    tok = train_tokenizer(tokenizer_texts(problems), kind="number_word", number_max=120, vocab_size=900)
    model = build_tiny_model(MODEL, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    path = tmp_path_factory.mktemp("start")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _config(start_dir, out_dir, weight_sync="tensor"):
    return {
        "output_dir": str(out_dir),
        "model": {"path": str(start_dir)},
        "steps": STEPS,
        "data": {"num_problems": 12, "seed": 1},
        # 3 problems a step: the ranks get 2 and 1 (uneven shares, padded passes on rank 1)
        "rollout": {
            "problems_per_step": 3,
            "executions_per_plan": 2,
            "max_new_tokens": 8,
            "plan_max_new_tokens": 8,
            "weight_sync": weight_sync,
        },
        "loss": {"micro_batch_tokens": 64, "beta": 0.05},
        # The reward kernel, as `reward.backend: auto` picks on the GPUs FSDP runs on. The ranks'
        # rollouts differ from one process's in the last bits, and a group whose rewards differ by
        # 1e-7 gets advantages of +-0.07 (eps 1e-6): fp32 rounding decides whether such a tie
        # collapses, differently in the kernel and in its plain-torch definition.
        "reward": {"backend": "triton"},
        "optim": {"lr": 1e-2, "warmup_steps": 0, "min_lr_ratio": 0.5},
        "progress": False,
        "save_every": 1,
        "keep_last": 2,
    }


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_steps_match(ref, got):
    for r, g in zip(ref, got):
        assert g["step"] == r["step"]
        for key in COMPARED:
            assert g[key] == pytest.approx(r[key], abs=1e-5, rel=1e-5), (g["step"], key)


def test_two_ranks_match_one_process_and_a_killed_run_resumes_on_one(start_dir, tmp_path):
    one = run_rl(_config(start_dir, tmp_path / "one"))
    assert one["steps"] == STEPS and one["world_size"] == 1

    two_dir = tmp_path / "two"
    config = tmp_path / "two.yaml"
    # the two ranks sync their engines through per-rank folders (weight_sync: disk), the one-process
    # run in memory: the rollouts must not tell the difference
    config.write_text(yaml.safe_dump(_config(start_dir, two_dir, "disk")))
    proc = torchrun(2, ["rl", str(config), "--kill-rank", "1", "--kill-after-step", str(KILL_AFTER)])
    assert proc.returncode != 0, "rank 1 was to be killed: " + proc.stdout[-2000:] + proc.stderr[-2000:]
    state = json.loads((two_dir / "checkpoints" / f"step_{KILL_AFTER:08d}" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == KILL_AFTER
    assert (two_dir / "checkpoints" / f"step_{KILL_AFTER:08d}" / "rng_rank00001.pt").is_file()
    kept = sorted(p.name for p in (two_dir / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert kept == [f"step_{s:08d}" for s in (KILL_AFTER - 1, KILL_AFTER)]  # keep_last: 2, pruned by rank 0

    ref, got = _metrics(tmp_path / "one" / "metrics.jsonl"), _metrics(two_dir / "metrics.jsonl")
    assert [m["step"] for m in got[:KILL_AFTER]] == list(range(1, KILL_AFTER + 1))
    _assert_steps_match(ref[:KILL_AFTER], got[:KILL_AFTER])
    assert all(m["grad_norm"] > 0 and m["trained_tokens"] > 0 for m in ref)  # something was trained

    lines = (two_dir / "metrics.jsonl").read_text().splitlines()
    assert sorted(p.name for p in (two_dir / "weight_sync").iterdir()) == ["rank00000", "rank00001"]
    resumed = run_rl(_config(start_dir, two_dir, "disk"))
    assert resumed["steps"] == STEPS and resumed["world_size"] == 1
    # the resumed run kept the two ranks' lines, timings included (a fresh start would rewrite them)
    assert (two_dir / "metrics.jsonl").read_text().splitlines()[:KILL_AFTER] == lines[:KILL_AFTER]
    got = _metrics(two_dir / "metrics.jsonl")
    assert [m["step"] for m in got] == list(range(1, STEPS + 1))
    _assert_steps_match(ref, got)
    a = load_file(tmp_path / "one" / "final" / "model.safetensors")
    b = load_file(two_dir / "final" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5)
