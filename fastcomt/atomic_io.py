"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one.

Each writer goes to a temp file in the destination's folder (same filesystem, so the rename is
atomic), is flushed and fsynced, then ``os.replace``d over the destination. Stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic", "umask_mode"]


def umask_mode(*, directory: bool = False) -> int:
    """The mode a plain ``open()`` (0o666) or ``mkdir()`` (0o777) would give under the current umask.

    ``mkstemp``/``mkdtemp`` create 0600/0700 whatever the umask; an atomic write chmods its temp
    file to this before the rename, so reports and checkpoints get the permissions a user expects."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temp path beside ``path`` for a writer that wants a file name (``savefig``,
    ``torch.save``); on success it is moved over ``path``, on error it is removed. ``suffix`` keeps
    the extension some writers read to pick a format (e.g. ``".png"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, umask_mode())
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
