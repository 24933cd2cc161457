"""The README's pipeline, run as written: the commands are read from its "## The pipeline" block
(so the README and this test cannot drift) and run in order, each with size overrides only, in a
fresh folder that holds nothing but the shipped configs: `data` builds what `sft` reads, `sft`
writes the final model `rl` starts from, `rl` the one `eval` evaluates."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from fastcomt.cli import main

REPO = Path(__file__).resolve().parents[1]

# Overrides that only make each command small (sizes, counts, lengths); nothing else is changed.
TINY_MODEL = [
    "model.hidden_size=32",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.num_kv_heads=1",
    "model.intermediate_size=64",
]
SIZE_OVERRIDES = {
    "data": ["data.build.num_problems=24"],
    "sft": [*TINY_MODEL, "optim.max_steps=2", "optim.tokens_per_step=512"],
    "rl": [
        "steps=1",
        "rollout.problems_per_step=2",
        "rollout.executions_per_plan=2",
        "rollout.max_new_tokens=8",
        "rollout.plan_max_new_tokens=8",
        "data.num_problems=8",
    ],
    "eval": ["--limit", "1", "--max-new-tokens", "8", "--plan-max-new-tokens", "8"],
}


def readme_pipeline_commands(readme: Path = REPO / "README.md") -> list[list[str]]:
    """The commands of the fenced block under "## The pipeline", comments dropped, as argv lists."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("\n## The pipeline\n", 1)
    assert len(section) == 2, "README.md has no '## The pipeline' section"
    block = re.search(r"```[a-z]*\n(.*?)```", section[1], re.S)
    assert block is not None, "README.md's pipeline section has no fenced block"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [argv for argv in commands if argv]


def test_readme_lists_the_four_stages_in_order():
    commands = readme_pipeline_commands()
    assert [argv[0] for argv in commands] == ["fastcomt"] * 4
    assert [argv[1] for argv in commands] == ["data", "sft", "rl", "eval"]


def test_readme_pipeline_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")  # a fresh clone's working folder: configs only
    for argv in readme_pipeline_commands():
        command = argv[1]
        status = main(argv[1:] + SIZE_OVERRIDES[command])
        err = capsys.readouterr().err
        assert status == 0, f"{shlex.join(argv)} exited with {status}: {err[-2000:]}"
        if command in ("sft", "rl"):
            assert re.search(r"final model: \S+/final ", err), err[-500:]

    sft_final = tmp_path / "runs" / "sft-synthetic-comt" / "final"
    rl_final = tmp_path / "runs" / "rl-synthetic-ccrl" / "final"
    for final in (sft_final, rl_final):
        for name in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "train_config.json",
        ):
            assert (final / name).is_file(), f"{final / name} missing"
    sft_config = json.loads((sft_final / "train_config.json").read_text())
    assert sft_config["optim"]["max_steps"] == 2 and sft_config["model"]["hidden_size"] == 32
    rl_config = json.loads((rl_final / "train_config.json").read_text())
    assert rl_config["model"]["path"] == "runs/sft-synthetic-comt/final"  # rl read what sft wrote
    assert rl_config["steps"] == 1
    summary = json.loads((tmp_path / "runs" / "eval" / "summary.json").read_text())
    expected = ["gsm8k", "svamp", "asdiv", "mawps", "gsm_hard", "tabmwp", "gsm_symbolic"]
    assert sorted(summary["benchmarks"]) == sorted(expected)
    assert all(m["n"] == 1 for m in summary["benchmarks"].values())
    assert all(m["strict_accuracy"] <= m["accuracy"] for m in summary["benchmarks"].values())
    assert summary["settings"]["model"] == str(rl_final.resolve())


@pytest.mark.parametrize(
    "config", sorted(p.name for p in (REPO / "configs").glob("rl-*.yaml")) + ["gpu-qwen2.5-1.5b.yaml"]
)
def test_rl_configs_start_from_an_sft_final_model(config):
    """Every RL config starts from the final model of the SFT config its header names."""
    import yaml

    data = yaml.safe_load((REPO / "configs" / config).read_text())
    path = data["model"]["path"]
    assert path.endswith("/final"), path
    sft_dirs = {yaml.safe_load(p.read_text())["output_dir"] for p in (REPO / "configs").glob("sft-*.yaml")}
    assert path[: -len("/final")] in sft_dirs, f"{config}: model.path {path} is no SFT config's <output_dir>/final"
