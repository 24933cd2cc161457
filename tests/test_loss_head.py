"""`auto` LM-head loss: the fused Triton kernels on a GPU, the chunked plain-torch head on a CPU
(same loss and gradients as full logits, one chunk of logits at a time); the progress bar says which
runs; the demo's stages resolve to the same head as before (it sets `torch` explicitly)."""

import pytest
import torch
from toy_plans import write_toy_plans

from fastcomt.config import load_config
from fastcomt.train.config import SFTConfig
from fastcomt.train.loss_head import resolve_loss_head
from fastcomt.train.rl_config import PolicyLossConfig


@pytest.mark.parametrize(
    "name, device, expected",
    [
        ("auto", "cpu", "chunked"),
        ("auto", "cuda", "fused"),
        ("auto", "cuda:1", "fused"),
        ("fused", "cpu", "fused"),
        ("torch", "cuda", "torch"),
        ("chunked", "cuda", "chunked"),
    ],
)
def test_resolution(name, device, expected):
    assert resolve_loss_head(name, torch.device(device)) == expected
    assert resolve_loss_head(name, device) == expected


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="loss head: expected one of"):
        resolve_loss_head("triton", "cpu")


def test_defaults_are_auto():
    assert SFTConfig(output_dir="x", data={"train": "y"}).loss == "auto"
    assert PolicyLossConfig().lm_head == "auto"


def test_shipped_cpu_configs_use_auto():
    from pathlib import Path

    import yaml

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("sft-synthetic-comt.yaml", "sft-synthetic-cot.yaml", "sft-gsm8k-comt.yaml", "sft-gsm8k-cot.yaml"):
        assert yaml.safe_load((configs / name).read_text()).get("loss", "auto") == "auto", name
    for name in ("rl-synthetic-ccrl.yaml", "rl-synthetic-grpo.yaml"):
        assert yaml.safe_load((configs / name).read_text())["loss"]["lm_head"] == "auto", name


def test_demo_stages_keep_their_heads():
    """The demo sets the plain-torch head for SFT and RL and pretrain defaults to it: whatever `auto`
    means, its stages run the heads (hence the numbers) they ran before."""
    from pathlib import Path

    from fastcomt_recipes.demo import DemoConfig
    from fastcomt_recipes.pretrain import PretrainConfig

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", DemoConfig)
    assert cfg.sft["loss"] == "torch"
    assert cfg.rl["loss"]["lm_head"] == "torch"
    assert "loss" not in cfg.pretrain and PretrainConfig.__dataclass_fields__["loss"].default == "torch"
    assert "loss" not in cfg.baseline_rl  # the --compare runs inherit rl's head
    for device in ("cpu", "cuda"):
        assert resolve_loss_head(cfg.sft["loss"], device) == "torch"
        assert resolve_loss_head(cfg.rl["loss"]["lm_head"], device) == "torch"


def test_sft_progress_says_which_head(tmp_path, capsys):
    from fastcomt.train.sft import run_sft

    data = tmp_path / "plans.jsonl"
    write_toy_plans(data, 4)
    summary = run_sft(
        {
            "output_dir": str(tmp_path / "run"),
            "data": {"train": str(data)},
            "tokenizer": {"kind": "number_word", "number_max": 20},
            "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64},
            "optim": {"row_tokens": 64, "tokens_per_step": 64, "max_steps": 1},
            "device": "cpu",
        }
    )
    assert summary["loss_head"] == "chunked"
    assert "sft [chunked head (auto)]" in capsys.readouterr().err


def test_chunked_cross_entropy_matches_full_logits_in_fp64():
    import torch.nn.functional as F

    from fastcomt.train import torch_head

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(11, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (11,), generator=g)
    targets[[0, 4, 5]] = -100  # prompt tokens
    seen = []
    original = torch_head._chunk_loss_sum

    def spy(h, w, t):
        seen.append(tuple(h.shape))
        return original(h, w, t)

    torch_head._chunk_loss_sum = spy
    try:
        loss = torch_head.chunked_cross_entropy_sum(hidden, weight, targets, chunk_rows=3)
        loss.backward()
    finally:
        torch_head._chunk_loss_sum = original
    assert seen[:3] == [(3, 6), (3, 6), (2, 6)]  # 8 active tokens in chunks of 3; recomputed in backward
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    reference = F.cross_entropy(hidden @ weight.T, targets, ignore_index=-100, reduction="sum")
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], hidden.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[1], weight.grad, rtol=1e-12, atol=1e-12)
    # No active token: a zero loss with zero gradients.
    hidden.grad = weight.grad = None
    empty = torch_head.chunked_cross_entropy_sum(hidden, weight, torch.full((11,), -100))
    empty.backward()
    assert float(empty.detach()) == 0.0 and not hidden.grad.any() and not weight.grad.any()


def test_chunk_rows_fit_the_budget():
    from fastcomt.train.torch_head import LOGITS_BUDGET_BYTES, chunk_rows_for

    assert chunk_rows_for(151_936) * 151_936 * 4 <= LOGITS_BUDGET_BYTES
    assert chunk_rows_for(1000, budget_bytes=4000 * 7) == 7 and chunk_rows_for(10**12) == 1


def test_sft_chunked_equals_torch_head(tmp_path):
    """One SFT step through the chunked head and through the model's own head: same loss, same weights."""
    from fastcomt.train.sft import run_sft

    data = tmp_path / "plans.jsonl"
    write_toy_plans(data, 4)
    summaries = {}
    for head in ("chunked", "torch"):
        summaries[head] = run_sft(
            {
                "output_dir": str(tmp_path / head),
                "data": {"train": str(data)},
                "loss": head,
                "progress": False,
                "tokenizer": {"kind": "number_word", "number_max": 20},
                "model": {
                    "hidden_size": 32,
                    "num_layers": 1,
                    "num_heads": 4,
                    "num_kv_heads": 2,
                    "intermediate_size": 64,
                },
                "optim": {"row_tokens": 64, "tokens_per_step": 128, "max_steps": 2},
            }
        )
    assert summaries["chunked"]["loss_head"] == "chunked"
    assert abs(summaries["chunked"]["final_loss"] - summaries["torch"]["final_loss"]) < 1e-5
    from safetensors.torch import load_file

    a = load_file(tmp_path / "chunked" / "final" / "model.safetensors")
    b = load_file(tmp_path / "torch" / "final" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_rl_chunked_head_caps_micro_batches_and_matches_torch(tmp_path, monkeypatch):
    """One RL step with the chunked head (micro-batches capped by a tiny logits budget) and with the
    torch head (one micro-batch): the same rollouts, the same update up to float summation order."""
    from safetensors.torch import load_file

    from fastcomt.tasks import synthetic_problems
    from fastcomt.tokenizer import train_tokenizer
    from fastcomt.train import torch_head
    from fastcomt.train.models import build_tiny_model
    from fastcomt.train.rl import run_rl
    from fastcomt_recipes.pretrain import tokenizer_texts

    tok = train_tokenizer(
        tokenizer_texts(synthetic_problems(16, seed=5)), kind="number_word", number_max=120, vocab_size=900
    )
    start = tmp_path / "start"
    build_tiny_model(
        {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64},
        len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    ).save_pretrained(start)
    tok.save_pretrained(start)
    monkeypatch.setattr(torch_head, "LOGITS_BUDGET_BYTES", 4 * len(tok) * 40)  # 40 tokens of logits per micro-batch
    summaries = {}
    for head in ("chunked", "torch"):
        summaries[head] = run_rl(
            {
                "output_dir": str(tmp_path / head),
                "model": {"path": str(start)},
                "steps": 1,
                "progress": False,
                "data": {"num_problems": 12, "seed": 1},
                "device": "cpu",
                "rollout": {
                    "problems_per_step": 2,
                    "executions_per_plan": 3,
                    "max_new_tokens": 8,
                    "plan_max_new_tokens": 8,
                },
                "loss": {"lm_head": head, "micro_batch_tokens": 4096},
                "optim": {"lr": 1e-2},
            }
        )
    chunked, full = summaries["chunked"], summaries["torch"]
    assert chunked["loss_head"] == "chunked" and full["loss_head"] == "torch"
    assert chunked["last_step"]["micro_batches"] > 1 and full["last_step"]["micro_batches"] == 1
    assert chunked["last_step"]["reward"] == full["last_step"]["reward"]
    assert abs(chunked["last_step"]["loss"] - full["last_step"]["loss"]) < 1e-5
    a = load_file(tmp_path / "chunked" / "final" / "model.safetensors")
    b = load_file(tmp_path / "torch" / "final" / "model.safetensors")
    assert any(not torch.equal(a[n], load_file(start / "model.safetensors")[n]) for n in a)  # the step changed weights
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
