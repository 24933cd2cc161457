"""User errors on the command line: checked early, reported in one line, exit status 2.

`preflight(command, config, overrides)` reads and type-checks the command's config and the paths it
names (model, tokenizer, training data) with stdlib-only code, before the command's module (and with
it torch and transformers, seconds of imports) is loaded; `user_error_line(exc)` turns an error a
user can fix (a missing file, a wrong key or value, a damaged checkpoint) into the one line the
command prints. A traceback is shown only with `--debug`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastcomt.model_dir import model_dir_problem, tokenizer_dir_problem

__all__ = ["EXIT_USAGE", "UsageError", "preflight", "check_eval_model", "user_error_line"]

EXIT_USAGE = 2  # argparse's status for a usage error; the same for a wrong config, path or value


class UsageError(ValueError):
    """Something the user gave (a file, a key, a value, a path) that the command cannot use."""


# Errors whose message is the whole story for a user: a file missing or unreadable, a config key or
# value, a damaged checkpoint or data file. Their messages name the file or key (the project's style).
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


def user_error_line(exc: BaseException) -> str | None:
    """The one line to print for a user error, or None when `exc` is not one."""
    try:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            return "config: not valid YAML (" + " ".join(str(exc).split()) + ")"
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        pass
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc})"
    if not isinstance(exc, _USER_ERRORS):
        return None
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in str(exc.strerror or ""):
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message held


def _config_path(config: str | None, example: str) -> Path:
    if config is None:
        raise UsageError(f"--config: expected a YAML file (e.g. {example}), got none")
    path = Path(config)
    if not path.is_file():
        raise UsageError(f"--config: no file at {path}" + ("" if not path.is_dir() else " (it is a folder)"))
    return path


def _check(problem: str | None) -> None:
    if problem is not None:
        raise UsageError(problem)


def _preflight_sft(config: str | None, overrides: Sequence[str]) -> None:
    from fastcomt.config import load_config
    from fastcomt.train.config import SFTConfig

    cfg = load_config(_config_path(config, "configs/sft-synthetic-comt.yaml"), SFTConfig, overrides)
    if not Path(cfg.data.train).exists() and cfg.data.build is None:
        raise UsageError(
            f"data.train: no file at {cfg.data.train} and no data.build section to build it from "
            "(run `fastcomt data --config FILE` first, or add data.build)"
        )
    if cfg.model.path:
        _check(model_dir_problem(cfg.model.path, "model.path"))
    if cfg.tokenizer.kind == "pretrained":
        path = cfg.tokenizer.path or cfg.model.path
        if not path:
            raise UsageError(
                "tokenizer.path: expected a tokenizer folder (or model.path) for kind 'pretrained', got none"
            )
        _check(tokenizer_dir_problem(path, "tokenizer.path" if cfg.tokenizer.path else "model.path"))


def _preflight_rl(config: str | None, overrides: Sequence[str]) -> None:
    from fastcomt.config import load_config
    from fastcomt.train.rl_config import RLConfig, check_rl_config

    cfg = load_config(_config_path(config, "configs/rl-synthetic-ccrl.yaml"), RLConfig, overrides)
    check_rl_config(cfg)
    _check(model_dir_problem(cfg.model.path, "model.path"))
    if cfg.tokenizer:
        _check(tokenizer_dir_problem(cfg.tokenizer, "tokenizer"))
    else:
        _check(tokenizer_dir_problem(cfg.model.path, "model.path"))


def _preflight_config_file(config: str | None, overrides: Sequence[str]) -> None:
    _config_path(config, "configs/sft-synthetic-comt.yaml")


_PREFLIGHT: dict[str, Any] = {"sft": _preflight_sft, "rl": _preflight_rl, "data": _preflight_config_file}


def preflight(command: str, config: str | None, overrides: Sequence[str]) -> None:
    """Raise UsageError (or the config loader's ValueError) for a config or path the command cannot
    use; stdlib and PyYAML only. Commands without checks here check on their own."""
    check = _PREFLIGHT.get(command)
    if check is not None:
        check(config, list(overrides))


def check_eval_model(model: str | None, tokenizer: str | None) -> None:
    """`fastcomt eval --model/--tokenizer`: a saved model folder with a tokenizer."""
    _check(model_dir_problem(model, "--model"))
    if tokenizer:
        _check(tokenizer_dir_problem(tokenizer, "--tokenizer"))
    else:
        _check(tokenizer_dir_problem(model, "--model"))  # type: ignore[arg-type]
