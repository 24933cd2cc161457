"""YAML configs: every shipped sft-*.yaml loads, overrides apply, and errors name key and type."""

from pathlib import Path

import pytest

from fastcomt.comt.build import ComtDataConfig
from fastcomt.config import apply_overrides, config_from_dict, config_to_dict, load_config
from fastcomt.train.config import SFTConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("sft-*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path, SFTConfig)
    assert cfg.output_dir and cfg.data.train
    if cfg.data.build is not None:  # the data section is itself a valid data-build config
        config_from_dict(ComtDataConfig, {"output": cfg.data.train, **cfg.data.build})
    assert config_from_dict(SFTConfig, config_to_dict(cfg)) == cfg  # round trip


def test_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: runs/x\ndata:\n  train: d.jsonl\noptim:\n  lr: 1.0e-3\n")
    cfg = load_config(path, SFTConfig, ["optim.lr=1e-4", "optim.epochs=2", "model.family=llama", "data.limit=null"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.model.family, cfg.data.limit) == (1e-4, 2, "llama", None)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}
    with pytest.raises(ValueError, match="dotted.key=value"):
        apply_overrides({}, ["nokey"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": {"train": "d"}}, "output_dir: required key missing"),
        (
            {"output_dir": "o", "data": {"train": "d"}, "optim": {"lr": "fast"}},
            "optim.lr: expected float, got str 'fast'",
        ),
        (
            {"output_dir": "o", "data": {"train": "d"}, "optim": {"epochs": 1.5}},
            "optim.epochs: expected int, got float",
        ),
        (
            {"output_dir": "o", "data": {"train": "d"}, "optim": {"epochs": True}},
            "optim.epochs: expected int, got bool",
        ),
        (
            {"output_dir": "o", "data": {"train": "d"}, "precision": "fp8"},
            r"precision: expected one of \['bf16', 'fp32'\]",
        ),
        ({"output_dir": "o", "data": {"train": "d"}, "model": {"hidden": 3}}, "model: unknown key 'hidden'"),
        ({"output_dir": "o", "data": {"train": 5}}, "data.train: expected str, got int"),
        ({"output_dir": "o", "data": {"train": "d"}, "progress": "yes"}, "progress: expected bool"),
        ({"output_dir": "o", "data": "d.jsonl"}, "data: expected a mapping"),
    ],
)
def test_errors_name_key_and_expected_type(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(SFTConfig, data)
