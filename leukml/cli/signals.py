"""SIGTERM and Ctrl-C during a command: both unwind as exceptions, so that a run being tracked is
marked FAILED rather than left RUNNING, and neither is lost or raised where it does harm.

A signal's Python handler runs in the main thread at the next instruction it executes. Two places
are wrong for the exception it raises:

- inside MLflow or its database layer (SQLAlchemy). Cut there, a write can keep its SQLite
  transaction and lock (MLflow rolls back only on ``Exception``), so that marking the run FAILED
  then fails with "database is locked"; or a run is created but ``start_run`` never returns it, and
  it stays RUNNING. There the signal waits: it is sent again a moment later, until the main thread
  is out of those modules, for at most ``DEFER_AT_MOST_S`` (a hung server must not hold it off);
- inside a garbage-collector callback (JAX registers one) or a ``__del__``: Python reports what
  those raise as "Exception ignored in ..." and goes on, so the training would carry on as if no
  signal had come. A ``Terminated`` or ``KeyboardInterrupt`` swallowed there is not printed: the
  signal is sent again.

A SIGTERM during a training that checkpoints first lets the epoch under way end and store its
checkpoint, within a bound (``leukml.training.termination``); a second one exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

from leukml.training import termination
from leukml.training.termination import Terminated

__all__ = ["Terminated", "handled"]

RESEND_AFTER_S = 0.01  # soon, but after the call or the collection under way has moved on
DEFER_AT_MOST_S = 2.0
# where an exception cut short can leave a transaction open or a run unreturned (see the module)
UNSAFE = ("mlflow.", "sqlalchemy.")

_first_deferred: dict[int, float] = {}  # signal -> when it was first put off
_resending: set[int] = set()  # signals sent again soon: one at a time each


def _inside_unsafe(frame) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(UNSAFE):
            return True
        frame = frame.f_back
    return False


def _resend(signum: int) -> None:
    if signum in _resending:
        return
    _resending.add(signum)

    def send() -> None:
        _resending.discard(signum)
        os.kill(os.getpid(), signum)

    timer = threading.Timer(RESEND_AFTER_S, send)
    timer.daemon = True
    timer.start()


def _deliver(signum: int, frame, exc: BaseException) -> None:
    first = _first_deferred.setdefault(signum, time.monotonic())
    if _inside_unsafe(frame) and time.monotonic() - first < DEFER_AT_MOST_S:
        _resend(signum)
        return
    del _first_deferred[signum]
    raise exc


def _terminate(signum, frame) -> None:
    if termination.defer(signum):  # a training stops at its epoch's end, with a checkpoint
        return
    _deliver(signum, frame, Terminated(128 + signum))


def _interrupt(signum, frame) -> None:
    _deliver(signum, frame, KeyboardInterrupt())


def _hook(previous):
    def hook(unraisable) -> None:
        exc_type = unraisable.exc_type
        if exc_type is not None and issubclass(exc_type, Terminated):
            _resend(signal.SIGTERM)
        elif exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            _resend(signal.SIGINT)
        else:
            previous(unraisable)

    return hook


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` (exit status 143), Ctrl-C ``KeyboardInterrupt`` (where Python's
    own handler is in place: an ignored SIGINT stays ignored), neither inside MLflow's calls nor
    lost in a garbage-collector callback (see the module). Only in the main thread, which alone
    runs signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signal.SIGTERM: signal.signal(signal.SIGTERM, _terminate)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        handlers[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _hook(previous_hook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        _first_deferred.clear()  # a later command's signals start afresh
        for signum, previous in handlers.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
