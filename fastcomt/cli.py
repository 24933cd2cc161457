"""The `fastcomt` command: data | sft | rl | eval | pretrain | demo.

Every subcommand takes `--config FILE` (YAML, documented in configs/README.md) and `key=value`
overrides (dotted keys reach nested sections); `eval` also takes flags for its common settings.
`fastcomt <command> --help` lists every key of the command's config with its type, default and meaning.
Errors in a config name the key and the type that was expected: a user error (missing config, unknown
key, wrong type, missing model, bad data) prints one line and exits with status 2; `--debug` shows
the traceback instead. Configs and the paths they name are checked before torch is imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class _Command:
    """A config-driven subcommand: its entry, its config dataclass and what its --help says."""

    module: str
    entry: str  # takes (config_path, overrides), returns an exit status
    help: str
    config: str  # "module:Class", imported only to print this command's --help
    example: str
    note: str = ""


# Modules are imported only when their subcommand runs (or prints its help), so `fastcomt --help`
# stays fast: some import torch and transformers, several seconds on a CPU machine.
_COMMANDS: dict[str, _Command] = {
    "data": _Command(
        module="fastcomt.train.data_command",
        entry="main",
        help="build CoMT (meta-thought) or CoT SFT data from problems",
        config="fastcomt.comt.build:ComtDataConfig",
        example="fastcomt data --config configs/sft-synthetic-comt.yaml",
        note="FILE is a data-build config (the keys below at its top level) or an SFT config, whose data.build\n"
        "section (these keys; `output` defaults to data.train) is built; overrides then use the SFT config's\n"
        "keys (data.build.num_problems=200; data.limit=200 limits the problems built unless data.build.limit\n"
        "is set), and every key is checked as `fastcomt sft` checks it.",
    ),
    "sft": _Command(
        module="fastcomt.train.sft",
        entry="main",
        help="supervised fine-tuning (CoMT plans or CoT) with the fused linear CE",
        config="fastcomt.train.config:SFTConfig",
        example="fastcomt sft --config configs/sft-synthetic-comt.yaml optim.epochs=1",
    ),
    "pretrain": _Command(
        module="fastcomt_recipes.pretrain",
        entry="main",
        help="stage 0 of the demo: pre-train a tiny base model on executions",
        config="fastcomt_recipes.pretrain:PretrainConfig",
        example="fastcomt pretrain --config base.yaml num_documents=2000 optim.lr=1e-3",
        note="FILE is required (there is no shipped one): a YAML mapping of the keys below, at least output_dir;\n"
        "configs/demo.yaml's `pretrain` section is an example.",
    ),
    "rl": _Command(
        module="fastcomt.train.rl",
        entry="main",
        help="CCRL (or GRPO with lambda=0) on the fused policy loss",
        config="fastcomt.train.rl_config:RLConfig",
        example="fastcomt rl --config configs/rl-synthetic-ccrl.yaml rollout.executions_per_plan=16 steps=50",
    ),
    "demo": _Command(
        module="fastcomt_recipes.demo",
        entry="main",
        help="the whole pipeline at toy scale on CPU (the embedded default)",
        config="fastcomt_recipes.demo:DemoConfig",
        example="fastcomt demo --compare rl.steps=10 sft.optim.lr=3e-4",
        note="Without --config the demo reads configs/demo.yaml, which holds these defaults.\n"
        "pretrain, sft, rl and baseline_rl take the keys of `fastcomt pretrain --help`,\n"
        "`fastcomt sft --help` and `fastcomt rl --help`, merged over the demo's own choices.",
    ),
}

_OVERRIDES = (
    "Keys are set in the YAML file or as KEY=VALUE arguments after it: dotted keys reach nested\n"
    "sections (optim.lr=3e-4), values are parsed as YAML (3 is an int, null is None, [a, b] a list)."
)
_EVAL_HELP = "evaluate a model on the benchmarks: accuracy and step calibration"


class _LazyEpilogParser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog is built only when its help is printed (it imports a config
    module, which may import torch)."""

    def __init__(self, *args, epilog_factory: Callable[[], str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self._epilog_factory is not None and self.epilog is None:
            self.epilog = self._epilog_factory()
        return super().format_help()


def config_epilog(name: str) -> str:
    """The help epilog of config-driven subcommand `name`: how overrides work, an example, every key."""
    from fastcomt.config_help import format_config_keys

    command = _COMMANDS[name]
    module_name, class_name = command.config.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    parts = [_OVERRIDES, f"example:\n  {command.example}"]
    if command.note:
        parts.append(command.note)
    parts.append(f"keys of {class_name} (type; default, then meaning):\n{format_config_keys(cls)}")
    return "\n\n".join(parts)


def _selected_command(argv: Sequence[str]) -> str | None:
    # The top level takes no option but -h, so its first other word names the subcommand.
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def _build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; the eval flags are added only when `argv` selects eval (they import its package)."""
    parser = argparse.ArgumentParser(prog="fastcomt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback (any position)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_LazyEpilogParser)
    for name, command in _COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog_factory=lambda name=name: config_epilog(name),
        )
        p.add_argument("--config", default=None, metavar="FILE", help="YAML config file (keys below)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys for nesting)")
        p.add_argument("--debug", action="store_true", help="on an error, show the traceback")
        if name == "demo":
            p.add_argument(
                "--compare",
                action="store_true",
                help="also run the paper's baseline (CoT SFT, then GRPO with lam=0) and GRPO from the CoMT SFT "
                "model (the calibration term's ablation) on the same budget",
            )
            p.add_argument(
                "--kernels-smoke",
                action="store_true",
                help="only run the fused kernels against their plain-torch references",
            )
            p.add_argument(
                "--seeds",
                default=None,
                metavar="S,S,...",
                help="run the whole demo once per seed (e.g. 0,1,2,3,4) and print every stage's metrics "
                "and paired effects per seed with their mean and range (the `seeds` key)",
            )
    eval_parser = sub.add_parser(
        "eval", help=_EVAL_HELP, description=_EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    eval_parser.add_argument("--debug", action="store_true", help="on an error, show the traceback")
    if _selected_command(argv) == "eval":
        from fastcomt.eval.cli_args import add_eval_arguments

        add_eval_arguments(eval_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `--debug` is taken anywhere on the line (after the subcommand too), so it is removed before parsing.
    debug = "--debug" in argv
    argv = [word for word in argv if word != "--debug"]
    args = _build_parser(argv).parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        if debug:
            raise
        # Outside a training step (loading, building): nothing to checkpoint. Inside one, the trainers
        # catch SIGINT themselves, checkpoint and exit with the same status.
        print(f"fastcomt {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from fastcomt.cli_errors import EXIT_USAGE, user_error_line

        line = user_error_line(exc)
        if debug or line is None:
            raise
        print(f"fastcomt {args.command}: error: {line}", file=sys.stderr)
        return EXIT_USAGE


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C


def _run(args: argparse.Namespace) -> int:
    from fastcomt.cli_errors import check_eval_model, preflight

    if args.command == "eval":
        from fastcomt.eval.cli_args import eval_config_from_args, run_eval_from_args

        config = eval_config_from_args(args)
        check_eval_model(config.model, config.tokenizer)
        return int(run_eval_from_args(args) or 0)
    overrides = list(args.overrides)
    try:
        preflight(args.command, args.config, overrides)
    except ValueError as exc:  # a key or value of the file: name the file too
        if args.config is None or str(args.config) in str(exc):
            raise
        raise ValueError(f"{args.config}: {exc}") from exc
    if args.command == "demo":
        overrides += ["compare=true"] * args.compare + ["kernels_smoke=true"] * args.kernels_smoke
        if args.seeds is not None:
            overrides.append(f"seeds=[{args.seeds}]")
    command = _COMMANDS[args.command]
    func = getattr(importlib.import_module(command.module), command.entry)
    return int(func(args.config, overrides) or 0)


if __name__ == "__main__":
    sys.exit(main())
