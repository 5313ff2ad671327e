"""Stopping a run on SIGTERM (schedulers, Kubernetes, systemd) or SIGINT (Ctrl-C).

Inside handled(), either signal raises Stopped in the main thread at once, so the run ends within
seconds, except inside `uninterrupted()` (the commit of a partition): there the signal waits
until the block is done, the commit finished or rolled back and its lock released, and is raised
then. Beam wraps what a DoFn raises in its own errors, so the launcher asks requested() whether a
failure was the stop rather than looking at the exception's type.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager

LOG = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGINT)
_guard = threading.Lock()
_state = {"signal": None, "inside": 0, "installed": False}


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, so that no `except Exception` carries on."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal ended: 143, 130


@contextmanager
def handled():
    """While inside (the main thread only, as Python requires), SIGTERM and SIGINT are handled
    as described above; on leaving, the previous handlers are back and the stop is forgotten."""
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    _state["installed"] = True
    unraisable_hook = sys.unraisablehook
    sys.unraisablehook = _redelivering(unraisable_hook)
    quiet = _QuietAfterStop()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = unraisable_hook
        for handler in handlers:
            handler.removeFilter(quiet)
        with _guard:
            _state.update(signal=None, installed=False)


def _redelivering(hook):
    """sys.unraisablehook that sends a swallowed stop again: where the signal's Stopped is raised
    inside a weakref callback or a __del__ (garbage collection runs them between any two lines),
    Python prints "Exception ignored in" and carries on, and the run would go on to its end. The
    signal, sent again a moment later from another thread (sent from here, it would be raised
    inside this hook and swallowed again), raises Stopped in ordinary code."""

    def handle(unraisable):
        if isinstance(unraisable.exc_value, Stopped):
            resend = threading.Timer(0.05, os.kill, (os.getpid(), unraisable.exc_value.signum))
            resend.daemon = True
            resend.start()
            return
        hook(unraisable)

    return handle


class _QuietAfterStop(logging.Filter):
    """After a stop, the root logger's handlers (other libraries' messages: Beam reports the
    interrupted step with its traceback) print nothing: the stop's own line says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _state["signal"] is None


def requested() -> int | None:
    """The stop signal received, or None."""
    return _state["signal"]


def _on_signal(signum, _frame) -> None:
    with _guard:
        first = _state["signal"] is None
        if first:
            _state["signal"] = signum
        inside = _state["inside"]
    if inside:
        if first:
            LOG.warning("%s received: finishing the commit first", signal.Signals(signum).name)
        return
    raise Stopped(_state["signal"])


@contextmanager
def uninterrupted():
    """A block a stop signal does not cut: the signal is raised when the outermost one is left."""
    with _guard:
        _state["inside"] += 1
    try:
        yield
    finally:
        with _guard:
            _state["inside"] -= 1
            pending = _state["signal"] if _state["inside"] == 0 else None
        if pending is not None and _state["installed"]:
            if threading.current_thread() is threading.main_thread():
                raise Stopped(pending)
            os.kill(os.getpid(), pending)  # the main thread's handler raises it there
