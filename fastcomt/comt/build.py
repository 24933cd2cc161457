"""Build a CoMT (or CoT) data set: problems in, filtered JSONL records out, resumable.

    build_comt_data({"source": "gsm8k", "mode": "offline", "output": "data/gsm8k_comt.jsonl"})

Modes: `offline` (abstract annotated solutions, no model), `teacher` (an OpenAI-compatible teacher
writes the meta-thought), `cot` (the benchmark's own worked solution, for the CoT-SFT baseline).
Kept records go to `output`, rejected ones (with every filter's verdict) to `<stem>.rejected.jsonl`;
a rerun skips ids present in either file, so a crash or an interrupted teacher run resumes where it
stopped. `<stem>.report.json` (written atomically) counts kept, rejected and each filter's failures
over both files.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from fastcomt.atomic_io import write_json_atomic
from fastcomt.config import config_from_dict, config_to_dict
from fastcomt.jsonl import JsonlAppender, iter_jsonl_dicts
from fastcomt.tasks import Problem, load_benchmark, synthetic_problems

from .cot import cot_target
from .filters import DEFAULT_ALLOWED_CONSTANTS, FilterSettings, run_filters
from .offline import OFFLINE_VERSION, OfflineAbstractionError, offline_meta_thought
from .records import ComtRecord, record_ids
from .teacher import PROMPT_VERSION, teacher_messages, teacher_outcome

__all__ = [
    "TeacherSettings",
    "FilterConfig",
    "ComtDataConfig",
    "build_comt_data",
    "load_source_problems",
    "data_paths",
    "build_settings",
]


@dataclass
class TeacherSettings:
    """Where the teacher is and how to sample it (passed to TeacherClient and its requests)."""

    base_url: str = "http://localhost:8000/v1"  # OpenAI-compatible server root, or its API root ending in /v1
    model: str = ""  # model name sent with each request
    cache_dir: str = ".cache/teacher"  # replies kept on disk: a rerun answers finished requests from here
    max_concurrency: int = 8  # requests in flight at once
    timeout: float = 60.0  # seconds per request before it counts as failed (and is retried)
    max_retries: int = 5  # retries of a request on connection errors, timeouts, 429 and 5xx (exponential backoff)
    temperature: float = 0.0  # teacher sampling temperature; 0: greedy
    max_tokens: int = 512  # longest reply in tokens
    include_solution: bool = True  # show the teacher the worked solution next to the problem
    batch_size: int = 64  # replies per durable write: a crash loses at most one batch of requests


@dataclass
class FilterConfig:
    # numbers a meta-thought may state although the question does not (units, "twice", percents);
    # any other number fails the leak filter
    allowed_constants: list[float] = field(default_factory=lambda: list(DEFAULT_ALLOWED_CONSTANTS))
    min_steps: int = 1  # fewest plan steps a kept record may have
    max_steps: int = 16  # most plan steps a kept record may have
    min_chars: int = 10  # shortest meta-thought text kept, in characters
    max_chars: int = 2000  # longest meta-thought text kept, in characters
    answer_rel_tol: float = 1e-6  # consistency filter: relative tolerance against a decimal gold answer

    def settings(self) -> FilterSettings:
        return FilterSettings(
            allowed_constants=tuple(self.allowed_constants),
            min_steps=self.min_steps,
            max_steps=self.max_steps,
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            answer_rel_tol=self.answer_rel_tol,
        )


@dataclass
class ComtDataConfig:
    """One data set to build. `limit` keeps the first N problems; synthetic uses num_problems/seed/families."""

    output: str  # JSONL of kept records; <stem>.rejected.jsonl and <stem>.report.json go next to it
    source: str = "synthetic"  # synthetic, or a benchmark name for tasks.load_benchmark (e.g. gsm8k)
    split: str = "train"  # benchmark split
    # offline: abstract the annotated solutions (no model); teacher: an OpenAI-compatible teacher writes
    # the meta-thought; cot: the benchmark's own worked solution (the CoT-SFT baseline)
    mode: Literal["offline", "teacher", "cot"] = "offline"
    limit: int | None = None  # keep the first N problems; null: all
    num_problems: int = 1000  # synthetic: problems generated
    seed: int = 0  # synthetic: generator seed
    families: list[str] | None = None  # synthetic: problem families; null: all
    teacher: TeacherSettings = field(default_factory=TeacherSettings)  # mode teacher: where the teacher is
    filters: FilterConfig = field(default_factory=FilterConfig)  # checks a meta-thought must pass to be kept


class CompletionClient(Protocol):
    def complete_many(self, list_of_messages: list[list[dict[str, str]]], **params: Any) -> list[str]: ...


def data_paths(output: str | Path) -> tuple[Path, Path, Path]:
    """(kept records, rejected records, report) for an output path."""
    out = Path(output)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out, out.with_name(f"{stem}.rejected.jsonl"), out.with_name(f"{stem}.report.json")


def load_source_problems(config: ComtDataConfig) -> list[Problem]:
    """The problems a config names, in a fixed order, cut to `limit`."""
    if config.source == "synthetic":
        problems = synthetic_problems(config.num_problems, seed=config.seed, families=config.families)
    else:
        problems = list(load_benchmark(config.source, split=config.split))
    if config.limit is not None:
        if config.limit < 0:
            raise ValueError(f"limit: expected a non-negative int or null, got {config.limit}")
        problems = problems[: config.limit]
    return problems


def build_comt_data(
    config: ComtDataConfig | Mapping[str, Any], *, client: CompletionClient | None = None, progress: bool = False
) -> dict[str, Any]:
    """Build (or resume) the data set; returns the report that is also written beside it.

    client: the teacher for mode="teacher"; by default a TeacherClient from `config.teacher`.
    """
    cfg = config if isinstance(config, ComtDataConfig) else config_from_dict(ComtDataConfig, config)
    if cfg.mode == "teacher" and client is None:
        if not cfg.teacher.model:
            raise ValueError("teacher.model: expected the teacher's model name for mode='teacher', got ''")
        from .teacher_client import TeacherClient  # only teacher mode needs the HTTP client

        client = TeacherClient(
            cfg.teacher.base_url,
            cfg.teacher.model,
            cache_dir=cfg.teacher.cache_dir,
            max_concurrency=cfg.teacher.max_concurrency,
            timeout=cfg.teacher.timeout,
            max_retries=cfg.teacher.max_retries,
        )
    settings = cfg.filters.settings()
    started = time.perf_counter()
    problems = load_source_problems(cfg)
    kept_path, rejected_path, report_path = data_paths(cfg.output)
    done = record_ids(kept_path) | record_ids(rejected_path)
    todo = [p for p in problems if p.id not in done]
    batch_size = cfg.teacher.batch_size if cfg.mode == "teacher" else 512
    if batch_size < 1:
        raise ValueError(f"teacher.batch_size: expected a positive int, got {batch_size}")
    new_kept = new_rejected = 0
    bar = _progress_bar(len(todo), progress)
    with JsonlAppender(kept_path) as kept, JsonlAppender(rejected_path) as rejected:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            if cfg.mode == "teacher":
                replies = client.complete_many(  # type: ignore[union-attr]
                    [teacher_messages(p, include_solution=cfg.teacher.include_solution) for p in batch],
                    temperature=cfg.teacher.temperature,
                    max_tokens=cfg.teacher.max_tokens,
                )
                if len(replies) != len(batch):
                    raise RuntimeError(f"teacher returned {len(replies)} replies for {len(batch)} prompts")
                rows = [_teacher_row(p, r, cfg, settings) for p, r in zip(batch, replies)]
            elif cfg.mode == "offline":
                rows = [_offline_row(p, settings) for p in batch]
            else:
                rows = [_cot_row(p) for p in batch]
            good = [row for ok, row in rows if ok]
            kept.write_many(good)
            rejected.write_many([row for ok, row in rows if not ok])
            new_kept += len(good)
            new_rejected += len(rows) - len(good)
            bar.update(len(batch))
    bar.close()
    report = _report(cfg, kept_path, rejected_path)
    report.update(
        problems=len(problems),
        skipped_existing=len(problems) - len(todo),
        new_kept=new_kept,
        new_rejected=new_rejected,
        elapsed_s=round(time.perf_counter() - started, 3),
    )
    write_json_atomic(report_path, report)
    return report


def _record_row(problem: Problem, kind: str, target: str, provenance: dict[str, Any]) -> dict[str, Any]:
    record = ComtRecord(
        problem.id, problem.source or "unknown", kind, problem.question, target, problem.answer, provenance
    )
    return record.to_dict()


def _rejected_row(problem: Problem, provenance: dict[str, Any], target: str | None) -> dict[str, Any]:
    return {
        "id": problem.id,
        "source": problem.source,
        "question": problem.question,
        "answer": problem.answer,
        "target": target,
        "provenance": provenance,
    }


def _offline_row(problem: Problem, settings: FilterSettings) -> tuple[bool, dict[str, Any]]:
    method = "synthetic-plan" if problem.quantities else "annotated-solution"
    provenance: dict[str, Any] = {"mode": "offline", "method": method, "version": OFFLINE_VERSION}
    try:
        text = offline_meta_thought(problem).render()
    except OfflineAbstractionError as exc:
        provenance["filters"] = {"abstract": {"name": "abstract", "passed": False, "detail": str(exc)}}
        return False, _rejected_row(problem, provenance, None)
    outcome = run_filters(text, problem.question, problem.answer, settings)
    provenance["filters"] = {r.name: r.to_dict() for r in outcome.results}
    if not outcome.passed:
        return False, _rejected_row(problem, provenance, text)
    return True, _record_row(problem, "meta_thought", outcome.thought.render(), provenance)  # type: ignore[union-attr]


def _teacher_row(
    problem: Problem, reply: str, cfg: ComtDataConfig, settings: FilterSettings
) -> tuple[bool, dict[str, Any]]:
    target, outcome, verdicts = teacher_outcome(problem, reply, settings)
    provenance = {
        "mode": "teacher",
        "teacher_model": cfg.teacher.model,
        "prompt_version": PROMPT_VERSION,
        "params": {
            "temperature": cfg.teacher.temperature,
            "max_tokens": cfg.teacher.max_tokens,
            "include_solution": cfg.teacher.include_solution,
        },
        "filters": verdicts,
        "raw_reply": reply,
    }
    if not outcome.passed or target is None:
        return False, _rejected_row(problem, provenance, target)
    return True, _record_row(problem, "meta_thought", target, provenance)


def _cot_row(problem: Problem) -> tuple[bool, dict[str, Any]]:
    provenance: dict[str, Any] = {"mode": "cot", "method": "benchmark-solution"}
    try:
        return True, _record_row(problem, "cot", cot_target(problem), provenance)
    except ValueError as exc:
        provenance["filters"] = {"solution": {"name": "solution", "passed": False, "detail": str(exc)}}
        return False, _rejected_row(problem, provenance, None)


def _report(cfg: ComtDataConfig, kept_path: Path, rejected_path: Path) -> dict[str, Any]:
    failures: Counter[str] = Counter()
    rejected_total = 0
    if rejected_path.exists():
        for row in iter_jsonl_dicts(rejected_path):
            rejected_total += 1
            for name, verdict in (row.get("provenance", {}).get("filters") or {}).items():
                if not verdict.get("passed", False):
                    failures[name] += 1
    kept_total, chars = 0, 0
    for row in iter_jsonl_dicts(kept_path):
        kept_total += 1
        chars += len(row["target"])
    return {
        "output": str(kept_path),
        "rejected_file": str(rejected_path),
        "config": config_to_dict(cfg),
        "kept_total": kept_total,
        "rejected_total": rejected_total,
        "filter_failures": dict(sorted(failures.items())),
        "mean_target_chars": round(chars / kept_total, 1) if kept_total else 0.0,
    }


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="problem", desc="comt data")


def build_settings(data: Any) -> dict[str, Any]:
    """The data-build config an SFT config's `data` section (train/config.py: DataConfig) describes:
    `data.build`, written to `data.train`; `data.limit` limits the problems built too, unless
    `data.build.limit` is set. `fastcomt data` and `fastcomt sft` build the same set from it."""
    settings: dict[str, Any] = {"output": str(data.train)}
    if data.limit is not None:
        settings["limit"] = data.limit
    return {**settings, **(data.build or {})}
