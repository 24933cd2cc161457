"""Confirmed prefix-cache flushes, shared by the SGLang and vLLM backends.

A flush can be refused: SGLang's ``flush_cache`` answers "not flushed" while it still holds a request
(which happens right after a request has returned to the client), vLLM's ``reset_prefix_cache``
answers ``False`` while blocks are held. A refused flush that goes unnoticed lets the next request
reuse KV computed with the old weights, so every flush is confirmed: asked again, with a short
pause, until the backend says it flushed, and a clear error when it never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FLUSH_ATTEMPTS = 10  # a refusal right after a request lasts a few scheduler ticks, not seconds
FLUSH_DELAY_S = 0.05  # first pause between attempts; doubled each time, at most 1 s


class CacheFlushError(RuntimeError):
    """The backend refused to flush its prefix cache every time it was asked."""


def confirm_flush(
    flush_once: Callable[[], bool],
    *,
    what: str,
    attempts: int = FLUSH_ATTEMPTS,
    delay: float = FLUSH_DELAY_S,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call ``flush_once`` until it returns True; return the number of calls it took.

    what: names the backend in the error (e.g. the server URL).
    Raises ``CacheFlushError`` after ``attempts`` refusals; errors of ``flush_once`` propagate.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts: expected an int >= 1, got {attempts!r}")
    for attempt in range(1, attempts + 1):
        if flush_once():
            return attempt
        if attempt < attempts:
            sleep(min(1.0, delay * 2 ** (attempt - 1)))
    raise CacheFlushError(
        f"{what}: the prefix cache was not flushed after {attempts} attempts; its KV may come from "
        "old weights, so generation cannot go on safely (is another client still running requests?)"
    )
