"""Command-line flags of `fastcomt eval`, layered over an optional YAML config and key=value overrides.

    fastcomt eval --model PATH --benchmarks gsm8k,svamp [--limit N] [--format comt|cot] [--out DIR]

Precedence: EvalConfig defaults < `--config FILE` < `key=value` overrides < flags.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_eval_arguments", "eval_config_from_args", "run_eval_from_args"]

# flag dest -> EvalConfig field
_FLAG_FIELDS = {
    "model": "model",
    "tokenizer": "tokenizer",
    "benchmarks": "benchmarks",
    "split": "split",
    "format": "format",
    "limit": "limit",
    "out": "out_dir",
    "batch_size": "batch_size",
    "max_new_tokens": "max_new_tokens",
    "plan_max_new_tokens": "plan_max_new_tokens",
    "system_prompt": "system_prompt",
    "seed": "seed",
    "engine": "engine",
    "device": "device",
    "dtype": "dtype",
}


def _benchmark_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated benchmark names, got {text!r}")
    return names


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the eval flags (and `--config`, positional `key=value` overrides) to `parser`."""
    parser.add_argument("--config", default=None, help="YAML file with EvalConfig fields")
    parser.add_argument("--model", default=None, help="Hugging Face model directory (model + tokenizer)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's)")
    parser.add_argument("--benchmarks", type=_benchmark_list, default=None,
                        help="comma-separated: gsm8k,svamp,asdiv,mawps,tabmwp,gsm_hard,gsm_symbolic,synthetic")  # fmt: skip
    parser.add_argument("--split", default=None, help="benchmark split (default test)")
    parser.add_argument("--format", choices=("comt", "cot"), default=None, help="response format (default comt)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    parser.add_argument("--out", default=None, help="output directory (rows, summary.json, report.md)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="problems per engine call")
    parser.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None)
    parser.add_argument("--plan-max-new-tokens", dest="plan_max_new_tokens", type=int, default=None)
    parser.add_argument("--system-prompt", dest="system_prompt", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--engine", choices=("transformers", "sglang"), default=None)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default=None)
    parser.add_argument("overrides", nargs="*", help="EvalConfig overrides as key=value")
    return parser


def eval_config_from_args(args: argparse.Namespace) -> Any:
    """The EvalConfig that parsed `args` describe (see the precedence in the module docstring)."""
    from fastcomt.train.config import apply_overrides, config_from_dict, config_to_dict, load_config

    from .evaluate import EvalConfig

    overrides = list(getattr(args, "overrides", None) or ())
    if getattr(args, "config", None):
        config = load_config(args.config, EvalConfig, overrides)
    else:
        config = config_from_dict(EvalConfig, apply_overrides({}, overrides))
    data = config_to_dict(config)
    for dest, key in _FLAG_FIELDS.items():
        value = getattr(args, dest, None)
        if value is not None:
            data[key] = value
    return config_from_dict(EvalConfig, data)


def run_eval_from_args(args: argparse.Namespace) -> int:
    """Run the evaluation parsed `args` describe; returns the exit status."""
    from .evaluate import run_config, summary_line

    config = eval_config_from_args(args)
    print(summary_line(run_config(config), config.out_dir))
    return 0
