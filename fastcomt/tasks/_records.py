"""Record iteration with line numbers, so a malformed record can be reported as file:line. Stdlib only.

JSON arrays/objects are walked element by element with `JSONDecoder.raw_decode`, which yields the
character offset of each record (and so its line) without a second parse. ASDiv's XML is read with
expat, which reports the line of each start tag.
"""

from __future__ import annotations

import json
import xml.parsers.expat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["RecordFormatError", "iter_jsonl", "iter_json", "iter_asdiv_xml"]


class RecordFormatError(ValueError):
    """A benchmark file or one of its records does not have the expected form (names file and line)."""

    def __init__(self, path: str | Path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line
        self.reason = message


_WS = " \t\n\r"


def _line_of(text: str, offset: int, cache: list[int]) -> int:
    # cache = [last_offset, last_line]: counting newlines incrementally keeps the walk linear.
    last_offset, last_line = cache
    if offset >= last_offset:
        line = last_line + text.count("\n", last_offset, offset)
    else:
        line = 1 + text.count("\n", 0, offset)
    cache[0], cache[1] = offset, line
    return line


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any | RecordFormatError]]:
    """(line number, record) per non-blank line; a line that is not JSON yields a RecordFormatError."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, RecordFormatError(path, lineno, f"not valid JSON ({e.msg})")


def iter_json(path: Path) -> Iterator[tuple[int, str | None, Any | RecordFormatError]]:
    """(line, key, record) for each element of a top-level JSON array (key None) or object.

    A broken element ends the walk with one RecordFormatError (the rest of the file cannot be
    re-synchronised reliably); a file that is neither array nor object raises at once.
    """
    text = Path(path).read_text(encoding="utf-8")
    dec = json.JSONDecoder()
    cache = [0, 1]
    i = 0
    n = len(text)

    def skip(j: int) -> int:
        while j < n and text[j] in _WS:
            j += 1
        return j

    i = skip(i)
    if i >= n or text[i] not in "[{":
        raise RecordFormatError(path, _line_of(text, i, cache), "expected a JSON array or object at the top level")
    is_object = text[i] == "{"
    close = "}" if is_object else "]"
    i = skip(i + 1)
    if i < n and text[i] == close:
        return
    while True:
        line = _line_of(text, i, cache)
        key = None
        try:
            if is_object:
                key, i = dec.raw_decode(text, i)
                if not isinstance(key, str):
                    raise json.JSONDecodeError("expected a string key", text, i)
                i = skip(i)
                if i >= n or text[i] != ":":
                    raise json.JSONDecodeError("expected ':'", text, i)
                i = skip(i + 1)
                line = _line_of(text, i, cache)
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            yield _line_of(text, e.pos, cache), key, RecordFormatError(path, _line_of(text, e.pos, cache), e.msg)
            return
        yield line, key, value
        i = skip(i)
        if i < n and text[i] == ",":
            i = skip(i + 1)
            continue
        if i < n and text[i] == close:
            return
        yield (
            _line_of(text, i, cache),
            None,
            RecordFormatError(path, _line_of(text, i, cache), f"expected ',' or '{close}'"),
        )
        return


def iter_asdiv_xml(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, fields) per <Problem>: its attributes plus the text of each child element."""
    records: list[tuple[int, dict[str, str]]] = []
    parser = xml.parsers.expat.ParserCreate()
    state: dict[str, Any] = {"current": None, "field": None, "text": []}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "Problem":
            state["current"] = (parser.CurrentLineNumber, dict(attrs))
        elif state["current"] is not None:
            state["field"] = name
            state["text"] = []

    def end(name: str) -> None:
        cur = state["current"]
        if name == "Problem" and cur is not None:
            records.append(cur)
            state["current"] = None
        elif cur is not None and state["field"] == name:
            cur[1][name] = "".join(state["text"])
            state["field"] = None

    def chars(data: str) -> None:
        if state["field"] is not None:
            state["text"].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except xml.parsers.expat.ExpatError as e:
        raise RecordFormatError(
            path, e.lineno, f"not well-formed XML ({xml.parsers.expat.ErrorString(e.code)})"
        ) from None
    yield from records
