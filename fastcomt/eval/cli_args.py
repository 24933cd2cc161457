"""Command-line flags of `fastcomt eval`, layered over an optional YAML config and key=value overrides.

    fastcomt eval --model PATH --benchmarks gsm8k,svamp [--limit N] [--format comt|cot] [--out DIR]

Precedence: EvalConfig defaults < `--config FILE` < `key=value` overrides < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import typing
from typing import Any

from fastcomt.config_help import default_text, field_comments, type_text

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
    """Add the eval flags (and `--config`, positional `key=value` overrides) to `parser`; its epilog
    lists the EvalConfig keys that have no flag. Defaults shown are EvalConfig's."""
    from .eval_config import EvalConfig

    d = EvalConfig()
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file with EvalConfig keys (the flags and the keys listed below)",
    )
    parser.add_argument("--model", default=None, help="Hugging Face model directory (model + tokenizer); required")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's)")
    parser.add_argument(
        "--benchmarks",
        type=_benchmark_list,
        default=None,
        help="comma-separated: gsm8k,svamp,asdiv,mawps,tabmwp,gsm_hard,gsm_symbolic,synthetic "
        f"(default: {','.join(d.benchmarks)})",
    )
    parser.add_argument("--split", default=None, help=f"benchmark split (default {d.split})")
    parser.add_argument(
        "--format",
        choices=("comt", "cot"),
        default=None,
        help=f"response format: comt (plan, then execution) or cot (default {d.format})",
    )
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark (default: all)")
    parser.add_argument(
        "--out", default=None, help=f"output directory: rows, summary.json, report.md (default {d.out_dir})"
    )
    parser.add_argument(
        "--batch-size",
        dest="batch_size",
        type=int,
        default=None,
        help=f"problems per engine call (default {d.batch_size})",
    )
    parser.add_argument(
        "--max-new-tokens",
        dest="max_new_tokens",
        type=int,
        default=None,
        help=f"generation budget of an execution (CoT: of the response), in tokens (default {d.max_new_tokens})",
    )
    parser.add_argument(
        "--plan-max-new-tokens",
        dest="plan_max_new_tokens",
        type=int,
        default=None,
        help="generation budget of a CoMT plan, in tokens (default: --max-new-tokens)",
    )
    parser.add_argument(
        "--system-prompt",
        dest="system_prompt",
        default=None,
        help="system message before each question (default: none)",
    )
    parser.add_argument("--seed", type=int, default=None, help=f"generation seed (default {d.seed})")
    parser.add_argument(
        "--engine",
        choices=("transformers", "sglang"),
        default=None,
        help=f"transformers: in-process, any device; sglang: in-process SGLang, GPU (default {d.engine})",
    )
    parser.add_argument(
        "--device",
        default=None,
        help=f"auto, cpu, cuda, cuda:1 ... (default {d.device}: cuda when available, else cpu)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default=None,
        help=f"weights' dtype; auto: bfloat16 on a GPU, float32 on CPU (default {d.dtype})",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="EvalConfig overrides (values parsed as YAML); precedence: defaults < --config < KEY=VALUE < flags",
    )
    parser.epilog = _key_only_epilog(EvalConfig)
    return parser


def _key_only_epilog(config_cls: type) -> str:
    hints = typing.get_type_hints(config_cls)
    comments = field_comments(config_cls)  # the meaning written beside each field
    defaults = config_cls()
    lines = ["keys without a flag (set them in --config FILE or as KEY=VALUE):"]
    for f in dataclasses.fields(config_cls):
        if f.name in _FLAG_FIELDS.values():
            continue
        lines.append(f"  {f.name}: {type_text(hints[f.name])}; default {default_text(getattr(defaults, f.name))}")
        lines += textwrap.wrap(comments.get(f.name, ""), width=100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def eval_config_from_args(args: argparse.Namespace) -> Any:
    """The EvalConfig that parsed `args` describe (see the precedence in the module docstring)."""
    from fastcomt.config import apply_overrides, config_from_dict, config_to_dict, load_config

    from .eval_config import EvalConfig

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
    from .runner import run_config, summary_line

    config = eval_config_from_args(args)
    print(summary_line(run_config(config), config.out_dir))
    return 0
