"""The settings of one evaluation run (`fastcomt eval`): a plain dataclass, no torch.

Kept apart from `runner.py` (which imports the rollout engines, hence torch and transformers) so
that `fastcomt eval --help`, which lists these keys, answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .report import IN_DISTRIBUTION, OUT_OF_DISTRIBUTION

__all__ = ["PAPER_BENCHMARKS", "EvalConfig"]

PAPER_BENCHMARKS: tuple[str, ...] = IN_DISTRIBUTION + OUT_OF_DISTRIBUTION


@dataclass
class EvalConfig:
    """One evaluation run (YAML for `fastcomt eval --config`; flags override it). Each field's
    comment is its meaning in `fastcomt eval --help`."""

    model: str = ""  # Hugging Face model directory (weights and tokenizer); required
    tokenizer: str | None = None  # tokenizer directory; null: the model's
    # benchmark names (tasks.load_benchmark); default: the paper's seven
    benchmarks: list[str] = field(default_factory=lambda: list(PAPER_BENCHMARKS))
    split: str = "test"  # benchmark split
    format: Literal["comt", "cot"] = "comt"  # comt: plan, then execution; cot: the solution only
    limit: int | None = None  # first N problems of each benchmark; null: all
    out_dir: str = "runs/eval"  # output directory: rows, summary.json, report.md, reliability diagram
    batch_size: int = 32  # problems per engine call
    max_new_tokens: int = 512  # generation budget of an execution (CoT: of the response), in tokens
    plan_max_new_tokens: int | None = None  # generation budget of a CoMT plan, in tokens; null: max_new_tokens
    system_prompt: str | None = None  # system message before each question; null: none
    seed: int = 0  # generation seed
    # step confidence from its tokens' log-probs, as the CCRL reward computes it: geomean (geometric
    # mean of the probabilities), min (the least likely token), first (the first token)
    confidence: Literal["geomean", "min", "first"] = "geomean"
    n_bins: int = 10  # bins of the step-confidence ECE and the reliability diagram
    tau: float = 0.9  # a wrong step at or above this confidence counts as an overconfident error
    engine: Literal["transformers", "sglang"] = "transformers"  # transformers: in-process, any device; sglang: GPU
    device: str = "auto"  # auto: cuda when available, else cpu
    # the weights' dtype; auto: bfloat16 on a GPU, float32 on CPU
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_batch_samples: int = 256  # transformers engine: samples decoded together
    progress: bool = True  # progress bar
