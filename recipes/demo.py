"""`fastcomt demo`: the paper's pipeline at toy scale, on CPU, measured.

0. base model: a tiny Qwen2 built from a config and pre-trained (`recipes/pretrain.py`) on worked
   solutions under their own question and on plans with their executions under unrelated
   questions: it can solve a problem step by step and carry out a plan, but has never written a
   plan for a question;
1. CoMT SFT: offline meta-thoughts (plans over variable names, no numbers computed) for synthetic
   problems; the loss covers the plans (each ending with the execution marker), with execution
   documents rehearsed alongside (`train.sft` with a `data.extra` file written by `recipes/replay.py`);
2. CCRL: per problem a plan, then G executions of it, rewarded for the answer plus calibrated
   step confidence (`train.rl`);
3. evaluation (greedy) after each stage on held-out synthetic problems of the training families,
   on one family no stage ever trained on (out of distribution), and on a GSM8K test slice; CCRL's
   effect on answer accuracy and on step ECE is reported with paired 95% intervals.

`compare=true` (or `--compare`) also runs the paper's baseline on the same budget: CoT SFT on the
full executions, then GRPO (lam = 0) on CoT rollouts; and the ablation that isolates the
calibration term: GRPO (lam = 0) from the same CoMT SFT model. It prints the paper-style table.
`kernels_smoke=true` runs the fused-kernel smoke check (fused vs plain torch) instead.

Everything lands under `output_dir` (runs/demo); finished stages are not redone on a rerun.
The defaults below are configs/demo.yaml's (a test keeps the two equal).
What the numbers do and do not show: recipes/DEMO.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from fastcomt.atomic_io import write_json_atomic
from fastcomt.comt.build import build_comt_data
from fastcomt.comt.offline import offline_meta_thought
from fastcomt.config import apply_overrides, config_from_dict, config_to_dict, load_config
from fastcomt.eval.runner import evaluate, load_rows
from fastcomt.jsonl import iter_jsonl_dicts
from fastcomt.metrics.paired import paired_accuracy, paired_ece
from fastcomt.rollout import TransformersEngine
from fastcomt.tasks import SYNTHETIC_FAMILIES, load_benchmark, synthetic_problems
from fastcomt.tokenizer import load_tokenizer
from fastcomt.train.config import SFTConfig, check_optim_counts
from fastcomt.train.rl import run_rl
from fastcomt.train.rl_config import RLConfig, check_rl_config
from fastcomt.train.sft import run_sft
from fastcomt_recipes.kernels_smoke import run_smoke
from fastcomt_recipes.pretrain import PretrainConfig, check_document_settings, run_pretrain
from fastcomt_recipes.replay import replay_problems, write_replay_data
from fastcomt_recipes.stage_checks import StageChecks, gold_plan_execution, stage_warnings

__all__ = [
    "DemoConfig",
    "EvalSettings",
    "main",
    "run_demo",
    "demo_splits",
    "training_families",
    "pretrain_settings",
    "rl_settings",
    "plan_exact_rate",
]

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


@dataclass
class EvalSettings:
    id_problems: int = 500  # held-out problems of the training families (questions no training set holds)
    ood_problems: int = 200  # held-out problems of `ood_family` (out of distribution)
    gsm8k_problems: int = 50  # first N GSM8K test problems; 0: skip GSM8K
    batch_size: int = 128  # problems per engine call
    max_new_tokens: int = 64  # greedy execution budget in tokens
    plan_max_new_tokens: int = 96  # greedy plan budget in tokens
    base_problems: int = (
        500  # the pre-trained base is evaluated on this many ID problems only (SFT's effect is paired on them)
    )
    bootstrap_resamples: int = 1000  # paired bootstrap replicates for the 95% intervals


@dataclass
class DemoConfig:
    """The demo's stages. `pretrain`, `sft` and `rl` hold keys of `fastcomt_recipes.pretrain.PretrainConfig`,
    `train.config.SFTConfig` and `train.rl_config.RLConfig` (merged over the demo's own choices)."""

    output_dir: str = "runs/demo"  # every stage's folder, report.md, results.json, plots
    seed: int = 0  # seeds of every stage and data split
    ood_family: str = "ages"  # synthetic family left out of every training stage (the out-of-distribution column)
    sft_problems: int = 2000  # synthetic problems whose offline meta-thoughts are the SFT data
    rl_problems: int = 2000  # synthetic problems in the RL prompt pool
    # execution documents rehearsed during SFT (recipes/replay.py; a data.extra file with loss_on
    # execution), so the tiny base keeps executing while it learns to plan; 0: none
    replay_documents: int = 2000
    # stage 0 (base model): PretrainConfig keys merged over the demo's; see `fastcomt pretrain --help`
    pretrain: dict[str, Any] = field(
        default_factory=lambda: {
            "num_documents": 36000,
            "arithmetic_documents": 6750,
            "tokenizer_problems": 800,
            "own_question_fraction": 0.5,
            "own_question_response": "cot",
            "other_question_loss_on": "without_values",
            "model": {"hidden_size": 64, "num_layers": 4, "num_heads": 4, "num_kv_heads": 4, "intermediate_size": 128},
            "optim": {
                "lr": 3.0e-3,
                "warmup_steps": 10,
                "row_tokens": 512,
                "tokens_per_step": 1024,
                "rows_per_forward": 2,
                "epochs": 1,
            },
        }
    )
    # stage 1: SFTConfig keys merged over the demo's (which sets data, model and tokenizer paths);
    # see `fastcomt sft --help`
    sft: dict[str, Any] = field(
        default_factory=lambda: {
            "loss": "torch",
            "optim": {
                "lr": 1.0e-3,
                "warmup_steps": 10,
                "row_tokens": 512,
                "tokens_per_step": 1024,
                "rows_per_forward": 2,
                "epochs": 2,
            },
        }
    )
    # stage 2: RLConfig keys merged over the demo's (which sets paths, data and format); see `fastcomt rl --help`
    rl: dict[str, Any] = field(
        default_factory=lambda: {
            "steps": 100,
            "rollout": {
                "problems_per_step": 8,
                "executions_per_plan": 8,
                "temperature": 1.0,
                "max_new_tokens": 64,
                "plan_max_new_tokens": 96,
            },
            "reward": {"lam": 0.5},
            "loss": {"loss_type": "dapo", "old_logprobs": "recompute", "lm_head": "torch", "micro_batch_tokens": 8192},
            "optim": {"lr": 3.0e-5, "warmup_steps": 0, "min_lr_ratio": 1.0},
        }
    )
    # extra RLConfig keys for the two GRPO runs of `compare` (reward.lam is 0); see `fastcomt rl --help`
    baseline_rl: dict[str, Any] = field(default_factory=dict)
    eval: EvalSettings = field(default_factory=EvalSettings)  # greedy evaluation after each stage
    # what each stage must reach before the next one's effects mean anything (recipes/stage_checks.py);
    # a stage below its bar is reported with a plain warning
    checks: StageChecks = field(default_factory=StageChecks)
    # run the whole demo once per seed (each under <output_dir>/seed-<s>, a finished seed is not rerun)
    # and print every stage's metrics and every paired effect per seed with their mean and range
    # (recipes/demo_seeds.py; --seeds 0,1,2); null: one run with `seed`
    seeds: list[int] | None = None
    # also run the paper's baseline (CoT SFT, then GRPO with lam 0) and GRPO from the CoMT SFT model
    # (the calibration term's ablation) on the same budget (--compare)
    compare: bool = False
    kernels_smoke: bool = False  # only run the fused kernels against their plain-torch references (--kernels-smoke)
    progress: bool = True  # progress bars


# --- data ------------------------------------------------------------------------------------------


def training_families(cfg: DemoConfig) -> list[str]:
    """Every synthetic family but `ood_family`, the one no training stage sees."""

    if cfg.ood_family not in SYNTHETIC_FAMILIES:
        raise ValueError(f"ood_family: expected one of {SYNTHETIC_FAMILIES}, got {cfg.ood_family!r}")
    return [f for f in SYNTHETIC_FAMILIES if f != cfg.ood_family]


def demo_splits(cfg: DemoConfig) -> dict[str, Any]:
    """Training families, and held-out problems whose question text no training problem has."""

    families = training_families(cfg)
    pre = cfg.pretrain
    n_docs, pre_seed = int(pre.get("num_documents", 4000)), int(pre.get("seed", cfg.seed))
    seen = {p.question for p in synthetic_problems(n_docs, seed=pre_seed, families=families)}
    # the unrelated questions the base model's documents are shown under (recipes/pretrain.py)
    seen |= {p.question for p in synthetic_problems(n_docs, seed=pre_seed + 2, families=families)}
    seen |= {p.question for p in synthetic_problems(cfg.sft_problems, seed=cfg.seed + 100, families=families)}
    seen |= {p.question for p in synthetic_problems(cfg.rl_problems, seed=cfg.seed + 200, families=families)}
    for problems in replay_problems(cfg.replay_documents, seed=_replay_seed(cfg), families=families):
        # the rehearsed documents and the questions they sit under
        seen |= {p.question for p in problems}

    def held_out(n: int, seed: int, fams: list[str]) -> list:
        # Small numbers make repeats likely: draw more and drop any question a training set holds.
        pool = synthetic_problems(3 * n + 50, seed=seed, families=fams)
        fresh, questions = [], set()
        for p in pool:
            if p.question not in seen and p.question not in questions:
                fresh.append(p)
                questions.add(p.question)
        if len(fresh) < n:
            raise RuntimeError(f"only {len(fresh)} held-out problems of {fams} are new; asked for {n}")
        return fresh[:n]

    splits = {
        "families": families,
        "synthetic": held_out(cfg.eval.id_problems, cfg.seed + 1000, families),
        "synthetic_ood": held_out(cfg.eval.ood_problems, cfg.seed + 2000, [cfg.ood_family]),
    }
    splits["gsm8k"] = (
        list(load_benchmark("gsm8k", split="test"))[: cfg.eval.gsm8k_problems] if cfg.eval.gsm8k_problems else []
    )
    return splits


# --- stages ----------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _replay_seed(cfg: DemoConfig) -> int:
    """SFT's rehearsed execution documents (recipes/replay.py) are a draw of their own."""
    return cfg.seed + 300


def pretrain_settings(cfg: DemoConfig, families: list[str], out: Path) -> dict[str, Any]:
    """The PretrainConfig keys of stage 0: `cfg.pretrain` merged over the demo's own choices. The
    demo's seed also seeds the model's initialisation, so another seed varies every random choice."""
    return _merge(
        {
            "output_dir": str(out / "0_base"),
            "seed": cfg.seed,
            "families": families,
            "progress": cfg.progress,
            "model": {"init_seed": cfg.seed},
        },
        cfg.pretrain,
    )


def check_stage_settings(cfg: DemoConfig, families: list[str], out: Path) -> None:
    """Every stage's keys and values, checked before the first stage runs: a bad `sft.*` or `rl.*`
    override fails in one line naming it now, not after minutes of pre-training. The paths that
    earlier stages will write stand in as placeholders."""
    pretrain = config_from_dict(PretrainConfig, pretrain_settings(cfg, families, out), "pretrain")
    try:
        check_document_settings(pretrain)
    except ValueError as exc:
        raise ValueError(f"pretrain.{exc}") from None
    for key in ("sft_problems", "rl_problems"):  # the held-out split is drawn around these
        if getattr(cfg, key) < 1:
            raise ValueError(f"{key}: expected an int >= 1, got {getattr(cfg, key)}")
    later = str(out / "0_base")  # a placeholder: only the keys and values are checked here
    placeholders = {"output_dir": later, "data": {"train": later}, "model": {"path": later}}
    sft = config_from_dict(SFTConfig, _merge(placeholders, cfg.sft), "sft")
    check_optim_counts(pretrain.optim, "pretrain.optim")
    check_optim_counts(sft.optim, "sft.optim")
    runs = [("rl", "comt", {})]
    if cfg.compare:  # the GRPO runs of --compare, as _compare builds them
        no_calibration = _merge({"reward": {"lam": 0.0}}, cfg.baseline_rl)
        runs += [("rl or baseline_rl", "cot", no_calibration), ("rl or baseline_rl", "comt", no_calibration)]
    for stage, fmt, extra in runs:
        rl = config_from_dict(RLConfig, rl_settings(cfg, later, later, out / "2_rl", fmt, extra), stage)
        try:
            check_rl_config(rl)
        except ValueError as exc:
            raise ValueError(f"{stage}: {exc}") from None


def _pretrain(cfg: DemoConfig, families: list[str], out: Path) -> dict[str, Any]:

    return run_pretrain(pretrain_settings(cfg, families, out))


def _sft(cfg: DemoConfig, base: dict[str, Any], families: list[str], out: Path, mode: str) -> dict[str, Any]:

    run_dir = out / ("1_sft_comt" if mode == "offline" else "1_sft_cot")
    data = run_dir / "data.jsonl"
    if not data.exists():
        build_comt_data(
            {
                "output": str(data),
                "source": "synthetic",
                "mode": mode,
                "num_problems": cfg.sft_problems,
                "seed": cfg.seed + 100,
                "families": families,
            }
        )
    extra = []
    if cfg.replay_documents:
        replay = run_dir / "replay.jsonl"
        if not replay.exists():
            write_replay_data(replay, cfg.replay_documents, seed=_replay_seed(cfg), families=families)
        extra.append({"path": str(replay), "loss_on": "execution"})
    settings = _merge(
        {
            "output_dir": str(run_dir / "train"),
            "data": {"train": str(data), "extra": extra},
            "model": {"path": base["model_dir"]},
            "tokenizer": {"kind": "pretrained", "path": base["tokenizer_dir"]},
            "seed": cfg.seed,
            "progress": cfg.progress,
        },
        cfg.sft,
    )
    summary_path = run_dir / "train" / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    return run_sft(settings)


def rl_settings(
    cfg: DemoConfig,
    sft_dir: str,
    tokenizer_dir: str,
    output_dir: str | Path,
    fmt: str = "comt",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The RLConfig keys of the demo's RL stage from `sft_dir`: its prompt pool (new problems of the
    training families), `cfg.rl` and then `extra` merged over them."""
    return _merge(
        {
            "output_dir": str(output_dir),
            "model": {"path": sft_dir},
            "tokenizer": tokenizer_dir,
            "format": fmt,
            "data": {
                "source": "synthetic",
                "num_problems": cfg.rl_problems,
                "seed": cfg.seed + 200,
                "families": training_families(cfg),
            },
            "seed": cfg.seed,
            "progress": cfg.progress,
        },
        _merge(cfg.rl, extra or {}),
    )


def _rl(
    cfg: DemoConfig, sft_dir: str, tokenizer_dir: str, out: Path, fmt: str, extra: dict[str, Any], name: str
) -> dict[str, Any]:

    run_dir = out / name
    settings = rl_settings(cfg, sft_dir, tokenizer_dir, run_dir, fmt, extra)
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        done = json.loads(summary_path.read_text())
        if not done.get("interrupted") and done.get("steps") == done.get("total_steps"):
            return done
    return run_rl(settings)


def _evaluate(
    model_dir: str,
    tokenizer_dir: str,
    splits: dict[str, Any],
    fmt: str,
    out_dir: Path,
    cfg: DemoConfig,
    limit: int | None = None,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], float]:

    started = time.perf_counter()
    tokenizer = load_tokenizer(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    benchmarks = {name: splits[name] for name in ("synthetic", "synthetic_ood", "gsm8k") if splits.get(name)}
    if limit is not None:
        benchmarks = {"synthetic": splits["synthetic"][:limit]}
    with TransformersEngine(model, max_batch_samples=max(cfg.eval.batch_size, 1)) as engine:
        summary = evaluate(
            engine,
            tokenizer,
            benchmarks,
            fmt=fmt,
            out_dir=out_dir,
            batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.eval.max_new_tokens,
            plan_max_new_tokens=cfg.eval.plan_max_new_tokens,
            seed=cfg.seed,
            model_name=str(Path(model_dir).resolve()),
            progress=cfg.progress,
        )
    rows = {name: load_rows(out_dir, name) for name in benchmarks}
    return summary, rows, time.perf_counter() - started


def _gold_plan_check(base: dict[str, Any], problems: list, cfg: DemoConfig) -> dict[str, Any]:
    """The base model's greedy executions of the problems' gold plans (stage 0's check), saved
    next to the base model's evaluations so a rerun does not redo them."""
    path = Path(cfg.output_dir) / "eval" / "0_base_gold_plan.json"
    if path.is_file():
        done = json.loads(path.read_text())
        if done.get("n") == len(problems) and done.get("model_dir") == base["model_dir"]:
            return done
    tokenizer = load_tokenizer(base["tokenizer_dir"])
    model = AutoModelForCausalLM.from_pretrained(base["model_dir"], dtype=torch.float32)
    with TransformersEngine(model, max_batch_samples=max(cfg.eval.batch_size, 1)) as engine:
        result = gold_plan_execution(
            engine, tokenizer, problems, max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size
        )
    result["model_dir"] = base["model_dir"]
    write_json_atomic(path, result)
    return result


# --- report ----------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def plan_exact_rate(rows: Sequence[dict[str, Any]], problems: Sequence[Any]) -> float | None:
    """Share of evaluated CoMT responses whose plan is, line for line, the problem's offline
    meta-thought (the plan SFT trains on): None when no row has a plan (CoT)."""

    gold = {p.id: offline_meta_thought(p).render().strip() for p in problems}
    planned = [r for r in rows if r.get("plan") is not None and r["id"] in gold]
    if not planned:
        return None
    return sum(r["plan"].strip() == gold[r["id"]] for r in planned) / len(planned)


def _stage_row(
    name: str,
    fmt: str,
    summary: dict[str, Any] | None,
    train_tokens: int | None,
    seconds: float | None,
    plan_exact: float | None = None,
) -> str:
    """One table row; train_tokens / seconds None: the row trained nothing of its own ("-")."""
    cost = f"{'-' if train_tokens is None else train_tokens} | {'-' if seconds is None else f'{seconds:.0f}'}"
    if summary is None:
        return f"| {name} | {fmt} | - | - | - | - | - | - | - | - | {cost} |"
    per = summary["benchmarks"]
    syn = per.get("synthetic", {})
    ood = per.get("synthetic_ood", {})
    gsm = per.get("gsm8k", {})
    return (
        f"| {name} | {fmt} | {_pct(syn.get('format_rate'))} | {_pct(plan_exact)} | {_pct(syn.get('step_accuracy'))} | "
        f"{_pct(syn.get('accuracy'))} | {_pct(ood.get('accuracy'))} | {_pct(gsm.get('accuracy'))} | "
        f"{_num(syn.get('ece'))} | {_num(syn.get('mean_response_tokens'), 1)} | {cost} |"
    )


STAGE_HEADER = (
    "| stage | format | ID format-correct (%) | ID gold plan (%) | ID step acc (%) | ID answer acc (%) | OOD answer acc (%) | "
    "GSM8K acc (%) | ID step ECE | ID response tokens | train tokens | seconds |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _paired_effect(
    cfg: DemoConfig, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Answer accuracy and step ECE of the same problems before and after a stage, with paired
    bootstrap 95% intervals (fastcomt/metrics/paired.py)."""

    kwargs = {"resamples": cfg.eval.bootstrap_resamples, "seed": cfg.seed}
    return {"accuracy": paired_accuracy(before, after, **kwargs), "ece": paired_ece(before, after, **kwargs)}


def _effect_lines(label: str, acc: dict[str, float], ece: dict[str, float]) -> list[str]:
    return [
        f"{label}: answer accuracy {100 * acc['before']:.1f}% -> {100 * acc['after']:.1f}% "
        f"(paired difference {100 * acc['diff']:+.1f} points, 95% bootstrap CI [{100 * acc['ci_low']:+.1f}, "
        f"{100 * acc['ci_high']:+.1f}], normal CI [{100 * acc['normal_low']:+.1f}, {100 * acc['normal_high']:+.1f}], "
        f"n = {acc['n']} problems)",
        f"{label}: step ECE {ece['before']:.3f} -> {ece['after']:.3f} (difference {ece['diff']:+.3f}, 95% bootstrap CI "
        f"[{ece['ci_low']:+.3f}, {ece['ci_high']:+.3f}]; {ece['steps_before']} -> {ece['steps_after']} steps)",
    ]


WHAT_IT_SHOWS = """\
What this demo shows: the CoMT + CCRL pipeline runs end to end on CPU (a base model pre-trained on
worked solutions and on plan executions, offline meta-thoughts, CoMT SFT whose loss covers the
plans, CCRL rollouts that share each plan's prefix, the calibrated reward and group advantages,
the clipped policy loss, weight sync, checkpoints, evaluation) and measures what each stage changes
on held-out problems: the base model has never written a plan for a question (CoMT format-correct
and gold-plan rates near zero) until SFT teaches it; paired 95% intervals on the same held-out
problems measure what CCRL changed in answer accuracy and in step calibration (ECE of the
execution's numeric steps).
What it does not show: anything about real LLMs or the paper's numbers. The model is tiny, the
problems are templated and the budget is minutes. SFT rehearses execution documents (replay) so
that a 0.5M-parameter model does not forget how to execute while it learns to plan, which a real
LLM would not need; the base model's execution is the bottleneck (the stage-0 check above says how
often it carries out a gold plan right; a third of them or more it gets wrong). One seed
is not a result: `fastcomt demo --seeds 0,1,2,3,4` gives the spread. An accuracy interval that
contains zero means no effect was detected. On CPU the SFT and CCRL updates use the plain-torch
LM head and CCRL's reward its plain-torch definition (same functions; the fused kernels run in
Triton's interpreter, milliseconds per trained token: bench/results/ccrl_step_cpu.md).
GSM8K is reported to be honest that a toy model scores near zero there; the out-of-distribution
family's variable names were never trained, so its plans are wrong and both recipes mostly fail."""


# --- main ------------------------------------------------------------------------------------------


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run every stage (skipping finished ones), print the tables, write report.md and results.json."""
    out = Path(cfg.output_dir)
    families = training_families(cfg)
    check_stage_settings(cfg, families, out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    lines: list[str] = ["# fastcomt demo", ""]

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    splits = demo_splits(cfg)
    say(
        f"Held out: {len(splits['synthetic'])} in-distribution problems ({', '.join(families)}), "
        f"{len(splits['synthetic_ood'])} of the unseen family '{cfg.ood_family}', {len(splits['gsm8k'])} GSM8K test problems."
    )

    base = _pretrain(cfg, families, out)
    timings["0 base (pretrain)"] = base["seconds"]
    say(
        f"[0] base model: {base['num_parameters']} parameters, vocabulary {base['vocab_size']}, "
        f"{base['train_tokens']} tokens of execution text, final loss {base['final_loss']:.3f}, {base['seconds']:.0f} s"
    )
    base_eval, base_rows, s = _evaluate(
        base["model_dir"],
        base["tokenizer_dir"],
        splits,
        "comt",
        out / "eval" / "0_base",
        cfg,
        limit=cfg.eval.base_problems,
    )
    # The base model in CoT format too: how well it solves the problems without writing a plan.
    base_cot_eval, _, s_cot = _evaluate(
        base["model_dir"],
        base["tokenizer_dir"],
        splits,
        "cot",
        out / "eval" / "0_base_cot",
        cfg,
        limit=cfg.eval.base_problems,
    )
    timings["eval base"] = s + s_cot
    base_gold = None
    if cfg.checks.gold_plan_problems:
        # Stage 0's own check: can the base model carry out a plan at all? (recipes/stage_checks.py)
        started = time.perf_counter()
        base_gold = _gold_plan_check(base, splits["synthetic"][: cfg.checks.gold_plan_problems], cfg)
        timings["eval base"] += time.perf_counter() - started
        verdict = "ok" if base_gold["accuracy"] >= cfg.checks.base_gold_plan_accuracy else "FAILED"
        say(
            f"[0] check: given the gold plan, the base model executes {100 * base_gold['accuracy']:.1f}% of "
            f"{base_gold['n']} held-out problems right (bar {100 * cfg.checks.base_gold_plan_accuracy:.0f}%): {verdict}"
        )

    sft = _sft(cfg, base, families, out, "offline")
    timings["1 CoMT SFT"] = sft["train_seconds"]  # the run's own training time: the same on a rerun
    sft_dir = str(Path(sft["checkpoint"]) / "model")
    replayed = sft.get("extra_examples", 0)
    say(
        f"[1] CoMT SFT: {sft['examples'] - replayed} plans (loss on the plan and the execution marker)"
        + (f" and {replayed} rehearsed execution documents" if replayed else "")
        + f", {sft['loss_tokens']} tokens trained, final loss {sft['final_loss']:.3f}"
    )
    sft_eval, sft_rows, s = _evaluate(sft_dir, base["tokenizer_dir"], splits, "comt", out / "eval" / "1_sft_comt", cfg)
    timings["eval CoMT SFT"] = s

    rl = _rl(cfg, sft_dir, base["tokenizer_dir"], out, "comt", {}, "2_ccrl")
    timings["2 CCRL"] = rl["train_seconds"]  # the run's own training time: the same on a rerun
    say(
        f"[2] CCRL: {rl['steps']} steps, lam = {rl['lam']}, {rl['generated_tokens']} tokens sampled, {rl['trained_tokens']} trained"
    )
    rl_eval, rl_rows, s = _evaluate(
        rl["model_dir"], base["tokenizer_dir"], splits, "comt", out / "eval" / "2_ccrl", cfg
    )
    timings["eval CCRL"] = s

    say("")
    say("Per stage (greedy decoding; ID = held-out problems of the training families):")
    say(STAGE_HEADER)
    exact = {
        name: plan_exact_rate(rows.get("synthetic", []), splits["synthetic"])
        for name, rows in (("base", base_rows), ("sft", sft_rows), ("ccrl", rl_rows))
    }
    say(
        _stage_row(
            f"0 base (pre-trained, {cfg.eval.base_problems} ID problems)",
            "comt",
            base_eval,
            base["train_tokens"],
            base["seconds"],
            exact["base"],
        )
    )
    say(_stage_row(f"0 base (pre-trained, {cfg.eval.base_problems} ID problems)", "cot", base_cot_eval, None, None))
    say(_stage_row("1 CoMT SFT", "comt", sft_eval, sft["train_tokens"], timings["1 CoMT SFT"], exact["sft"]))
    say(_stage_row("2 CCRL", "comt", rl_eval, rl["trained_tokens"], timings["2 CCRL"], exact["ccrl"]))

    sft_effect: dict[str, Any] = {}
    if base_rows.get("synthetic"):
        # What SFT changed, on the problems the base model was evaluated on (its first base_problems).
        sft_effect = _paired_effect(cfg, base_rows["synthetic"], sft_rows["synthetic"])
        say("")
        say("CoMT SFT's effect (base model -> CoMT SFT, both in CoMT format), paired on the same held-out problems:")
        for line in _effect_lines("in-distribution", sft_effect["accuracy"], sft_effect["ece"]):
            say("  " + line)

    syn = {k: ev["benchmarks"].get("synthetic", {}) for k, ev in (("sft", sft_eval), ("ccrl", rl_eval))}
    warnings = stage_warnings(
        cfg.checks,
        base_gold_plan=base_gold,
        sft_gold_plans=exact["sft"],
        sft_effect=sft_effect.get("accuracy"),
        sft_format=syn["sft"].get("format_rate"),
        ccrl_format=syn["ccrl"].get("format_rate"),
    )
    say("")
    say("Stage checks: " + ("every stage passed its check." if not warnings else f"{len(warnings)} FAILED."))
    for line in warnings:
        say("  WARNING: " + line)

    effects = {}
    say("")
    say("CCRL's effect, paired on the same held-out problems:")
    for name, label in (("synthetic", "in-distribution"), ("synthetic_ood", "out-of-distribution")):
        if sft_rows.get(name):
            effects[name] = _paired_effect(cfg, sft_rows[name], rl_rows[name])
            for line in _effect_lines(label, effects[name]["accuracy"], effects[name]["ece"]):
                say("  " + line)

    results: dict[str, Any] = {
        "config": _plain(cfg),
        "timings_s": timings,
        "base": base,
        "sft": sft,
        "rl": rl,
        "eval": {"base": base_eval, "base_cot": base_cot_eval, "sft": sft_eval, "ccrl": rl_eval},
        "plan_exact": exact,
        "sft_effect": sft_effect,
        "effects": effects,
        "checks": {"base_gold_plan": base_gold, "warnings": warnings},
    }
    _write_rl_bench(out, rl)

    if cfg.compare:
        results["compare"] = _compare(cfg, base, families, splits, out, sft, rl, rl_eval, rl_rows, timings, say)

    say("")
    say("Seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    say("")
    for line in WHAT_IT_SHOWS.splitlines():
        say(line)
    say("")
    say(f"Reports: {out / 'report.md'}, per-stage evaluation reports and reliability diagrams under {out / 'eval'}")
    _plot_rl_curve(out / "2_ccrl" / "metrics.jsonl", out / "ccrl_curve.png")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json_atomic(out / "results.json", results)
    return results


def _compare(
    cfg: DemoConfig,
    base: dict[str, Any],
    families: list[str],
    splits: dict[str, Any],
    out: Path,
    sft: dict[str, Any],
    rl: dict[str, Any],
    rl_eval: dict[str, Any],
    rl_rows: dict[str, list[dict[str, Any]]],
    timings: dict[str, float],
    say: Any,
) -> dict[str, Any]:
    """`--compare`: the paper's baseline (CoT SFT, then GRPO with lam = 0) and the calibration
    term's ablation (GRPO with lam = 0 from the CoMT SFT model), on CCRL's budget; prints the
    paper-style table and the paired effects, returns their numbers."""
    sft_dir = str(Path(sft["checkpoint"]) / "model")
    cot = _sft(cfg, base, families, out, "cot")
    timings["1 CoT SFT"] = cot["train_seconds"]  # the run's own training time: the same on a rerun
    cot_dir = str(Path(cot["checkpoint"]) / "model")
    cot_eval, cot_rows, s = _evaluate(cot_dir, base["tokenizer_dir"], splits, "cot", out / "eval" / "1_sft_cot", cfg)
    timings["eval CoT SFT"] = s
    no_calibration = _merge({"reward": {"lam": 0.0}}, cfg.baseline_rl)
    grpo = _rl(cfg, cot_dir, base["tokenizer_dir"], out, "cot", no_calibration, "2_grpo_cot")
    timings["2 GRPO (CoT)"] = grpo["train_seconds"]  # the run's own training time: the same on a rerun
    grpo_eval, grpo_rows, s = _evaluate(
        grpo["model_dir"], base["tokenizer_dir"], splits, "cot", out / "eval" / "2_grpo_cot", cfg
    )
    timings["eval GRPO"] = s
    # The ablation that isolates the calibration term: the same CoMT SFT model, the same RL
    # recipe with lam = 0 (plain GRPO on the outcome).
    comt_grpo = _rl(cfg, sft_dir, base["tokenizer_dir"], out, "comt", no_calibration, "2_grpo_comt")
    timings["2 GRPO (CoMT)"] = comt_grpo["train_seconds"]
    comt_grpo_eval, comt_grpo_rows, s = _evaluate(
        comt_grpo["model_dir"], base["tokenizer_dir"], splits, "comt", out / "eval" / "2_grpo_comt", cfg
    )
    timings["eval GRPO (CoMT)"] = s
    say("")
    say("Paper-style comparison (same base model, same SFT problems and rehearsal, same RL steps):")
    say(
        "| recipe | ID acc (%) | OOD acc (%) | GSM8K acc (%) | ID step ECE | SFT tokens trained | RL tokens trained | mean response tokens | train seconds |"
    )
    say("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, s_sum, r_sum, ev, secs in (
        ("CoT SFT + GRPO (baseline)", cot, grpo, grpo_eval, timings["1 CoT SFT"] + timings["2 GRPO (CoT)"]),
        (
            "CoMT SFT + GRPO (lam 0, ablation)",
            sft,
            comt_grpo,
            comt_grpo_eval,
            timings["1 CoMT SFT"] + timings["2 GRPO (CoMT)"],
        ),
        ("CoMT SFT + CCRL", sft, rl, rl_eval, timings["1 CoMT SFT"] + timings["2 CCRL"]),
    ):
        per = ev["benchmarks"]
        say(
            f"| {label} | {_pct(per['synthetic']['accuracy'])} | {_pct(per.get('synthetic_ood', {}).get('accuracy'))} | "
            f"{_pct(per.get('gsm8k', {}).get('accuracy'))} | {_num(per['synthetic']['ece'])} | {s_sum['loss_tokens']} | "
            f"{r_sum['trained_tokens']} | {_num(per['synthetic']['mean_response_tokens'], 1)} | {secs:.0f} |"
        )
    acc = _paired_effect(cfg, grpo_rows["synthetic"], rl_rows["synthetic"])["accuracy"]
    say(
        f"  CoMT+CCRL minus CoT+GRPO, in-distribution answer accuracy: {100 * acc['diff']:+.1f} points "
        f"(95% bootstrap CI [{100 * acc['ci_low']:+.1f}, {100 * acc['ci_high']:+.1f}], n = {acc['n']})"
    )
    # The baseline's RL stage measured like CCRL's: GRPO's paired effect over its own SFT model.
    grpo_effect = _paired_effect(cfg, cot_rows["synthetic"], grpo_rows["synthetic"])
    for line in _effect_lines(
        "GRPO's effect over CoT SFT, in-distribution", grpo_effect["accuracy"], grpo_effect["ece"]
    ):
        say("  " + line)
    # CCRL minus its lam = 0 ablation, on the same problems: what the calibration term did.
    term = {}
    for name, label in (("synthetic", "in-distribution"), ("synthetic_ood", "out-of-distribution")):
        if comt_grpo_rows.get(name):
            term[name] = _paired_effect(cfg, comt_grpo_rows[name], rl_rows[name])
            for line in _effect_lines(
                f"CCRL (lam {rl['lam']}) against GRPO (lam 0) on the CoMT SFT model, {label}",
                term[name]["accuracy"],
                term[name]["ece"],
            ):
                say("  " + line)
    return {
        "cot_sft": cot,
        "grpo": grpo,
        "comt_grpo": comt_grpo,
        "eval": {"cot_sft": cot_eval, "grpo": grpo_eval, "comt_grpo": comt_grpo_eval},
        "accuracy_comt_minus_cot": acc,
        "grpo_effect": grpo_effect,
        "calibration_term_effect": term,
    }


def _plain(cfg: DemoConfig) -> dict[str, Any]:

    return config_to_dict(cfg)


def _write_rl_bench(out: Path, rl: dict[str, Any]) -> None:
    """Mean per-step CCRL costs of this run (the numbers behind bench/results/ccrl_step_cpu.json)."""

    path = Path(rl["output_dir"]) / "metrics.jsonl"
    if not path.exists():
        return
    rows = list(iter_jsonl_dicts(path))
    if not rows:
        return
    keys = (
        "seconds",
        "time_rollout",
        "time_scoring",
        "time_update",
        "time_sync",
        "tokens_per_s",
        "rollout_tokens_per_s",
        "prefix_cache_hit_rate",
        "generated_tokens",
        "trained_tokens",
        "executions",
    )
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    write_json_atomic(out / "ccrl_step.json", {"steps": len(rows), "mean_per_step": mean})


def _plot_rl_curve(metrics: Path, target: Path) -> None:
    """Reward, accuracy and step ECE of the training rollouts per CCRL step."""
    if not metrics.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(iter_jsonl_dicts(metrics))
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("reward", "accuracy", "ece"):
        ax.plot(steps, [r[key] if r[key] is not None else float("nan") for r in rows], label=key)
    ax.set_xlabel("CCRL step")
    ax.set_title("CCRL training rollouts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)


def _load(config: str | None, overrides: Sequence[str]) -> DemoConfig:

    if config is not None:
        return load_config(config, DemoConfig, overrides)
    if DEFAULT_CONFIG.is_file():
        return load_config(DEFAULT_CONFIG, DemoConfig, overrides)
    return config_from_dict(DemoConfig, apply_overrides({}, overrides))


def main(config: str | None = None, overrides: Sequence[str] | None = None) -> int:
    """Entry of `fastcomt demo [--config FILE] [--compare] [--kernels-smoke] [key=value ...]`."""
    cfg = _load(config, list(overrides or ()))
    if cfg.kernels_smoke:
        return _kernels_smoke()
    if cfg.seeds is not None:
        from fastcomt_recipes.demo_seeds import run_demo_seeds

        started = time.perf_counter()
        run_demo_seeds(cfg)
        print(f"demo over {len(cfg.seeds)} seeds finished in {time.perf_counter() - started:.0f} s")
        return 0
    started = time.perf_counter()
    run_demo(cfg)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def _kernels_smoke() -> int:
    """Every fused LM-head kernel on a small CPU problem against its plain-torch reference."""

    rows = run_smoke()
    print("fastcomt kernel smoke (fused vs plain-torch reference)")
    header = list(rows[0].keys())
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in header) + " |")
    return 0
