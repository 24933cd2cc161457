"""The demo's stage checks (recipes/stage_checks.py): gold-plan execution and the warnings."""

import pytest

from fastcomt.rollout.engine import RolloutEngine
from fastcomt.rollout.types import GroupResult, Sample
from fastcomt.tasks import synthetic_problems
from fastcomt.tokenizer import train_tokenizer
from fastcomt_recipes.pretrain import tokenizer_texts
from fastcomt_recipes.stage_checks import StageChecks, gold_plan_execution, stage_warnings


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(6, seed=11, families=["shopping_change", "inventory"])


@pytest.fixture(scope="module")
def tokenizer(problems):
    return train_tokenizer(tokenizer_texts(problems), kind="number_word", number_max=1000, vocab_size=4096)


class PlanFollowingEngine(RolloutEngine):
    """Answers an execution prefix with a scripted text; KeyError unless the prefix is exactly the
    chat prompt, then the gold plan, then the marker, each tokenised on its own (built here from
    the template's text, independently of the code under test)."""

    def __init__(self, tokenizer, executions):
        self.tok, self.by_prefix = tokenizer, {}
        eot = tokenizer.convert_tokens_to_ids("<|end|>")
        for problem, plan, text in executions:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": problem.question}], tokenize=False, add_generation_prompt=True
            )
            ids = lambda s: tuple(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
            self.by_prefix[ids(prompt) + ids(plan) + ids("\nExecution:\n")] = ids(text) + (eot,)

    @property
    def weight_version(self):
        return 0

    def generate(self, groups):
        out = []
        for g in groups:
            assert g.sampling.temperature == 0.0  # greedy, as the evaluation decodes
            ids = self.by_prefix[g.prefix_ids]
            out.append(GroupResult(g, tuple(Sample(ids, (-0.1,) * len(ids), "stop", 0, 0, s) for s in g.seeds)))
        return out

    def update_weights(self, weights, version):
        raise NotImplementedError

    def flush_cache(self):
        pass

    def close(self):
        pass


def _plan(problem):
    from fastcomt.comt.offline import offline_meta_thought

    return offline_meta_thought(problem).render().strip()


def test_gold_plan_execution_grades_the_executions_of_the_gold_plans(problems, tokenizer):
    # Problems 0, 2, 3 are executed right; the others state a wrong answer after right steps.
    right = {0, 2, 3}
    scripted = []
    for i, p in enumerate(problems):
        text = (
            p.solution
            if i in right
            else p.solution.replace(f"The answer is {p.answer}.", f"The answer is {p.answer + 1}.")
        )
        assert i in right or text != p.solution
        scripted.append((p, _plan(p), text))
    engine = PlanFollowingEngine(tokenizer, scripted)
    result = gold_plan_execution(engine, tokenizer, problems, batch_size=4)  # two batches
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(3 / 6)
    assert result["step_accuracy"] == pytest.approx(1.0)  # every step was the gold value
    by_family = {f: [i in right for i, p in enumerate(problems) if p.family == f] for f in {p.family for p in problems}}
    assert result["accuracy_by_family"] == pytest.approx({f: sum(v) / len(v) for f, v in by_family.items()})


def test_gold_plan_execution_rejects_bad_input(problems, tokenizer):
    engine = PlanFollowingEngine(tokenizer, [])
    with pytest.raises(ValueError, match="problems: expected at least one problem"):
        gold_plan_execution(engine, tokenizer, [])
    with pytest.raises(ValueError, match="max_new_tokens: expected an int >= 1, got 0"):
        gold_plan_execution(engine, tokenizer, problems, max_new_tokens=0)
    with pytest.raises(TypeError, match="engine: expected a RolloutEngine, got str"):
        gold_plan_execution("engine", tokenizer, problems)


def _effect(diff, low, high):
    return {"diff": diff, "ci_low": low, "ci_high": high}


def test_no_warning_when_every_stage_passes():
    checks = StageChecks()
    assert (
        stage_warnings(
            checks,
            base_gold_plan={"n": 200, "accuracy": 0.25},
            sft_gold_plans=0.3,
            sft_effect=_effect(0.2, 0.16, 0.24),
            sft_format=0.66,
            ccrl_format=0.56,
        )
        == []
    )
    assert stage_warnings(checks) == []  # nothing measured, nothing to say


def test_each_failed_stage_gets_its_own_plain_warning():
    checks = StageChecks(base_gold_plan_accuracy=0.3, sft_gold_plans=0.4, sft_effect_ci_low=0.0, ccrl_format_drop=0.1)
    base = stage_warnings(checks, base_gold_plan={"n": 200, "accuracy": 0.12})
    assert len(base) == 1 and base[0].startswith("stage 0 FAILED")
    assert "12.0% of 200 held-out problems" in base[0] and "the bar is 30%" in base[0]
    plans = stage_warnings(checks, sft_gold_plans=0.399)
    assert len(plans) == 1 and plans[0].startswith("stage 1 FAILED") and "39.9%" in plans[0]
    # SFT's interval touching zero is not an effect above zero
    effect = stage_warnings(checks, sft_effect=_effect(0.01, 0.0, 0.03))
    assert len(effect) == 1 and "+1.0 points, 95% CI [+0.0, +3.0]" in effect[0]
    assert stage_warnings(checks, sft_effect=_effect(0.01, 0.001, 0.03)) == []
    collapse = stage_warnings(checks, sft_format=0.66, ccrl_format=0.55)
    assert len(collapse) == 1 and collapse[0].startswith("stage 2 FAILED") and "66.0% to 55.0%" in collapse[0]
    assert stage_warnings(checks, sft_format=0.66, ccrl_format=0.57) == []  # a drop of 9 points is allowed
    # all at once: one warning per failed check, in stage order
    every = stage_warnings(
        checks,
        base_gold_plan={"n": 10, "accuracy": 0.0},
        sft_gold_plans=0.0,
        sft_effect=_effect(-0.01, -0.03, 0.01),
        sft_format=0.5,
        ccrl_format=0.1,
    )
    assert [w.split(" FAILED")[0] for w in every] == ["stage 0", "stage 1", "stage 1", "stage 2"]


def test_stage0_probe_marks_the_results_of_the_worked_arithmetic(problems, tokenizer):
    """bench/stage0_probe.py's learning curve scores the token after each line's second `=`: the
    step values, in order (the problem's own steps, read from its solution by hand here)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.stage0_probe import result_token_batch

    rows, targets = result_token_batch(tokenizer, problems[:2])
    for p, ids, pos in zip(problems, rows, targets):
        values = [line.rsplit("= ", 1)[1] for line in p.solution.splitlines() if line.count("=") == 2]
        assert len(values) == len(p.steps) >= 2
        assert [tokenizer.decode([ids[i + 1]]).strip() for i in pos] == values
        assert all(tokenizer.convert_ids_to_tokens(ids[i]) == "Ġ=" for i in pos)


def test_stage0_probe_says_where_a_wrong_worked_solution_first_leaves_the_gold_one():
    """A wrong fetched operand, wrong arithmetic, another step and a missing line are told apart;
    only the first difference counts (a wrong result makes the next line's operand wrong too)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.stage0_probe import first_departure

    gold = "cost = 3 * 4 = 12\nchange = 20 - 12 = 8\nThe answer is 8."
    assert first_departure("cost = 3 * 4 = 13\nchange = 20 - 13 = 7\nThe answer is 7.", gold) == "result"
    assert first_departure("cost = 3 * 4 = 12\nchange = 20 - 21 = 1\nThe answer is 1.", gold) == "operand"
    assert first_departure("cost = 3 + 4 = 7\nchange = 20 - 7 = 13\nThe answer is 13.", gold) == "step"
    assert first_departure("total = 3 * 4 = 12\nThe answer is 12.", gold) == "step"
    assert first_departure("cost = 3 * 4 = 12\nThe answer is 12.", gold) == "other"
    assert first_departure("cost = 3 * 4 = 12\nchange = 20 - 12 = 8\nThe answer is 9.", gold) == "other"


def test_stage0_probe_breaks_down_a_finished_demo_runs_cot_answers(tmp_path):
    """`--demo-runs`: the run's own config draws the held-out split its rows answer; counts by
    family and the first departure of each wrong answer, checked against the rows written here."""
    import dataclasses
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.stage0_probe import demo_run_breakdown, main
    from fastcomt.config import config_from_dict
    from fastcomt_recipes.demo import DemoConfig, demo_splits

    small = {"seed": 5, "sft_problems": 4, "rl_problems": 4, "replay_documents": 0, "pretrain": {"num_documents": 6}}
    cfg = config_from_dict(DemoConfig, {**small, "eval": {"id_problems": 6, "ood_problems": 1, "gsm8k_problems": 0}})
    held = demo_splits(cfg)["synthetic"]
    (tmp_path / "results.json").write_text(json.dumps({"config": dataclasses.asdict(cfg)}))
    rows = []
    for i, p in enumerate(held):  # every other answer wrong: its first line's result off by one
        lines = p.solution.splitlines()
        if i % 2:
            head, result = lines[0].rsplit(" = ", 1)
            lines[0] = f"{head} = {int(result) + 1}"
        rows.append({"question": p.question, "response": "\n".join(lines), "correct": not i % 2})
    rows_dir = tmp_path / "eval" / "0_base_cot" / "rows"
    rows_dir.mkdir(parents=True)
    (rows_dir / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    got = demo_run_breakdown(tmp_path)
    assert got["seed"] == 5
    assert got["cot_first_departures"] == {"operand": 0, "result": 3, "step": 0, "other": 0}
    families = {p.family for p in held}
    assert got["cot_problems_by_family"] == {f: sum(p.family == f for p in held) for f in sorted(families)}
    for f in families:
        right = sum(r["correct"] for r, p in zip(rows, held) if p.family == f)
        assert got["cot_accuracy_by_family"][f] == right / got["cot_problems_by_family"][f]
    with pytest.raises(SystemExit):  # not a finished run: a one-line usage error
        main(["--demo-runs", str(tmp_path / "missing")])
