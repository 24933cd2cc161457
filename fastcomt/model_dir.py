"""What is wrong with a folder given as a model or a tokenizer, said before anything tries to load it.

Loaders deep in transformers report a missing model as "Couldn't instantiate the backend tokenizer
... install sentencepiece or tiktoken" or "Unrecognized model ... Should have a `model_type` key",
which names neither what is missing nor where the model probably is. These checks are stdlib only,
so the command line runs them before importing torch. Each returns None for a usable folder, else one
line in the project's style: the key, what was expected, what was found and, for a training run's
folder, the model inside it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["model_dir_problem", "tokenizer_dir_problem", "run_folder_models"]

_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_STEP_DIR = re.compile(r"^step_(\d+)$")
_EXPECTED = "a saved model folder (config.json, model.safetensors, tokenizer files), e.g. a run's <output_dir>/final"


def run_folder_models(folder: str | os.PathLike[str]) -> list[Path]:
    """The models inside a training run's folder, best first: final/, then the newest checkpoint's."""
    folder = Path(folder)
    found = []
    if (folder / "final" / "config.json").is_file():
        found.append(folder / "final")
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir():
        steps = sorted(
            (p for p in checkpoints.iterdir() if _STEP_DIR.match(p.name) and (p / "model" / "config.json").is_file()),
            key=lambda p: int(_STEP_DIR.match(p.name).group(1)),
            reverse=True,
        )  # type: ignore[union-attr]
        found.extend(p / "model" for p in steps)
    return found


def _hint(folder: Path) -> str:
    models = run_folder_models(folder)
    return f"; the run's model is {models[0]}" if models else ""


def model_dir_problem(path: str | os.PathLike[str] | None, key: str = "model") -> str | None:
    """None when `path` holds a saved model (config.json and weights), else what is wrong."""
    if path is None or str(path) == "":
        return f"{key}: expected {_EXPECTED}, got nothing"
    folder = Path(path)
    if not folder.exists():
        models = run_folder_models(folder.parent) if folder.parent.is_dir() else []
        if folder.name == "final" and models:
            hint = f"; the run has not finished (no final/ yet): resume it, or use its newest checkpoint's model {models[0]}"
        elif folder.name == "final":
            hint = "; a finished `fastcomt sft` or `fastcomt rl` run writes its model there (<output_dir>/final)"
        else:
            hint = f"; the run's model is {models[0]}" if models else ""
        return f"{key}: no folder at {folder}" + hint
    if not folder.is_dir():
        return f"{key}: {folder} is a file; expected {_EXPECTED}"
    if (folder / "config.json").is_file():
        if not any(any(folder.glob(pattern)) for pattern in _WEIGHTS):
            return f"{key}: {folder} has config.json but no weights (expected model.safetensors)"
        return None
    models = run_folder_models(folder)
    if models:
        return f"{key}: {folder} is a training run's folder, not a model; its model is {models[0]}"
    if not any(folder.iterdir()):
        return f"{key}: {folder} is empty; expected {_EXPECTED}"
    return f"{key}: {folder} has no config.json, so it is not a saved model; expected {_EXPECTED}"


def tokenizer_dir_problem(path: str | os.PathLike[str], key: str = "tokenizer") -> str | None:
    """None when `path` holds tokenizer files, else what is wrong."""
    folder = Path(path)
    if not folder.is_dir():
        return f"{key}: no folder at {folder}" + (_hint(folder.parent) if folder.parent.is_dir() else "")
    if any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return None
    models = run_folder_models(folder)
    if models:
        return f"{key}: {folder} is a training run's folder; its model (with its tokenizer) is {models[0]}"
    return f"{key}: no tokenizer files ({', '.join(_TOKENIZER_FILES[:2])}) in {folder}"
