"""Configs are plain dataclasses loaded from YAML, type-checked field by field. Stdlib + PyYAML only.

`load_config(path, SFTConfig, overrides=["optim.lr=1e-4"])` reads the file, applies dotted
`key=value` overrides (values parsed as YAML), and builds the dataclass; a wrong key or type raises
ValueError naming the dotted key, the expected type and what was found, e.g.
`optim.lr: expected float, got str 'fast'`. Supported field types: bool, int, float, str, None-able
(`X | None`), `list[X]`, `tuple[X, ...]`, `dict[str, X]`, `Literal[...]` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "ModelConfig",
    "TokenizerConfig",
    "DataConfig",
    "OptimConfig",
    "ReplayConfig",
    "SFTConfig",
]

T = TypeVar("T")


def load_config(path: str | os.PathLike[str], cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Read YAML at `path`, apply `key=value` overrides, build and check `cls`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return config_from_dict(cls, apply_overrides(dict(data), overrides))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted keys from `key=value` strings (value parsed as YAML: `3` is an int, `[a, b]` a list)."""
    if isinstance(overrides, str):
        raise TypeError("overrides: expected a sequence of 'key=value' strings, got a single str")
    out = _deep_copy(data)
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"override: expected 'dotted.key=value', got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override: empty key segment in {key!r}")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {key!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def config_from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking every key and value (errors name the dotted key)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls: expected a dataclass type, got {cls!r}")
    data = {} if data is None else data
    where = path or cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{key}: required key missing (expected {_type_name(hints[name])})")
            continue
        kwargs[name] = _convert(data[name], hints[name], key)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ValueError:
                continue
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, key)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected {_type_name(tp)} (a YAML list), got {type(value).__name__} {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected {_type_name(tp)} (a YAML mapping), got {type(value).__name__} {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected bool (true/false), got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        # YAML reads `1e-4` as a str (it wants `1.0e-4`), so numeric strings are accepted for floats.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected str, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{key}: field type {_type_name(tp)} is not supported by the config loader")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass (tuples become lists), for logs and checkpoints."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config: expected a dataclass instance, got {type(config).__name__}")

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


# --- the SFT recipe's config (the RL recipe reuses ModelConfig, TokenizerConfig and OptimConfig) ----


@dataclass
class ModelConfig:
    """`path` set: load that checkpoint; otherwise build a fresh `family` model of the given shape."""

    family: Literal["qwen2", "llama"] = "qwen2"  # architecture of a freshly built model (ignored with `path`)
    path: str | None = None  # checkpoint folder to load (save_pretrained layout); null: build a fresh model
    hidden_size: int = 64  # fresh model: width of the residual stream
    num_layers: int = 2  # fresh model: decoder layers
    num_heads: int = 4  # fresh model: attention (query) heads
    num_kv_heads: int = 2  # fresh model: key/value heads (grouped-query attention; divides num_heads)
    intermediate_size: int = 176  # fresh model: width of the MLP's hidden layer
    max_position_embeddings: int = 2048  # fresh model: longest sequence in tokens (RoPE table size)
    rope_theta: float = 10000.0  # fresh model: RoPE base frequency
    tie_word_embeddings: bool = False  # fresh model: share the input embedding and LM-head weights
    attn_implementation: str | None = None  # null: flash_attention_2 on GPU when installed, else sdpa
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more compute
    init_seed: int = 0  # seed of a fresh model's random initialisation


@dataclass
class TokenizerConfig:
    """`pretrained` uses the tokenizer at `path` (default: model.path); the others are trained on the
    training data at the start of a run and saved in the run directory (reused on resume)."""

    # number_word: one token per corpus word and per integer 0..number_max (best for tiny models);
    # bpe: byte-level BPE trained on the data; pretrained: load the tokenizer at `path`
    kind: Literal["number_word", "bpe", "pretrained"] = "bpe"
    path: str | None = None  # kind pretrained: tokenizer folder; null: model.path
    vocab_size: int = 2048  # total vocabulary (specials, numbers and 256 bytes included) of a trained tokenizer
    number_max: int = 1000  # number_word: integers 0..number_max get their own tokens
    min_frequency: int = 1  # trained tokenizers: words (bpe: merges) seen fewer times are left out


@dataclass
class DataConfig:
    """`train`: a JSONL of records (fastcomt.comt). With `build` set and the file missing, the file is
    built first from that data-build config (its `output` defaults to `train`)."""

    train: str  # JSONL of training records (fastcomt.comt), e.g. from `fastcomt data`
    # a data-build config (keys: `fastcomt data --help`) that builds `train` first when it is missing
    build: dict[str, Any] | None = None
    system_prompt: str | None = None  # system message before each question; null: none
    limit: int | None = None  # use only the first N records; null: all
    shuffle: bool = True  # shuffle the examples each epoch (seeded by `seed`) before packing
    # How a meta-thought example ends: "marker", the plan then the execution marker (the tokens
    # every execution of that plan continues in rollouts and evaluation), no end of turn; or
    # "end_of_turn", the plan then the chat template's end of turn. CoT examples always end with
    # the end of turn.
    plan_end: Literal["marker", "end_of_turn"] = "marker"


@dataclass
class OptimConfig:
    """AdamW with warm-up + cosine; one optimizer step per `tokens_per_step` tokens (gradient
    accumulation over packed rows of up to `row_tokens` tokens)."""

    lr: float = 1e-3  # peak learning rate (AdamW), reached after the warm-up
    min_lr_ratio: float = 0.1  # cosine floor at the end of the schedule, as a fraction of lr (1.0: constant)
    warmup_steps: int = 10  # optimizer steps of linear warm-up
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    eps: float = 1e-8  # AdamW denominator guard
    grad_clip: float = 1.0  # clip the gradient's global L2 norm to this before each step
    row_tokens: int = 1024  # packed row length in tokens; longer examples are dropped (counted in the summary)
    tokens_per_step: int = 4096  # tokens per optimizer step: rows are accumulated up to this budget
    epochs: int = 1  # passes over the training data
    max_steps: int | None = None  # stop after this many optimizer steps; null: all epochs


@dataclass
class ReplayConfig:
    """Execution documents rehearsed during SFT, so a tiny base model keeps executing plans while it
    learns to write them (train/replay.py); off by default."""

    documents: int = 0  # execution documents mixed into the SFT examples; 0: no replay
    # synthetic draw of the documents; seed + 1 draws the unrelated questions they sit under
    seed: int = 0
    families: list[str] | None = None  # synthetic families of the documents; null: all


@dataclass
class SFTConfig:
    output_dir: str  # run folder: final/ (the trained model), checkpoints/, metrics.jsonl, summary.json, tokenizer/
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    seed: int = 0  # data order, packing and dropout
    device: str = "auto"  # auto: cuda when available, else cpu
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on GPU; CPU always runs fp32
    # auto: fused on a GPU, chunked on a CPU (the progress bar says which runs); fused: hidden states
    # into the fused linear cross-entropy kernel (no [tokens, vocab] logits); chunked: plain torch, the
    # logits of one chunk of tokens at a time, recomputed in the backward (bounded memory; ~10x faster
    # than the kernel on a CPU, where it runs in Triton's interpreter); torch: the model's own LM head
    # and F.cross_entropy over a whole packed row's logits
    loss: Literal["auto", "fused", "chunked", "torch"] = "auto"
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end
    keep_last: int = 2  # checkpoints kept on disk (older ones are deleted)
    resume: bool = True  # continue from output_dir/checkpoints/latest when present
    progress: bool = True  # tqdm bar with loss and tokens/s
