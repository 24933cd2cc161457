"""`fastcomt demo` end to end at a size that runs in seconds: every stage, tables, report, rerun."""

import json

import pytest

from fastcomt_recipes.demo import DemoConfig, demo_splits, main

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}


def _overrides(out_dir):
    return [
        f"output_dir={out_dir}",
        "sft_problems=8",
        "rl_problems=12",
        "progress=false",
        f"pretrain={{num_documents: 24, tokenizer_problems: 16, model: {json.dumps(TINY)}, "
        "optim: {row_tokens: 256, tokens_per_step: 1024, warmup_steps: 1}}",
        "replay_documents=4",
        "sft={loss: torch, optim: {row_tokens: 256, tokens_per_step: 1024, warmup_steps: 1}}",
        "rl={steps: 1, rollout: {problems_per_step: 2, executions_per_plan: 2, max_new_tokens: 8, plan_max_new_tokens: 8}}",
        "eval={id_problems: 6, ood_problems: 3, gsm8k_problems: 2, base_problems: 2, max_new_tokens: 8, "
        "plan_max_new_tokens: 12, batch_size: 8, bootstrap_resamples: 50}",
    ]


def test_demo_runs_every_stage_and_reports(tmp_path, capsys, shared_data):
    out = tmp_path / "demo"
    assert main(None, _overrides(out)) == 0
    printed = capsys.readouterr().out
    assert "| 1 CoMT SFT | comt |" in printed and "| 2 CCRL | comt |" in printed
    assert "ID problems) | cot |" in printed  # the base model without a plan
    assert "4 rehearsed execution documents" in printed
    assert "in-distribution: answer accuracy" in printed and "95% bootstrap CI" in printed
    assert "What it does not show" in printed
    # stage 0 checks itself (gold plans) and the untrained toy fails every check, plainly
    assert "[0] check: given the gold plan, the base model executes" in printed
    assert "Stage checks: " in printed and "WARNING: stage 0 FAILED its check" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["effects"]["synthetic"]["accuracy"]["n"] == 6
    assert results["effects"]["synthetic_ood"]["accuracy"]["n"] == 3
    assert results["eval"]["ccrl"]["benchmarks"]["gsm8k"]["n"] == 2
    assert results["eval"]["base_cot"]["benchmarks"]["synthetic"]["n"] == 2
    assert results["sft"]["extra_examples"] == 4
    assert set(results["plan_exact"]) == {"base", "sft", "ccrl"}
    assert results["checks"]["base_gold_plan"]["n"] == 6  # every held-out ID problem (fewer than gold_plan_problems)
    assert results["checks"]["warnings"][0].startswith("stage 0 FAILED")
    assert (out / "report.md").read_text().startswith("# fastcomt demo")
    assert (out / "ccrl_step.json").is_file() and (out / "ccrl_curve.png").is_file()
    # A rerun finds every stage done and only evaluates again from the saved rows.
    assert main(None, _overrides(out)) == 0
    assert json.loads((out / "results.json").read_text())["effects"] == results["effects"]


def test_held_out_problems_are_new_and_ood_family_is_unseen():
    cfg = DemoConfig(sft_problems=50, rl_problems=50, replay_documents=60, pretrain={"num_documents": 100})
    cfg.eval.id_problems, cfg.eval.ood_problems, cfg.eval.gsm8k_problems = 40, 10, 0
    splits = demo_splits(cfg)
    assert cfg.ood_family not in splits["families"]
    assert {p.family for p in splits["synthetic_ood"]} == {cfg.ood_family}
    assert cfg.ood_family not in {p.family for p in splits["synthetic"]}
    from fastcomt.tasks import synthetic_problems

    seen = {p.question for p in synthetic_problems(100, seed=0, families=splits["families"])}
    seen |= {p.question for p in synthetic_problems(100, seed=2, families=splits["families"])}
    seen |= {p.question for p in synthetic_problems(50, seed=100, families=splits["families"])}
    seen |= {p.question for p in synthetic_problems(50, seed=200, families=splits["families"])}
    seen |= {p.question for p in synthetic_problems(60, seed=300, families=splits["families"])}  # replayed documents
    seen |= {
        p.question for p in synthetic_problems(60, seed=301, families=splits["families"])
    }  # ... and their questions
    assert not seen & {p.question for p in splits["synthetic"]}
    assert len({p.question for p in splits["synthetic"]}) == 40


def test_demo_yaml_is_the_demo_config_defaults():
    """configs/demo.yaml (what `make demo` reads) and DemoConfig's defaults are one set of settings."""
    from fastcomt.config import load_config
    from fastcomt_recipes.demo import DEFAULT_CONFIG

    assert load_config(DEFAULT_CONFIG, DemoConfig) == DemoConfig()


def test_plan_exact_rate_compares_plans_with_the_offline_meta_thought():
    from fastcomt.comt.offline import offline_meta_thought
    from fastcomt.tasks import synthetic_problems
    from fastcomt_recipes.demo import plan_exact_rate

    problems = synthetic_problems(3, seed=9)
    gold = offline_meta_thought(problems[0]).render()
    rows = [
        {"id": problems[0].id, "plan": "\n" + gold + "\n"},
        {"id": problems[1].id, "plan": gold},
        {"id": problems[2].id, "plan": None},
    ]
    assert plan_exact_rate(rows, problems) == 0.5  # the CoT row (no plan) does not count
    assert plan_exact_rate([{"id": problems[2].id, "plan": None}], problems) is None


def test_compare_trains_the_cot_grpo_baseline_and_prints_the_paper_table(tmp_path, capsys, shared_data):
    out = tmp_path / "demo"
    assert main(None, _overrides(out) + ["compare=true"]) == 0
    printed = capsys.readouterr().out
    assert "Paper-style comparison" in printed
    assert "| CoT SFT + GRPO (baseline) |" in printed and "| CoMT SFT + CCRL |" in printed
    assert "GRPO's effect over CoT SFT, in-distribution: answer accuracy" in printed
    results = json.loads((out / "results.json").read_text())
    compare = results["compare"]
    assert compare["grpo"]["lam"] == 0.0 and compare["grpo"]["format"] == "cot"
    assert compare["cot_sft"]["extra_examples"] == results["sft"]["extra_examples"] == 4  # same rehearsal
    assert compare["accuracy_comt_minus_cot"]["n"] == 6
    # the ablation: the same CoMT SFT model trained by the same RL recipe without the calibration term
    assert "| CoMT SFT + GRPO (lam 0, ablation) |" in printed
    assert "CCRL (lam 0.5) against GRPO (lam 0) on the CoMT SFT model, in-distribution: step ECE" in printed
    assert compare["comt_grpo"]["lam"] == 0.0 and compare["comt_grpo"]["format"] == "comt"
    assert compare["calibration_term_effect"]["synthetic"]["accuracy"]["n"] == 6
    assert (out / "eval" / "2_grpo_cot" / "summary.json").is_file()


def test_every_stage_setting_is_checked_before_any_work(tmp_path, capsys):
    """A bad key or value of a later stage fails at once, naming the stage and the key, with nothing
    written: not after minutes of pre-training."""
    cases = [
        (["pretrain.optim.rows_per_forward=0"], "pretrain.optim.rows_per_forward: expected a positive int"),
        (["pretrain.num_documents=-5"], "pretrain.num_documents: expected >= 1"),
        (["pretrain.arithmetic_documents=-1"], "pretrain.arithmetic_documents: expected a non-negative int"),
        (["pretrain.own_question_fraction=2"], "pretrain.own_question_fraction: expected a number in"),
        (["sft_problems=-1"], "sft_problems: expected an int >= 1"),
        (["rl_problems=0"], "rl_problems: expected an int >= 1"),
        (["sft.optim.rows_per_forward=0"], "sft.optim.rows_per_forward: expected a positive int"),
        (["sft.optim.foo=1"], "sft.optim: unknown key 'foo'"),
        (["rl.reward.backend=gpu"], "rl.reward.backend: expected one of"),
        (["rl.rollout.executions_per_plan=100"], "rl: rollout.plans_per_problem x rollout.executions_per_plan"),
        (["baseline_rl.reward.lam=-1", "compare=true"], "rl or baseline_rl: reward.lam: expected >= 0"),
    ]
    for overrides, message in cases:
        out = tmp_path / "demo"
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            main(overrides=[f"output_dir={out}", "progress=false", *overrides])
        assert not out.exists()
    assert capsys.readouterr().out == ""
