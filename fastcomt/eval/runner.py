"""Benchmark evaluation: greedy responses through a rollout engine, graded, written as they finish.

    summary = evaluate(engine, tokenizer, ["gsm8k", "svamp"], fmt="comt", out_dir="runs/eval")

Per problem one response in the chosen format (`fastcomt.formats`; CoMT is the two-stage plan then
execution, as CCRL samples it) is graded: final answer, format, and the numeric steps of the
execution. Each step's confidence is the one CCRL rewards (`fastcomt.rewards.step_confidences`,
the reward kernel's): the geometric mean of its tokens' sampled probabilities ("geomean",
`exp(mean log-prob)` over the step's tokens; "min" and "first" are options); its correctness
follows `tasks.step_correctness` (gold values, else local arithmetic, else outcome).

Files under `out_dir`:
- `rows/<benchmark>.jsonl`: one row per problem, appended per batch with flush + fsync; a rerun
  skips the problems already there, so a crashed evaluation resumes where it stopped;
- `eval_config.json`: the settings that decide the responses; a rerun with other settings into the
  same folder is refused rather than mixing responses of two setups;
- `summary.json` (atomic), `report.md` (atomic, `report.render_report`) and `reliability.png`
  (every step of every benchmark).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastcomt.atomic_io import write_json_atomic, write_text_atomic
from fastcomt.formats import FORMATS, ProblemRollout, check_format, generate, token_char_offsets
from fastcomt.jsonl import JsonlAppender, iter_jsonl_dicts
from fastcomt.rewards import CONFIDENCE_MODES, step_confidences
from fastcomt.rollout.engine import RolloutEngine
from fastcomt.rollout.types import SamplingParams
from fastcomt.tasks import GradedCompletion, Problem, grade_completion, load_benchmark

from .eval_config import PAPER_BENCHMARKS, EvalConfig  # EvalConfig lives apart so `eval --help` needs no torch
from .report import render_report, summarize_rows

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "PAPER_BENCHMARKS",
    "EvalConfig",
    "score_rollout",
    "score_rollouts",
    "evaluate",
    "load_rows",
    "build_engine",
    "run_config",
    "summary_line",
    "main",
]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _json_answer(answer: float | str) -> float | str:
    return answer if isinstance(answer, str) else float(answer)


def score_rollouts(
    rollouts: Sequence[ProblemRollout],
    tokenizer: PreTrainedTokenizerBase,
    *,
    confidence: str = "geomean",
    benchmark: str = "",
) -> list[dict[str, Any]]:
    """One result row per rollout, for its first (plan, execution): answer, format, steps, tokens.

    A step's confidence is `fastcomt.rewards.step_confidences` (one reward-kernel launch for the
    batch); a step with no token of its own has none and is left out of the row's steps, as CCRL's
    calibration metrics leave it out.
    """
    executions = [r.plans[0].executions[0] for r in rollouts]
    decoded = [token_char_offsets(tokenizer, e.token_ids) for e in executions]
    graded = [grade_completion(text, r.problem, offsets) for r, (text, offsets) in zip(rollouts, decoded)]
    confidences = step_confidences([e.logprobs for e in executions], graded, confidence=confidence)
    return [_row(r, text, g, conf, benchmark) for r, (text, _), g, conf in zip(rollouts, decoded, graded, confidences)]


def score_rollout(
    rollout: ProblemRollout, tokenizer: PreTrainedTokenizerBase, *, confidence: str = "geomean", benchmark: str = ""
) -> dict[str, Any]:
    """`score_rollouts` for one rollout."""
    return score_rollouts([rollout], tokenizer, confidence=confidence, benchmark=benchmark)[0]


def _row(
    rollout: ProblemRollout, text: str, graded: GradedCompletion, confidences: Sequence[float | None], benchmark: str
) -> dict[str, Any]:
    problem = rollout.problem
    plan = rollout.plans[0]
    execution = plan.executions[0]
    response = rollout.response_text()
    check = check_format(response, rollout.fmt, problem.question)
    steps = [
        {"value": s.value, "confidence": c, "correct": z, "source": source, "tokens": list(span)}
        for s, c, z, source, span in zip(
            graded.steps, confidences, graded.step_correct, graded.step_source, graded.token_spans
        )
        if c is not None
    ]
    response_tokens = len(rollout.response_ids())
    return {
        "id": problem.id,
        "benchmark": benchmark or problem.source,
        "fmt": rollout.fmt,
        "question": problem.question,
        "gold": _json_answer(problem.answer),
        "response": response,
        "plan": plan.plan_text if rollout.fmt == "comt" else None,
        "execution": text,
        "answer": graded.answer,
        "correct": bool(graded.answer_correct),  # lenient: a last-number guess counts as an answer
        "answer_stated": check.ends_with_answer,  # strict accuracy: correct and stated as "The answer is N."
        "format_ok": check.ok,
        "format_reasons": list(check.reasons),
        "finish_reason": execution.finish_reason,
        "plan_finish_reason": plan.plan.finish_reason if plan.plan is not None else None,
        "response_tokens": response_tokens,
        "plan_tokens": len(plan.plan_ids),
        "execution_tokens": len(execution.token_ids),
        "generated_tokens": len(execution.token_ids) + (len(plan.plan.token_ids) if plan.plan is not None else 0),
        "steps": steps,
    }


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return value


def _resolve_benchmarks(
    benchmarks: Sequence[str] | Mapping[str, Sequence[Problem]], split: str, limit: int | None
) -> list[tuple[str, list[Problem]]]:
    if isinstance(benchmarks, str):
        raise TypeError("benchmarks: expected a sequence of names (or a name -> problems mapping), got a single str")
    if isinstance(benchmarks, Mapping):
        items = [(name, list(problems)) for name, problems in benchmarks.items()]
    else:
        items = [(name, None) for name in benchmarks]
    if not items:
        raise ValueError("benchmarks: expected at least one benchmark")
    resolved = []
    for name, problems in items:
        if not isinstance(name, str) or not _SAFE_NAME.match(name):
            raise ValueError(f"benchmarks: expected names of letters, digits, '_', '.', '-', got {name!r}")
        if problems is None:
            problems = list(load_benchmark(name, split=split))
        for i, p in enumerate(problems):
            if not isinstance(p, Problem):
                raise TypeError(f"benchmarks[{name!r}][{i}]: expected Problem, got {type(p).__name__}")
        if limit is not None:
            problems = problems[:limit]
        ids = [p.id for p in problems]
        if len(set(ids)) != len(ids):
            raise ValueError(f"benchmarks[{name!r}]: expected unique problem ids (rows are keyed by id), got repeats")
        resolved.append((name, problems))
    names = [n for n, _ in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmarks: each benchmark once, got {names}")
    return resolved


def _check_run_config(path: Path, settings: dict[str, Any]) -> None:
    """Refuse to append to rows made under other settings (a resumed run must match its start)."""
    if path.exists():
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise ValueError(
                f"out_dir: {path.parent} holds rows made with other settings (differs in {changed}); "
                "use a new out_dir or the original settings"
            )
    else:
        write_json_atomic(path, settings)


def load_rows(out_dir: str | Path, benchmark: str) -> list[dict[str, Any]]:
    """The rows written so far for one benchmark (a torn last line is ignored)."""
    path = Path(out_dir) / "rows" / f"{benchmark}.jsonl"
    return list(iter_jsonl_dicts(path)) if path.exists() else []


def evaluate(
    engine: RolloutEngine,
    tokenizer: PreTrainedTokenizerBase,
    benchmarks: Sequence[str] | Mapping[str, Sequence[Problem]],
    *,
    fmt: str = "comt",
    out_dir: str | Path,
    limit: int | None = None,
    split: str = "test",
    batch_size: int = 32,
    max_new_tokens: int = 512,
    plan_max_new_tokens: int | None = None,
    system: str | None = None,
    seed: int = 0,
    confidence: str = "geomean",
    n_bins: int = 10,
    tau: float = 0.9,
    model_name: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate (or resume evaluating) benchmarks with greedy decoding; returns the summary.

    benchmarks: names for `tasks.load_benchmark` (with `split`), or a mapping name -> problems.
    limit: the first `limit` problems of each benchmark.
    batch_size: problems per engine call (CoMT makes two calls per batch: plans, then executions).
    model_name: recorded in eval_config.json, so a rerun with another model is refused.
    The summary (also summary.json) holds per-benchmark metrics, the in-distribution,
    out-of-distribution and overall averages, and the pooled step calibration (see report.py).
    """
    if not isinstance(engine, RolloutEngine):
        raise TypeError(f"engine: expected a RolloutEngine, got {type(engine).__name__}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    if confidence not in CONFIDENCE_MODES:
        raise ValueError(f"confidence: expected one of {CONFIDENCE_MODES}, got {confidence!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit: expected a non-negative int or None, got {limit!r}")
    batch_size = _positive_int(batch_size, "batch_size")
    max_new_tokens = _positive_int(max_new_tokens, "max_new_tokens")
    if plan_max_new_tokens is not None:
        plan_max_new_tokens = _positive_int(plan_max_new_tokens, "plan_max_new_tokens")
    if out_dir is None:
        raise ValueError("out_dir: expected a directory for the rows and the summary")
    out = Path(out_dir)
    resolved = _resolve_benchmarks(benchmarks, split, limit)

    sampling = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    plan_sampling = (
        SamplingParams(temperature=0.0, max_new_tokens=plan_max_new_tokens or max_new_tokens) if fmt == "comt" else None
    )
    settings = {
        "fmt": fmt,
        "split": split,
        "max_new_tokens": max_new_tokens,
        "plan_max_new_tokens": plan_max_new_tokens if fmt == "comt" else None,
        "system": system,
        "seed": seed,
        "confidence": confidence,
        "model": model_name,
        "vocab_size": len(tokenizer),
    }
    out.mkdir(parents=True, exist_ok=True)
    _check_run_config(out / "eval_config.json", settings)

    bar = _progress(sum(len(p) for _, p in resolved), progress)
    rows_by_benchmark: dict[str, list[dict[str, Any]]] = {}
    for name, problems in resolved:
        path = out / "rows" / f"{name}.jsonl"
        with JsonlAppender(path) as appender:  # opening it cuts a torn last line
            done = {row["id"]: row for row in iter_jsonl_dicts(path)}
            todo = [p for p in problems if p.id not in done]
            bar.update(len(problems) - len(todo))
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                rollouts = generate(
                    engine, tokenizer, batch, sampling, fmt, seed=seed, system=system, plan_sampling=plan_sampling
                )
                rows = score_rollouts(rollouts, tokenizer, confidence=confidence, benchmark=name)
                appender.write_many(rows)
                done.update((row["id"], row) for row in rows)
                bar.update(len(batch))
        # Summarise exactly the requested problems, in benchmark order (a smaller limit on a rerun
        # reports the first problems only).
        rows_by_benchmark[name] = [done[p.id] for p in problems]
    bar.close()

    summary = summarize_rows(rows_by_benchmark, n_bins=n_bins, tau=tau)
    summary["settings"] = settings
    summary["out_dir"] = str(out)
    write_json_atomic(out / "summary.json", summary)
    pooled = [(s["confidence"], s["correct"]) for rows in rows_by_benchmark.values() for r in rows for s in r["steps"]]
    diagram = None
    if pooled:
        from .reliability import write_reliability_diagram

        diagram = write_reliability_diagram(
            out / "reliability.png",
            [c for c, _ in pooled],
            [z for _, z in pooled],
            n_bins=n_bins,
            title=f"{fmt} steps",
        )
    write_text_atomic(out / "report.md", render_report(summary, diagram=diagram.name if diagram else None))
    return summary


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="problem", desc="eval")


# --- command line ------------------------------------------------------------------------------


def _torch_dtype(name: str, device: Any) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_engine(config: EvalConfig) -> tuple[RolloutEngine, PreTrainedTokenizerBase]:
    """The engine and tokenizer a config names (model and tokenizer read from local directories)."""
    from transformers import AutoModelForCausalLM

    from fastcomt.device import resolve_device
    from fastcomt.tokenizer import load_tokenizer

    if not config.model:
        raise ValueError("model: expected a Hugging Face model directory (saved with save_pretrained)")
    if not Path(config.model).is_dir():
        raise FileNotFoundError(f"model: directory not found: {config.model}")
    tokenizer_path = config.tokenizer or config.model
    # load_tokenizer, not AutoTokenizer: in a model folder, AutoTokenizer would swap our word-level
    # tokenizer for the model type's class; it also requires the chat template prompts are built with.
    tokenizer = load_tokenizer(tokenizer_path)
    if config.engine == "sglang":
        from fastcomt.rollout import SGLangEngine

        return SGLangEngine(config.model), tokenizer
    device = resolve_device(config.device)
    model = AutoModelForCausalLM.from_pretrained(config.model, dtype=_torch_dtype(config.dtype, device)).to(device)
    from fastcomt.rollout import TransformersEngine

    return TransformersEngine(model, max_batch_samples=config.max_batch_samples), tokenizer


def run_config(config: EvalConfig) -> dict[str, Any]:
    """Build the engine a config names, evaluate, close the engine; returns the summary."""
    _positive_int(config.n_bins, "n_bins")
    engine, tokenizer = build_engine(config)
    with engine:
        return evaluate(
            engine,
            tokenizer,
            config.benchmarks,
            fmt=config.format,
            out_dir=config.out_dir,
            limit=config.limit,
            split=config.split,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            plan_max_new_tokens=config.plan_max_new_tokens,
            system=config.system_prompt,
            seed=config.seed,
            confidence=config.confidence,
            n_bins=config.n_bins,
            tau=config.tau,
            model_name=str(Path(config.model).resolve()),
            progress=config.progress,
        )


def main(config_path: str | None = None, overrides: Sequence[str] = ()) -> int:
    """`fastcomt eval --config FILE [key=value ...]`: evaluate and print where the report is."""
    from fastcomt.config import apply_overrides, config_from_dict, load_config

    if config_path is None:
        config = config_from_dict(EvalConfig, apply_overrides({}, list(overrides or ())))
    else:
        config = load_config(config_path, EvalConfig, list(overrides or ()))
    summary = run_config(config)
    print(summary_line(summary, config.out_dir))
    return 0


def summary_line(summary: Mapping[str, Any], out_dir: str | Path) -> str:
    """One line for the terminal: overall strict accuracy (lenient beside it) and where the report is."""
    overall = summary["groups"]["overall"]

    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return (
        f"overall accuracy {show(overall.get('strict_accuracy'))} strict (answer statement in the expected format), "
        f"{show(overall['accuracy'])} lenient (any final number) over {len(overall['benchmarks'])} benchmarks; "
        f"report: {Path(out_dir) / 'report.md'}"
    )
