"""`fastcomt demo --seeds`: per-seed folders, resume, and the spread table (recipes/demo_seeds.py)."""

import json
from pathlib import Path

import pytest

from fastcomt.atomic_io import write_json_atomic
from fastcomt.config import config_to_dict
from fastcomt_recipes.demo import DemoConfig
from fastcomt_recipes.demo_seeds import effect_signs, run_demo_seeds, seed_config, seed_row, spread_table


def _effect(diff, low, high):
    return {"diff": diff, "ci_low": low, "ci_high": high}


def _results(cfg, base_cot, sft_effect, ccrl_effect, warnings=()):
    """A results.json as run_demo writes it, with the numbers the sweep reads."""
    bench = lambda acc, ece=None: {"benchmarks": {"synthetic": {"accuracy": acc, "ece": ece}}}  # noqa: E731
    return {
        "config": config_to_dict(cfg),
        "eval": {"base_cot": bench(base_cot), "base": bench(0.02), "sft": bench(0.3, 0.2), "ccrl": bench(0.31, 0.18)},
        "plan_exact": {"base": 0.0, "sft": 0.5, "ccrl": 0.5},
        "sft_effect": {"accuracy": sft_effect},
        "effects": {"synthetic": {"accuracy": ccrl_effect, "ece": _effect(-0.02, -0.03, -0.01)}},
        "checks": {"base_gold_plan": {"n": 200, "accuracy": 0.4}, "warnings": list(warnings)},
    }


def test_effect_signs_count_intervals_above_below_and_across_zero():
    effects = [
        _effect(0.1, 0.05, 0.15),
        _effect(0.0, -0.02, 0.02),
        _effect(-0.1, -0.2, -0.01),
        None,
        _effect(0.02, 0.0, 0.04),
    ]
    assert effect_signs(effects) == {"above": 1, "below": 1, "straddle": 2}  # a bound at 0 is not above it


def test_spread_table_gives_each_seed_then_mean_and_range():
    cfg = DemoConfig()
    rows = [
        seed_row(_results(seed_config(cfg, 3), 0.30, _effect(0.20, 0.16, 0.24), _effect(0.02, -0.01, 0.05))),
        seed_row(
            _results(
                seed_config(cfg, 4),
                0.20,
                _effect(0.10, 0.06, 0.14),
                _effect(-0.04, -0.07, -0.01),
                warnings=["stage 0 FAILED its check"],
            )
        ),
    ]
    assert [r["seed"] for r in rows] == [3, 4]
    lines = spread_table(rows)
    seed3 = next(line for line in lines if line.startswith("| 3 |"))
    assert seed3.startswith("| 3 | 30.0 | 40.0 | 2.0 | 30.0 | 50.0 | 31.0 | 0.200 | 0.180 | 0 |")
    assert any(line.startswith("| mean | 25.0 | 40.0 | 2.0 |") for line in lines)
    assert any(line.startswith("| range | 20.0-30.0 |") for line in lines)
    effects3 = [line for line in lines if line.startswith("| 3 |")][1]
    assert effects3 == "| 3 | +20.0 [+16.0, +24.0] | +2.0 [-1.0, +5.0] | -0.020 [-0.030, -0.010] |"
    assert "| mean | +15.0 | -1.0 | -0.020 |" in lines
    assert "| range | +10.0 to +20.0 | -4.0 to +2.0 | -0.020 to -0.020 |" in lines
    # SFT above zero for both seeds; CCRL's accuracy effect changes sign between them
    assert "| CI above / straddles / below 0 | 2 / 0 / 0 | 0 / 1 / 1 | 0 / 0 / 2 |" in lines


def test_seeds_run_in_their_own_folders_and_a_finished_seed_is_read_back(tmp_path, capsys):
    calls = []

    def fake_run(cfg):
        calls.append(cfg.seed)
        assert cfg.seeds is None and Path(cfg.output_dir) == tmp_path / f"seed-{cfg.seed}"
        results = _results(cfg, 0.1 * (cfg.seed + 1), _effect(0.1, 0.05, 0.15), _effect(0.0, -0.02, 0.02))
        write_json_atomic(Path(cfg.output_dir) / "results.json", results)
        return results

    cfg = DemoConfig(output_dir=str(tmp_path), seeds=[0, 2])
    summary = run_demo_seeds(cfg, run=fake_run)
    assert calls == [0, 2]
    assert [row["metrics"]["base CoT acc"] for row in summary["rows"]] == pytest.approx([0.1, 0.3])
    assert json.loads((tmp_path / "seeds.json").read_text())["seeds"] == [0, 2]
    assert "| mean | 20.0 |" in (tmp_path / "seeds.md").read_text()
    # a rerun (another progress setting changes no number) reads both seeds back
    cfg.progress = False
    run_demo_seeds(cfg, run=fake_run)
    assert calls == [0, 2]
    assert "Read back (finished before): seeds 0, 2." in capsys.readouterr().out
    # a seed added later runs alone; a changed setting reruns every seed
    cfg.seeds = [0, 2, 5]
    run_demo_seeds(cfg, run=fake_run)
    assert calls == [0, 2, 5]
    cfg.rl = {**cfg.rl, "steps": 7}
    run_demo_seeds(cfg, run=fake_run)
    assert calls == [0, 2, 5, 0, 2, 5]


def test_bad_seeds_are_refused_with_the_key_named(tmp_path):
    with pytest.raises(ValueError, match="seeds: expected distinct seeds, got \\[1, 1\\]"):
        run_demo_seeds(DemoConfig(output_dir=str(tmp_path), seeds=[1, 1]), run=lambda c: {})
    with pytest.raises(ValueError, match="seeds: expected at least one seed"):
        run_demo_seeds(DemoConfig(output_dir=str(tmp_path), seeds=[]), run=lambda c: {})
    with pytest.raises(ValueError, match="seeds: expected non-negative ints, got -1"):
        run_demo_seeds(DemoConfig(output_dir=str(tmp_path), seeds=[-1]), run=lambda c: {})
