"""`fastcomt <command> --help` documents every config key; `fastcomt --help` stays free of torch."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest

from fastcomt import cli
from fastcomt.config_help import config_keys, field_comments, format_config_keys

CONFIG_COMMANDS = ["data", "sft", "pretrain", "rl", "demo"]


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _config_class(command: str) -> type:
    module_name, class_name = cli._COMMANDS[command].config.split(":")
    return getattr(importlib.import_module(module_name), class_name)


# --- the key lister on a small dataclass ------------------------------------------------------------


@dataclass
class _Inner:
    """Inner section."""

    width: int = 3  # how wide
    mode: Literal["a", "b"] | None = None


@dataclass
class _Outer:
    # the run folder
    # (two comment lines)
    out: str
    # a comment followed by a blank line belongs to no field

    plain: float = 1e-3
    inner: _Inner = field(default_factory=lambda: _Inner(width=7))  # an inner section with its own defaults
    names: list[str] = field(default_factory=list)
    table: dict[str, int] | None = None  # a mapping  # noqa: E501

    def method(self) -> None:
        local: int = 1  # not a field
        del local


def test_field_comments_come_from_the_lines_above_and_the_fields_own_lines() -> None:
    comments = field_comments(_Outer)
    assert comments["out"] == "the run folder (two comment lines)"
    assert comments["plain"] == ""  # the comment above it is cut off by a blank line
    assert comments["inner"] == "an inner section with its own defaults"  # on the statement's last line
    assert comments["names"] == ""  # tool pragmas are not descriptions
    assert comments["table"] == "a mapping"
    assert "local" not in comments  # a method's body holds no fields


def test_config_keys_walk_sections_with_their_parents_defaults() -> None:
    rows = {row.key: row for row in config_keys(_Outer)}
    assert list(rows) == ["out", "plain", "inner.width", "inner.mode", "names", "table"]
    assert (rows["out"].type, rows["out"].default) == ("str", "required")
    assert (rows["plain"].type, rows["plain"].default) == ("float", "0.001")
    assert rows["inner.width"].default == "7"  # the parent's default_factory, not _Inner's own 3
    assert (rows["inner.mode"].type, rows["inner.mode"].default) == ("one of: a, b, null", "null")
    assert (rows["names"].type, rows["names"].default) == ("list of str", "[]")
    assert (rows["table"].type, rows["table"].default) == ("mapping of str to int | null", "null")
    text = format_config_keys(_Outer)
    assert "  inner.*: _Inner section\n      an inner section with its own defaults\n" in text
    assert "  inner.width: int; default 7\n      how wide\n" in text


def test_config_keys_reject_a_non_dataclass() -> None:
    with pytest.raises(TypeError, match="cls: expected a dataclass type"):
        config_keys(dict)


# --- every subcommand's help ------------------------------------------------------------------------


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_help_lists_every_key_with_type_default_and_meaning(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, command)
    lines = text.splitlines()
    rows = config_keys(_config_class(command))
    assert rows
    undocumented = [row.key for row in rows if not row.description.strip()]
    assert not undocumented, f"add a comment to these config fields: {undocumented}"
    for row in rows:
        default = "required" if row.default == "required" else f"default {row.default}"
        head = f"  {row.key}: {row.type}; {default}"
        assert head in lines, f"{command} --help lacks {head!r}"
        meaning = lines[lines.index(head) + 1]
        assert meaning.startswith("      ") and row.description.startswith(meaning.strip()), (row.key, meaning)
    assert "dotted keys" in text and "parsed as YAML" in text
    assert f"example:\n  fastcomt {command} " in text


@pytest.mark.parametrize(
    ("command", "line"),
    [
        ("rl", "  loss.loss_type: one of: grpo, bnpo, dapo, dr_grpo; default dapo"),
        ("rl", "  optim.lr: float; default 1e-06"),  # RLConfig's own optimizer default, not OptimConfig's
        ("rl", "  rollout.plan_temperature: float | null; default null"),
        ("rl", "  model.*: ModelConfig section, required"),
        ("sft", "  optim.lr: float; default 0.001"),
        ("sft", "  data.train: str; required"),
        ("pretrain", "  tokenizer.kind: one of: number_word, bpe, pretrained; default number_word"),
        (
            "data",
            "  filters.allowed_constants: list of float; default [0, 0.01, 1, 2, 7, 10, 12, 24, 52, 60, 100, 1000]",
        ),
        ("demo", "  baseline_rl: mapping; default {}"),
        ("demo", "  sft_problems: int; default 2000"),  # configs/demo.yaml's value: one set of demo defaults
    ],
)
def test_help_renders_types_and_defaults(command: str, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert line in _help(capsys, command).splitlines()


def test_demo_help_points_its_stage_sections_to_their_commands(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(capsys, "demo").split())  # undo the wrapping
    for command in ("pretrain", "sft", "rl"):
        assert f"`fastcomt {command} --help`" in text


def test_eval_help_explains_every_flag_and_every_other_key(capsys: pytest.CaptureFixture[str]) -> None:
    from fastcomt.eval.cli_args import _FLAG_FIELDS
    from fastcomt.eval.runner import EvalConfig

    parser = cli._build_parser(["eval"])
    eval_parser = parser._subparsers._group_actions[0].choices["eval"]
    undocumented = [a.dest for a in eval_parser._actions if not (a.help or "").strip()]
    assert not undocumented, f"eval flags without help: {undocumented}"
    lines = _help(capsys, "eval").splitlines()
    for f in dataclasses.fields(EvalConfig):
        if f.name in _FLAG_FIELDS.values():
            continue
        heads = [i for i, line in enumerate(lines) if line.startswith(f"  {f.name}: ")]
        assert heads, f"eval --help lacks the key {f.name!r}"
        assert lines[heads[0] + 1].strip(), f"eval --help: key {f.name!r} has no description"


def test_overrides_and_demo_flags_still_parse() -> None:
    args = cli._build_parser(["demo"]).parse_args(["demo", "--compare", "rl.steps=10", "sft.optim.lr=3e-4"])
    assert (args.command, args.compare, args.overrides) == ("demo", True, ["rl.steps=10", "sft.optim.lr=3e-4"])
    args = cli._build_parser(["eval"]).parse_args(["eval", "--model", "m", "--limit", "3", "tau=0.8"])
    assert (args.model, args.limit, args.overrides) == ("m", 3, ["tau=0.8"])


# --- speed: what `--help` imports ---------------------------------------------------------------------

_IMPORTS_AFTER_HELP = """
import json, sys
from fastcomt.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps({name: name in sys.modules for name in ("torch", "transformers")}))
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["rl", "--help"], ["sft", "--help"], ["data", "--help"], ["eval", "--help"]]
)
def test_help_imports_no_torch(argv: list[str]) -> None:
    # A fresh interpreter: this test process may have imported torch already.
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_AFTER_HELP, *argv], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: fastcomt" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"torch": False, "transformers": False}


def test_top_level_summary_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    summary = next(line for line in text.splitlines() if line.startswith("The `fastcomt` command:"))
    for command in [*cli._COMMANDS, "eval"]:
        assert f" {command}" in summary, f"the summary line omits {command}: {summary}"
    assert "--debug" in text
