"""SIGTERM and SIGHUP end a run the way Ctrl-C does: no partial outputs, no temp folders.

Python turns SIGINT into ``KeyboardInterrupt``, which unwinds through every ``finally`` and
context manager (atomic outputs, the kvazaar ROI temp folder, the ffmpeg child). SIGTERM (``kill``,
``timeout``, a CI runner stopping a job) and SIGHUP (a closed terminal) killed the process
outright and left ``.part`` files behind. ``install`` makes them raise :class:`Terminated`, a
``KeyboardInterrupt``, so the same clean-up runs; the exit status is 128 + the signal number
(143, 129), as a shell reports a process killed by that signal. A signal that the parent set to
be ignored (``nohup``) stays ignored.
"""

from __future__ import annotations

import signal
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The run was stopped by ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def install() -> None:
    """Route SIGTERM/SIGHUP to :class:`Terminated` (main thread only; ignored signals stay so)."""
    for sig in HANDLED:
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _raise)


def exit_code(e: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + N for signal N."""
    return 128 + e.signum if isinstance(e, Terminated) else 130


def describe(e: KeyboardInterrupt) -> str:
    return f"stopped by {signal.Signals(e.signum).name}" if isinstance(e, Terminated) else "interrupted"


__all__ = ["Terminated", "describe", "exit_code", "install"]
