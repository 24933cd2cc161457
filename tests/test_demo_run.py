"""`fastcomt demo` end to end at a size that runs in seconds: every stage, tables, report, rerun."""

import json

from fastcomt.demo import DemoConfig, demo_splits, main

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}


def _overrides(out_dir):
    return [
        f"output_dir={out_dir}", "sft_problems=8", "rl_problems=12", "progress=false",
        f"pretrain={{num_documents: 24, tokenizer_problems: 16, model: {json.dumps(TINY)}, "
        "optim: {row_tokens: 256, tokens_per_step: 1024, warmup_steps: 1}}",
        "sft={optim: {row_tokens: 256, tokens_per_step: 1024, warmup_steps: 1}}",
        "rl={steps: 1, rollout: {problems_per_step: 2, executions_per_plan: 2, max_new_tokens: 8, plan_max_new_tokens: 8}}",
        "eval={id_problems: 6, ood_problems: 3, gsm8k_problems: 2, base_problems: 2, max_new_tokens: 8, "
        "plan_max_new_tokens: 12, batch_size: 8, bootstrap_resamples: 50}",
    ]  # fmt: skip


def test_demo_runs_every_stage_and_reports(tmp_path, capsys, shared_data):
    out = tmp_path / "demo"
    assert main(None, _overrides(out)) == 0
    printed = capsys.readouterr().out
    assert "| 1 CoMT SFT (plans only) | comt |" in printed and "| 2 CCRL | comt |" in printed
    assert "in-distribution: answer accuracy" in printed and "95% bootstrap CI" in printed
    assert "What it does not show" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["effects"]["synthetic"]["accuracy"]["n"] == 6
    assert results["effects"]["synthetic_ood"]["accuracy"]["n"] == 3
    assert results["eval"]["ccrl"]["benchmarks"]["gsm8k"]["n"] == 2
    assert (out / "report.md").read_text().startswith("# fastcomt demo")
    assert (out / "ccrl_step.json").is_file() and (out / "ccrl_curve.png").is_file()
    # A rerun finds every stage done and only evaluates again from the saved rows.
    assert main(None, _overrides(out)) == 0
    assert json.loads((out / "results.json").read_text())["effects"] == results["effects"]


def test_held_out_problems_are_new_and_ood_family_is_unseen():
    cfg = DemoConfig(sft_problems=50, rl_problems=50, pretrain={"num_documents": 100})
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
    assert not seen & {p.question for p in splits["synthetic"]}
    assert len({p.question for p in splits["synthetic"]}) == 40
