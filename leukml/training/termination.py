"""SIGTERM during a training: the epoch under way ends, a checkpoint of it is stored, then the run
exits, all within a bound (``grace_s``); else it exits at once, as before. No MLflow, no signals here.

The command's signal handler (``leukml.cli.signals``) asks ``defer()`` first: while a training
that checkpoints is between epochs of at most half the bound, the signal is noted instead of
raised, and a timer sends it again when the bound is up (a second SIGTERM is never deferred, so
that one exits at once wherever the run is). The epoch loop's checkpoint callback sees the note as
the epoch ends, stores the checkpoint and raises ``Terminated``; the tracking layer waits for the
store as the run ends (FAILED), so ``leukml train --resume`` continues from that epoch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

from leukml.common.options import env_seconds

TERM_GRACE_S = 10.0  # `docker stop`'s default wait before SIGKILL; $LEUKML_TERM_GRACE_S


class Terminated(SystemExit):
    """SIGTERM (a killed worker, a stopped container): unwinds like Ctrl-C, so the MLflow run is
    marked FAILED instead of staying RUNNING forever (exit status 143)."""


def grace_s() -> float:
    """The bound on a SIGTERM's exit: ``$LEUKML_TERM_GRACE_S``, else ``TERM_GRACE_S``.

    Raises:
        ValueError: the variable is set but is not a number of seconds >= 0.
    """
    return env_seconds("LEUKML_TERM_GRACE_S", TERM_GRACE_S, "SIGTERM exits at once, with no checkpoint")


class Watch:
    """A training that can checkpoint at its next epoch's end: how long its epochs take, and
    whether a SIGTERM asked it to stop there."""

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace, self.clock = grace, clock
        self.requested = False
        self._epoch_began = clock()
        self._epoch_s: float | None = None  # the last finished epoch's length

    def epoch_ended(self) -> None:
        now = self.clock()
        self._epoch_s, self._epoch_began = now - self._epoch_began, now

    def can_wait(self) -> bool:
        """An epoch has finished, and took at most half the bound: the one under way ends in time
        and its checkpoint has the other half."""
        return self._epoch_s is not None and self._epoch_s <= self.grace / 2


_watched: list[Watch] = []  # the training running in this process, if it checkpoints


@contextlib.contextmanager
def watching(watch: Watch) -> Iterator[Watch]:
    """``watch`` is the process's training meanwhile."""
    _watched.append(watch)
    try:
        yield watch
    finally:
        _watched.remove(watch)


def defer(signum: int = signal.SIGTERM) -> bool:
    """Called by the SIGTERM handler: True when the signal is noted for the training to stop at
    its epoch's end (the handler then returns); a timer sends ``signum`` again after the bound."""
    watch = _watched[-1] if _watched else None
    if watch is None or watch.requested or not watch.can_wait():
        return False
    watch.requested = True
    timer = threading.Timer(watch.grace, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()
    return True
