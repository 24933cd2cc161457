"""The `fastcomt` command: data | sft | rl | eval | demo.

Each subcommand takes `--config FILE` (YAML, documented in configs/) and `key=value` overrides.
Subcommands whose recipe is not part of this build say so and exit with status 2 rather than
pretending to run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, function, help). The function takes (config_path, overrides) and returns
# an exit status. Modules are imported only when their subcommand runs, so `fastcomt --help` is fast.
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("fastcomt.demo", "main", "run the main job on the embedded default (CPU-sized)"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcomt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, help_text) in _SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, help="YAML config file (see configs/)")
        p.add_argument("overrides", nargs="*", help="config overrides as key=value (dotted keys for nesting)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    module_name, func_name, _ = _SUBCOMMANDS[args.command]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args.config, args.overrides) or 0)


if __name__ == "__main__":
    sys.exit(main())
