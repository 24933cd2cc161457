"""The final model of a run: `<output_dir>/final/`, the one folder the next stage reads.

    runs/sft-synthetic-comt/final/    config.json, model.safetensors, generation_config.json,
                                      tokenizer.json, tokenizer_config.json, chat template,
                                      train_config.json (the run's full config, as trained)

`fastcomt sft` and `fastcomt rl` write it when they finish (not when interrupted: then the newest
checkpoint under `checkpoints/` is the place to resume from); `fastcomt rl` reads `model.path:
<sft output_dir>/final` and `fastcomt eval --model <rl output_dir>/final`. It is written like a
checkpoint: into a temporary folder beside it, then renamed into place, so a reader never sees half
of one. Checkpoints keep their own copy under `checkpoints/step_N/model`; `final/` is the stable
name that does not change with the step count.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fastcomt.atomic_io import umask_mode, write_json_atomic

__all__ = ["FINAL_DIR", "TRAIN_CONFIG_FILE", "final_model_dir", "write_final_model", "quiet_model_save"]

FINAL_DIR = "final"
TRAIN_CONFIG_FILE = "train_config.json"


def final_model_dir(output_dir: str | os.PathLike[str]) -> Path:
    """Where a run in `output_dir` puts its final model."""
    return Path(output_dir) / FINAL_DIR


@contextlib.contextmanager
def quiet_model_save() -> Iterator[None]:
    """Silence transformers' own progress bars ("Writing model shards") while a model is saved:
    they would break into the trainer's progress bar at every checkpoint."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def write_final_model(
    output_dir: str | os.PathLike[str], *, model: Any, tokenizer: Any, config: Mapping[str, Any]
) -> Path:
    """Write weights, tokenizer and `config` (as train_config.json) to `<output_dir>/final/`
    atomically, replacing an earlier one; returns the folder."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = final_model_dir(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{FINAL_DIR}-", dir=root))
    try:
        os.chmod(tmp, umask_mode(directory=True))  # mkdtemp makes 0700 whatever the umask
        with quiet_model_save():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / TRAIN_CONFIG_FILE, dict(config))
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        old = None
        if final.exists():  # a rename cannot replace a non-empty folder: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".old-{FINAL_DIR}-", dir=root))
            os.replace(final, old / FINAL_DIR)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
