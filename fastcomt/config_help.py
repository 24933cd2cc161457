"""Every key of a config dataclass, for `fastcomt <command> --help`: dotted path, type, default, meaning.

The meaning of a field is the comment written with it in the source: the comment lines directly
above the field and any comment on the field's own line(s), read with `inspect.getsource` and
`tokenize` (so it works from an installed package too). A field without a comment gets an empty
description, which the CLI tests reject: documenting a new key is part of adding it.

Stdlib only: the CLI imports this before any config module, and `fastcomt --help` must stay fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["KeyHelp", "config_keys", "field_comments", "format_config_keys", "type_text", "default_text"]

# Comments that talk to tools rather than to readers.
_PRAGMAS = ("fmt:", "noqa", "type:", "pragma", "pylint:")


@dataclass(frozen=True)
class KeyHelp:
    key: str  # dotted path, e.g. "rollout.executions_per_plan"
    type: str  # readable type, e.g. "float | null", "one of: dapo, grpo"
    default: str  # YAML-style default, or "required"
    description: str  # the field's comment ("" when it has none)


def config_keys(cls: type) -> list[KeyHelp]:
    """Every leaf key of dataclass `cls` (nested dataclass fields are walked, in field order)."""
    return [row for row, is_section in _rows(_check_dataclass(cls), None, "") if not is_section]


def _check_dataclass(cls: Any) -> type:
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"cls: expected a dataclass type, got {cls!r}")
    return cls


def _rows(cls: type, defaults: Any, prefix: str) -> list[tuple[KeyHelp, bool]]:
    """(row, is_section) for every field of `cls`, a nested section's row before its own keys.

    `defaults` is the section's default instance when its parent builds one (e.g. RLConfig's optim
    default has lr=1e-6, not OptimConfig's own 1e-3); None: the class's own field defaults."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows: list[tuple[KeyHelp, bool]] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key, tp = prefix + f.name, hints[f.name]
        own_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        has_default = defaults is not None or own_default
        if dataclasses.is_dataclass(tp):
            about = comments.get(f.name) or _first_paragraph(tp.__doc__)
            rows.append((KeyHelp(key, f"{tp.__name__} section", "" if has_default else "required", about), True))
            rows += _rows(tp, _field_default(f, defaults) if has_default else None, key + ".")
            continue
        default = default_text(_field_default(f, defaults)) if has_default else "required"
        rows.append((KeyHelp(key, type_text(tp), default, comments.get(f.name, "")), False))
    return rows


def _first_paragraph(doc: str | None) -> str:
    # A dataclass without a docstring gets a generated one ("Name(field: type, ...)"): not prose.
    text = inspect.cleandoc(doc or "").split("\n\n")[0]
    return "" if "(" in text.split(" ")[0] else " ".join(text.split())


def _field_default(f: dataclasses.Field, defaults: Any) -> Any:
    if defaults is not None:
        return getattr(defaults, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment text (lines above it, then its own line's), for `cls` and its bases."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass) and klass is not object:
            out.update(_own_field_comments(klass))
    return out


def _own_field_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source shipped (e.g. a zip of .pyc files): no descriptions
        return {}
    out: dict[str, str] = {}
    above: list[str] = []  # own-line comments since the last statement or blank line
    statement: list[tokenize.TokenInfo] = []  # tokens of the logical line being read
    statement_comments: list[str] = []
    depth = 0  # 1 is the class body; fields live only there (not in methods)
    statement_depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = _comment_text(tok.string)
            if text:
                (statement_comments if statement else above).append(text)
        elif tok.type == tokenize.NL:
            if not statement and not tok.line.strip():
                above = []  # a blank line: the comments above belong to no field
        elif tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:
            is_field = (
                statement_depth == 1
                and len(statement) >= 2
                and statement[0].type == tokenize.NAME
                and statement[1].string == ":"
            )
            if is_field:
                out[statement[0].string] = " ".join(above + statement_comments)
            above, statement, statement_comments = [], [], []
        elif tok.type != tokenize.ENDMARKER:
            if not statement:
                statement_depth = depth
            statement.append(tok)
    return out


def _comment_text(comment: str) -> str:
    # One COMMENT token runs to the end of the line, so it may hold a pragma after the prose:
    # `# a mapping  # fmt: skip`.
    parts = [part.strip() for part in re.split(r"\s#\s*", comment.lstrip("#"))]
    return " ".join(part for part in parts if part and not part.startswith(_PRAGMAS))


def type_text(tp: Any) -> str:
    """A field type in words: `int`, `float | null`, `list of str`, `one of: dapo, grpo`."""
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        if len(parts) > 1 and parts[0].startswith("one of: "):  # Literal[...] | None
            return parts[0] + ", " + ", ".join(parts[1:])
        return " | ".join(parts)
    if origin is Literal:
        return "one of: " + ", ".join(default_text(a) for a in args)
    if origin in (list, tuple, Sequence):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        if len(args) != 2 or args[1] is Any:
            return "mapping"
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def default_text(value: Any) -> str:
    """A default as it would be written in YAML: null, true, 0.001, [a, b], {}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and value.strip() == value and value[0] not in "[{'\"&*!|>%@`#" else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(default_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {default_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def format_config_keys(cls: type, width: int = 100) -> str:
    """The keys of `cls` as help text: `key: type; default X`, then the meaning, indented."""
    lines = []
    for row, is_section in _rows(_check_dataclass(cls), None, ""):
        if is_section:
            head = f"  {row.key}.*: {row.type}" + (", required" if row.default == "required" else "")
        else:
            default = "required" if row.default == "required" else f"default {row.default}"
            head = f"  {row.key}: {row.type}; {default}"
        lines.append(head)
        if row.description:
            lines += textwrap.wrap(row.description, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)
