"""`auto` LM-head loss: the fused Triton kernels on a GPU, plain torch on a CPU; the progress bar says
which runs; the demo's stages resolve to the same head as before (it sets `torch` explicitly)."""

import json

import pytest
import torch

from fastcomt.train.config import SFTConfig, load_config
from fastcomt.train.loss_head import resolve_loss_head
from fastcomt.train.rl_config import PolicyLossConfig


@pytest.mark.parametrize("name, device, expected", [
    ("auto", "cpu", "torch"), ("auto", "cuda", "fused"), ("auto", "cuda:1", "fused"),
    ("fused", "cpu", "fused"), ("torch", "cuda", "torch"),
])  # fmt: skip
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

    from fastcomt.demo import DemoConfig
    from fastcomt.train.pretrain import PretrainConfig

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml", DemoConfig)
    assert cfg.sft["loss"] == "torch"
    assert cfg.rl["loss"]["lm_head"] == "torch"
    assert "loss" not in cfg.pretrain and PretrainConfig.__dataclass_fields__["loss"].default == "torch"
    assert "loss" not in cfg.baseline_rl  # the --compare runs inherit rl's head
    for device in ("cpu", "cuda"):
        assert resolve_loss_head(cfg.sft["loss"], device) == "torch"
        assert resolve_loss_head(cfg.rl["loss"]["lm_head"], device) == "torch"


def test_sft_progress_says_which_head(tmp_path, capsys):
    from fastcomt.comt.records import ComtRecord
    from fastcomt.train.sft import run_sft

    data = tmp_path / "plans.jsonl"
    rows = [ComtRecord(f"t-{i}", "toy", "meta_thought", f"Ana has {i} pens and gets 2 more. How many?",
                       "Steps:\n1. total = pens + more\nAnswer: total", float(i + 2)).to_dict() for i in range(4)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = run_sft({
        "output_dir": str(tmp_path / "run"), "data": {"train": str(data)},
        "tokenizer": {"kind": "number_word", "number_max": 20},
        "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64},
        "optim": {"row_tokens": 64, "tokens_per_step": 64, "max_steps": 1}, "device": "cpu",
    })  # fmt: skip
    assert summary["loss_head"] == "torch"
    assert "sft [torch head (auto)]" in capsys.readouterr().err
