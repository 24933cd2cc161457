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
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
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
