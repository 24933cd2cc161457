"""The `fastcomt` command: data | sft | rl | eval | demo.

Every subcommand takes `--config FILE` (YAML, documented in configs/README.md) and `key=value`
overrides (dotted keys reach nested sections); `eval` also takes flags for its common settings.
Errors in a config name the key and the type that was expected.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, entry, help). An entry takes (config_path, overrides) and returns an exit
# status. Modules are imported only when their subcommand runs, so `fastcomt --help` stays fast.
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "data": ("fastcomt.comt.build", "main", "build CoMT (meta-thought) or CoT SFT data from problems"),
    "sft": ("fastcomt.train.sft", "main", "supervised fine-tuning (CoMT plans or CoT) with the fused linear CE"),
    "pretrain": ("fastcomt.train.pretrain", "main", "stage 0 of the demo: pre-train a tiny base model on executions"),
    "rl": ("fastcomt.train.rl", "main", "CCRL (or GRPO with lambda=0) on the fused policy loss"),
    "demo": ("fastcomt.demo", "main", "the whole pipeline at toy scale on CPU (the embedded default)"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcomt", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in _SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, metavar="FILE", help="YAML config file (see configs/README.md)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys for nesting)")
        if name == "demo":
            p.add_argument("--compare", action="store_true",
                           help="also run the paper's baseline (CoT SFT, then GRPO with lam=0) on the same budget")
            p.add_argument("--kernels-smoke", action="store_true",
                           help="only run the fused kernels against their plain-torch references")
    from fastcomt.eval.cli_args import add_eval_arguments

    help_text = "evaluate a model on the benchmarks: accuracy and step calibration"
    add_eval_arguments(sub.add_parser("eval", help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "eval":
        from fastcomt.eval.cli_args import run_eval_from_args

        return int(run_eval_from_args(args) or 0)
    overrides = list(args.overrides)
    if args.command == "demo":
        overrides += ["compare=true"] * args.compare + ["kernels_smoke=true"] * args.kernels_smoke
    module_name, func_name, _ = _SUBCOMMANDS[args.command]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args.config, overrides) or 0)


if __name__ == "__main__":
    sys.exit(main())
