"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, say how to resume, exit 130.

    with StopOnSignal() as stop:
        while ...:
            ...one optimizer step...
            if stop.requested:
                break          # the loop checkpoints and returns; main() exits with EXIT_INTERRUPTED

The first SIGINT or SIGTERM only sets a flag: a step is never cut in half, so the checkpoint written
after it resumes exactly. A second SIGINT while the step finishes raises KeyboardInterrupt as usual
(the user insists; the previous checkpoint is intact since checkpoints are atomic). Handlers can
only be installed in the main thread; elsewhere (a training loop run from a worker thread) this is
a no-op and signals behave as before.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "StopOnSignal", "resume_hint"]

EXIT_INTERRUPTED = 130  # the shell's status for a command ended by SIGINT (128 + 2)


class StopOnSignal:
    """Context manager: `requested` becomes the signal's name once SIGINT or SIGTERM arrives."""

    def __init__(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.requested = signal.Signals(signum).name
        print(
            f"\n{self.requested} received: finishing the current step, then saving a checkpoint "
            "(Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def resume_hint(command: str, config: str | None, overrides: Sequence[str], summary: dict[str, Any]) -> str:
    """The one line printed when a run stops on a signal: where it stopped and how to go on."""
    words = ["fastcomt", command, "--config", str(config), *overrides]
    return (
        f"{summary.get('stopped_by', 'signal')}: stopped after step {summary['steps']} of {summary['total_steps']}; "
        f"checkpoint {summary['checkpoint']}; resume with: {shlex.join(words)}"
    )
