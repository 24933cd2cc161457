"""Atomic training checkpoints with everything needed for an exact resume.

Layout under a run's checkpoint root:

    step_00000120/
        model/               Hugging Face checkpoint (save_pretrained + tokenizer): loadable as-is
        optimizer.pt         optimizer state
        scheduler.pt         LR scheduler state
        rng.pt               Python, torch CPU and CUDA generator states
        trainer_state.json   the trainer's position (step, epoch, step in epoch, ...) and any extras
    latest                   name of the newest complete checkpoint

Under torchrun (more than one process) the weights and optimizer are sharded, and each rank writes
its own shards with torch.distributed.checkpoint instead of `model/` and `optimizer.pt`:

    step_00000120/
        sharded/             DCP: one .distcp file per rank + .metadata (global shapes: loads on any
                             number of processes, one included)
        rng_rank00000.pt     each rank's RNG states
        tokenizer/, scheduler.pt, trainer_state.json (with "world_size")

Every rank writes into the same temporary folder; after a barrier rank 0 adds the small files and
renames the folder into place, so the sharded checkpoint is atomic too.

A checkpoint is written into a temporary directory beside its final name and renamed into place
only when complete; `latest` is replaced atomically afterwards. A crash at any point leaves the
previous checkpoint intact, and a half-written directory is never mistaken for a checkpoint.
Shared by the SFT and RL recipes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from fastcomt.atomic_io import umask_mode, write_text_atomic
from fastcomt.distributed import DistContext, barrier
from fastcomt.distributed.sharded_state import SHARDED_DIR, load_sharded_state, save_sharded_state

from .final_model import quiet_model_save

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "complete_checkpoints",
    "CheckpointError",
    "capture_rng_state",
    "restore_rng_state",
]

_STEP_DIR = re.compile(r"^step_(\d{8})$")
_STATE_FILE = "trainer_state.json"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (cut off by a crash or a full disk, or damaged); the
    message names the file."""


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    root: str | os.PathLike[str],
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    tokenizer: Any | None = None,
    trainer_state: dict[str, Any] | None = None,
    keep_last: int | None = 2,
    dist_ctx: DistContext | None = None,
) -> Path:
    """Write checkpoint `step` atomically; keep the newest `keep_last` (None keeps all). Returns its path.

    dist_ctx: with more than one process, the sharded layout (every rank calls this; collective).
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected a non-negative int, got {step!r}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last: expected a positive int or None, got {keep_last}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    if dist_ctx is not None and dist_ctx.enabled:
        _save_sharded(
            root,
            final,
            dist_ctx,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            tokenizer=tokenizer,
            trainer_state={"step": step, "world_size": dist_ctx.world_size, **(trainer_state or {})},
            keep_last=keep_last,
        )
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        os.chmod(tmp, umask_mode(directory=True))  # mkdtemp makes 0700 whatever the umask
        with quiet_model_save():
            model.save_pretrained(tmp / "model", safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp / "model")
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(capture_rng_state(), tmp / "rng.pt")
        state = {"step": step, **(trainer_state or {})}
        with open(tmp / _STATE_FILE, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        if final.exists():  # re-saving a step (e.g. after a resume): the new copy wins
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_latest(root, final.name)
    _fsync_dir(root)
    if keep_last is not None:
        for old in _complete_steps(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank:05d}.pt"


def _save_sharded(
    root: Path,
    final: Path,
    ctx: DistContext,
    *,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    keep_last: int | None,
) -> None:
    """The sharded checkpoint (see the module docstring): all ranks write, rank 0 completes and renames."""
    tmp = root / f".tmp-{final.name}-sharded"  # one name every rank knows without talking
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crash during an earlier save of this step
        tmp.mkdir()
        os.chmod(tmp, umask_mode(directory=True))
    barrier(ctx)
    try:
        save_sharded_state(tmp / SHARDED_DIR, model=model, optimizer=optimizer)
        torch.save(capture_rng_state(), tmp / _rng_file(ctx.rank))
        _fsync_files(tmp / SHARDED_DIR)  # every rank its own files (cheap for the others' already synced)
        barrier(ctx)  # every shard is on disk before rank 0 declares the checkpoint complete
        if ctx.is_main:
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp / "tokenizer")
            if scheduler is not None:
                torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            with open(tmp / _STATE_FILE, "w", encoding="utf-8") as f:
                json.dump(trainer_state, f, indent=2)
            _fsync_files(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _write_latest(root, final.name)
            _fsync_dir(root)
            if keep_last is not None:
                for old in _complete_steps(root)[:-keep_last]:
                    shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if ctx.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    barrier(ctx)  # nobody goes on (or resumes) before the rename


def _write_latest(root: Path, name: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".latest-", dir=root)
    with os.fdopen(fd, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, umask_mode())  # mkstemp makes 0600 whatever the umask
    os.replace(tmp, root / "latest")


def complete_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Every complete checkpoint under `root`, oldest first (empty when there is none)."""
    root = Path(root)
    return _complete_steps(root) if root.is_dir() else []


def _complete_steps(root: Path) -> list[Path]:
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / _STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    pointer = root / "latest"
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if (named / _STATE_FILE).is_file():
            return named
    steps = _complete_steps(root)
    return steps[-1] if steps else None


def _load_model_weights(model: torch.nn.Module, model_dir: Path) -> None:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {model_dir}")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except Exception as exc:  # safetensors raises its own error type, naming no file
            raise CheckpointError(f"{file}: cannot be read ({exc}); the file is cut off or damaged") from exc
    result = model.load_state_dict(state, strict=False)
    # save_pretrained stores a tied weight once; every other missing or extra key is an error.
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - {
        name for name, _ in model.named_parameters()
    }
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"checkpoint {model_dir} does not match the model: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
    rank: int = 0,
) -> dict[str, Any]:
    """Load weights, optimizer, scheduler and RNG states in place; returns the trainer state.

    A sharded checkpoint (written under torchrun) loads on any number of processes, one included;
    each rank restores its own RNG states when the checkpoint has them (else rank 0's). A one-process
    checkpoint loads into a sharded model too (full weights and optimizer state, sharded on load).
    """
    path = Path(path)
    if not (path / _STATE_FILE).is_file():
        raise FileNotFoundError(f"not a complete checkpoint (no {_STATE_FILE}): {path}")
    # The small JSON file first: a damaged checkpoint fails before any state is changed in place.
    try:
        with open(path / _STATE_FILE, encoding="utf-8") as f:
            trainer_state = json.load(f)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / _STATE_FILE}: cannot be read ({exc}); the file is cut off or damaged") from exc
    if (path / SHARDED_DIR).is_dir():
        try:
            load_sharded_state(path / SHARDED_DIR, model=model, optimizer=optimizer)
        except (FileNotFoundError, RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(
                f"{path / SHARDED_DIR}: cannot be read ({type(exc).__name__}: {exc}); "
                "the checkpoint is cut off or damaged"
            ) from exc
        rng_file = path / _rng_file(rank) if (path / _rng_file(rank)).is_file() else path / _rng_file(0)
    elif _is_sharded_model(model):
        _load_full_into_sharded(path, model=model, optimizer=optimizer)
        rng_file = path / "rng.pt"
    else:
        _load_model_weights(model, path / "model")
        if optimizer is not None:
            optimizer.load_state_dict(_torch_load(path / "optimizer.pt", map_location=map_location, weights_only=True))
        rng_file = path / "rng.pt"
    if scheduler is not None:
        scheduler.load_state_dict(_torch_load(path / "scheduler.pt", map_location="cpu", weights_only=False))
    if restore_rng:
        restore_rng_state(_torch_load(rng_file, map_location="cpu", weights_only=False))
    return trainer_state


def _is_sharded_model(model: torch.nn.Module) -> bool:
    from fastcomt.distributed import is_sharded

    return is_sharded(model)


def _load_full_into_sharded(path: Path, *, model: torch.nn.Module, optimizer: Any) -> None:
    """A one-process checkpoint (full weights, position-keyed optimizer state) into an FSDP2 model:
    every rank reads the files and keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    files = sorted((path / "model").glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {path / 'model'}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(file))
    names = [name for name, _ in model.named_parameters()]
    for name, p in model.named_parameters(remove_duplicate=False):  # save_pretrained stores a tied weight once
        if name not in weights:
            alias = next((n for n, q in model.named_parameters() if q is p), None)
            if alias in weights:
                weights[name] = weights[alias]
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    if optimizer is not None:
        saved = _torch_load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        # torch.optim keys state by position in model.parameters(); DCP by parameter name
        by_name = {
            "state": {names[i]: v for i, v in saved["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in saved["param_groups"]],
        }
        set_optimizer_state_dict(model, optimizer, by_name, options=options)


def _torch_load(file: Path, **kwargs: Any) -> Any:
    """torch.load, with an error naming the file (a cut-off file gives a bare `OSError: [Errno 22]`)."""
    try:
        return torch.load(file, **kwargs)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"{file}: cannot be read ({type(exc).__name__}: {exc}); the file is cut off or damaged"
        ) from exc


def truncate_metrics(path: str | os.PathLike[str], *, after_step: int) -> None:
    """Drop JSON-lines metrics past the resumed step (written before a crash, about to be redone),
    and a half-written last line, so a resumed run's log reads as if it never stopped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        keep = [line for line in f if line.endswith("\n") and json.loads(line)["step"] <= after_step]
    write_text_atomic(path, "".join(keep))
