"""Stage 0 of the demo alone, over seeds: how well does the base model execute?

    python bench/stage0_probe.py --seeds 0,1,2 --name default
    python bench/stage0_probe.py --seeds 0,1,2 --name lr1e-2 pretrain.optim.lr=1e-2

Per seed it pre-trains the demo's base model (configs/demo.yaml's `pretrain`, with the given
`pretrain.*` overrides) and measures on the first `--problems` held-out in-distribution problems
of that seed's demo split:
- CoT answer accuracy (greedy, as the demo evaluates the base model in CoT format);
- gold-plan execution accuracy (greedy execution of each problem's offline meta-thought, the
  demo's stage-0 check, recipes/stage_checks.py);
- where wrong CoT answers first leave the gold solution (a wrong operand, i.e. a value fetched
  wrong, or a wrong result, i.e. arithmetic; `first_departure`) and CoT accuracy by family;
- a learning curve every `--curve-every` steps: teacher-forced accuracy of the *results* of the
  worked solutions' arithmetic (the `c` of `name = a op b = c`) on the same problems, the tokens a
  tiny model finds hard; everything else in a solution is copying.

Results go to runs/stage0/<name>/seed-<s>/probe.json; a seed already measured is not redone.

    python bench/stage0_probe.py --demo-runs runs/demo/seed-3,runs/demo/seed-4

prints the same CoT breakdown (by family, first departures) of finished demo runs' base models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from fastcomt.atomic_io import write_json_atomic
from fastcomt.comt.chat import sft_messages
from fastcomt.config import config_from_dict, load_config
from fastcomt.formats import render_response
from fastcomt.rollout import TransformersEngine
from fastcomt.tokenizer import encode_chat_examples
from fastcomt_recipes.demo import DEFAULT_CONFIG, DemoConfig, _evaluate, demo_splits, pretrain_settings
from fastcomt_recipes.pretrain import run_pretrain
from fastcomt_recipes.stage_checks import gold_plan_execution


def result_token_batch(tokenizer, problems):
    """Input ids, and the positions whose next token is an arithmetic result (`= c` after `a op b`)."""
    encoded = encode_chat_examples(
        tokenizer, [sft_messages(p.question, render_response("cot", p.solution)) for p in problems]
    )
    eq = tokenizer.convert_tokens_to_ids("Ġ=")
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    rows, targets = [], []
    for ids, flags in encoded:
        seen_eq, pos = 0, []
        for i, (t, trained) in enumerate(zip(ids, flags)):
            if t == newline:
                seen_eq = 0
            elif t == eq and trained:
                seen_eq += 1
                if seen_eq == 2 and i + 1 < len(ids):
                    pos.append(i)  # the logits at i predict the result at i + 1
        rows.append(ids)
        targets.append(pos)
    return rows, targets


@torch.no_grad()
def result_token_accuracy(model, rows, targets) -> float:
    right = total = 0
    was_training = model.training
    model.eval()
    for ids, pos in zip(rows, targets):
        if not pos:
            continue
        logits = model(torch.tensor([ids])).logits[0]
        pred = logits[pos].argmax(-1)
        gold = torch.tensor([ids[p + 1] for p in pos])
        right += int((pred == gold).sum())
        total += len(pos)
    model.train(was_training)
    return right / max(total, 1)


def _plan_first(out: Path) -> float:
    """Share of the base model's CoT-format answers that begin with a plan ("Variables:") instead
    of a worked solution: the first-token tie that made stage 0 seed-dependent."""
    rows = [
        json.loads(line) for line in (out / "eval_cot" / "rows" / "synthetic.jsonl").read_text().splitlines() if line
    ]
    return sum(r["response"].lstrip().startswith("Variables") for r in rows) / max(len(rows), 1)


def first_departure(response: str, solution: str) -> str:
    """Where a wrong worked solution first leaves the gold one, line by line (`name = a op b = c`):
    "operand" (the right step on wrong numbers, every line before it right: a value fetched wrong),
    "result" (right numbers, wrong result: arithmetic), "step" (another quantity or operator),
    "other" (a line that is not a step, a missing or extra line, the final sentence)."""
    got = [line.strip() for line in response.strip().splitlines()]
    for i, gold in enumerate(line.strip() for line in solution.strip().splitlines()):
        line = got[i] if i < len(got) else ""
        if line == gold:
            continue
        g, r = gold.split(" = "), line.split(" = ")
        if len(g) != 3 or len(r) != 3:
            return "other"
        if g[0] != r[0] or [c for c in g[1] if c in "+-*/"] != [c for c in r[1] if c in "+-*/"]:
            return "step"
        return "operand" if g[1] != r[1] else "result"
    return "other"


def cot_breakdown(rows_file: Path, held) -> dict:
    """The base model's CoT answers (an evaluation's rows file) by family, and where its wrong ones
    first go wrong; `held` holds the problems they answer."""
    by_question = {p.question: p for p in held}
    rows = [json.loads(line) for line in rows_file.read_text().splitlines() if line]
    families: dict[str, list[int]] = {}
    departures = {"operand": 0, "result": 0, "step": 0, "other": 0}
    for row in rows:
        problem = by_question[row["question"]]
        right_total = families.setdefault(problem.family, [0, 0])
        right_total[0] += bool(row["correct"])
        right_total[1] += 1
        if not row["correct"]:
            departures[first_departure(row["response"], problem.solution)] += 1
    return {
        "cot_accuracy_by_family": {f: right / total for f, (right, total) in sorted(families.items())},
        "cot_problems_by_family": {f: total for f, (_, total) in sorted(families.items())},
        "cot_first_departures": departures,
    }


def demo_run_breakdown(run_dir: Path) -> dict:
    """`cot_breakdown` of a finished demo run's base model (its eval/0_base_cot rows), on the
    held-out split that the run's own config (results.json) draws."""
    results = run_dir / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"--demo-runs: no finished demo run in {run_dir} (expected {results})")
    cfg = config_from_dict(DemoConfig, json.loads(results.read_text())["config"], "config")
    rows_file = run_dir / "eval" / "0_base_cot" / "rows" / "synthetic.jsonl"
    return {"seed": cfg.seed, **cot_breakdown(rows_file, demo_splits(cfg)["synthetic"])}


def probe(seed: int, name: str, overrides: list[str], problems: int, curve_every: int, curve_problems: int) -> dict:
    out = Path("runs/stage0") / name / f"seed-{seed}"
    done = out / "probe.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = load_config(DEFAULT_CONFIG, DemoConfig, [f"seed={seed}", f"output_dir={out}", "progress=false", *overrides])
    splits = demo_splits(cfg)
    held = splits["synthetic"][:problems]
    curve = []
    tok_cache = {}

    def on_step(step, model, tokenizer):
        if step % curve_every:
            return
        if "rows" not in tok_cache:
            tok_cache["rows"] = result_token_batch(tokenizer, held[:curve_problems])
        acc = result_token_accuracy(model, *tok_cache["rows"])
        curve.append((step, round(acc, 4)))
        print(f"  seed {seed} step {step}: result-token accuracy {acc:.3f}", flush=True)

    started = time.perf_counter()
    base = run_pretrain(pretrain_settings(cfg, splits["families"], out), on_step=on_step)
    cfg.eval.base_problems = problems
    cot, _, _ = _evaluate(
        base["model_dir"], base["tokenizer_dir"], splits, "cot", out / "eval_cot", cfg, limit=problems
    )
    from transformers import AutoModelForCausalLM

    from fastcomt.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(base["tokenizer_dir"])
    model = AutoModelForCausalLM.from_pretrained(base["model_dir"], dtype=torch.float32)
    with TransformersEngine(model, max_batch_samples=128) as engine:
        gold = gold_plan_execution(engine, tokenizer, held, max_new_tokens=cfg.eval.max_new_tokens)
    rows, targets = result_token_batch(tokenizer, held[:curve_problems])
    result = {
        "cot_plan_first": _plan_first(out),
        "seed": seed,
        "name": name,
        "overrides": overrides,
        "problems": problems,
        "cot_accuracy": cot["benchmarks"]["synthetic"]["accuracy"],
        "cot_step_accuracy": cot["benchmarks"]["synthetic"]["step_accuracy"],
        **cot_breakdown(out / "eval_cot" / "rows" / "synthetic.jsonl", held),
        "gold_plan_accuracy": gold["accuracy"],
        "gold_plan_step_accuracy": gold["step_accuracy"],
        "gold_plan_by_family": gold["accuracy_by_family"],
        "result_token_accuracy": result_token_accuracy(model, rows, targets),
        "curve": curve,
        "pretrain": base,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(done, result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--name", help="name of this setting (its folder under runs/stage0); required to probe")
    parser.add_argument(
        "--demo-runs",
        help="comma-separated finished demo runs (e.g. runs/demo/seed-3): print each base model's CoT "
        "breakdown as JSON instead of probing",
    )
    parser.add_argument("--problems", type=int, default=300, help="held-out ID problems evaluated")
    parser.add_argument("--curve-every", type=int, default=500, help="steps between learning-curve points")
    parser.add_argument("--curve-problems", type=int, default=200, help="problems of the learning curve")
    parser.add_argument("overrides", nargs="*", help="demo config overrides (pretrain.optim.lr=1e-2 ...)")
    args = parser.parse_args(argv)
    if args.demo_runs:
        runs = [Path(d) for d in args.demo_runs.split(",")]
        try:
            print(json.dumps({str(d): demo_run_breakdown(d) for d in runs}, indent=1))
        except FileNotFoundError as exc:
            parser.error(str(exc))
        return 0
    if not args.name:
        parser.error("--name: required to probe (or give --demo-runs)")
    seeds = [int(s) for s in args.seeds.split(",")]
    results = [probe(s, args.name, args.overrides, args.problems, args.curve_every, args.curve_problems) for s in seeds]
    for r in results:  # probes written before the plan-first share was recorded
        if "cot_plan_first" not in r:
            r["cot_plan_first"] = _plan_first(Path("runs/stage0") / r["name"] / f"seed-{r['seed']}")
    keys = ("cot_accuracy", "cot_plan_first", "gold_plan_accuracy", "result_token_accuracy")
    print(
        "| setting | seed | CoT answer acc (%) | CoT answers that start with a plan (%) | gold-plan execution acc (%) | "
        "arithmetic results, teacher-forced (%) | wrong CoT answers: first a wrong operand / result | final loss |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        departures = r.get("cot_first_departures")  # absent from probes written before it was recorded
        first = f"{departures['operand']} / {departures['result']}" if departures else "-"
        print(
            f"| {r['name']} | {r['seed']} | "
            + " | ".join(f"{100 * r[k]:.1f}" for k in keys)
            + f" | {first} | {r['pretrain']['final_loss']:.3f} |"
        )
    if len(results) > 1:
        stats = [[100 * r[k] for r in results] for k in keys]
        print("| mean | | " + " | ".join(f"{statistics.mean(v):.1f}" for v in stats) + " | | |")
        print("| range | | " + " | ".join(f"{min(v):.1f}-{max(v):.1f}" for v in stats) + " | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
