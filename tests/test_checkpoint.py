"""Checkpoints: exact round trip of weights, optimizer, scheduler and RNG; atomic writes; pruning."""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from fastcomt.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from fastcomt.train.models import build_tiny_model
from fastcomt.train.schedule import cosine_scheduler, cosine_with_warmup

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}


def _trained(tie: bool, seed: int = 0):
    model = build_tiny_model({**TINY, "tie_word_embeddings": tie, "init_seed": seed}, 50)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = cosine_scheduler(opt, warmup_steps=1, total_steps=10)
    for _ in range(2):
        model(input_ids=torch.arange(8)[None] % 50, labels=torch.arange(8)[None] % 50).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return model, opt, sched


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_is_exact(tmp_path, tie):
    model, opt, sched = _trained(tie)
    random.seed(123)
    torch.manual_seed(456)
    path = save_checkpoint(tmp_path, 2, model=model, optimizer=opt, scheduler=sched, trainer_state={"epoch": 1})
    expected_draws = (random.random(), torch.rand(3))

    fresh, fresh_opt, _ = _trained(tie, seed=1)  # different weights and moments
    fresh_sched = cosine_scheduler(fresh_opt, warmup_steps=1, total_steps=10)
    state = load_checkpoint(path, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert state["step"] == 2 and state["epoch"] == 1
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(opt.state.values(), fresh_opt.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert fresh_sched.last_epoch == 2 and fresh_sched.get_last_lr() == sched.get_last_lr()
    assert (random.random(), torch.rand(3)).__repr__() == expected_draws.__repr__()
    if tie:
        assert fresh.lm_head.weight is fresh.model.embed_tokens.weight

    # The model folder is a plain Hugging Face checkpoint.
    hf = AutoModelForCausalLM.from_pretrained(path / "model")
    ids = torch.arange(6)[None]
    torch.testing.assert_close(hf(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path):
    model, opt, sched = _trained(False)
    first = save_checkpoint(tmp_path, 1, model=model, optimizer=opt, scheduler=sched)

    class ExplodingTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model=model, optimizer=opt, tokenizer=ExplodingTokenizer())
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001"]  # no temp dir left

    # A step directory without its state file (e.g. copied by hand, half done) is not a checkpoint.
    (tmp_path / "step_00000005" / "model").mkdir(parents=True)
    (tmp_path / "latest").unlink()
    assert latest_checkpoint(tmp_path) == first


def test_keep_last_prunes_old_checkpoints(tmp_path):
    model, _, _ = _trained(False)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model=model, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000003", "step_00000004"]
    assert latest_checkpoint(tmp_path).name == "step_00000004"
    assert latest_checkpoint(tmp_path / "missing") is None
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, -1, model=model)


def test_schedule_by_hand():
    values = [cosine_with_warmup(s, warmup_steps=3, total_steps=13, min_lr_ratio=0.1) for s in range(15)]
    assert values[:3] == [0.25, 0.5, 0.75]
    assert values[3] == 1.0
    assert values[8] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert values[13] == values[14] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        cosine_with_warmup(0, warmup_steps=0, total_steps=1, min_lr_ratio=2.0)
