"""Run a pure computation in a forked child while this process goes on with other work.

The child inherits the data it works on (no copying or pickling on the way in) and sends back
only its result. It is used only where that is safe and useful: on Linux, with more than one
core available and no other thread in this process (a fork copies only the calling thread, so
a lock another thread held would stay held in the child). Otherwise, and whenever the child
fails to deliver (killed, or its result cannot be sent), the computation runs here when its
result is asked for: the answer never depends on whether a child was used.

The function must not touch open connections or files: the child only computes, writes its
result to a pipe and leaves with `os._exit`, so nothing inherited is closed or flushed twice.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Pending(Generic[T]):
    """A result being computed (in a child) or to be computed (here) on `result()`. Used as a
    context manager: a child whose result was not taken is stopped and reaped on exit."""

    def __init__(self, fn: Callable[[], T], child: tuple[int, int] | None) -> None:
        self._fn = fn
        self._child = child  # (pid, read end of the pipe)

    @property
    def in_child(self) -> bool:
        return self._child is not None

    def result(self) -> T:
        if self._child is None:
            return self._fn()
        pid, reader = self._child
        self._child = None
        with os.fdopen(reader, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        try:
            delivered: tuple[bool, Any] = pickle.loads(payload) if status == 0 else (False, None)
        except Exception:  # cut short: the child died while writing
            delivered = (False, None)
        if not delivered[0]:  # compute it here (and raise here what it raised)
            return self._fn()
        result: T = delivered[1]
        return result

    def __enter__(self) -> Pending[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._child is not None:
            pid, reader = self._child
            self._child = None
            os.close(reader)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def can_fork() -> bool:
    """Whether a child would run beside this process now."""
    return (
        sys.platform == "linux"
        and len(os.sched_getaffinity(0)) > 1
        and threading.active_count() == 1
    )


def beside(fn: Callable[[], T], *, fork: bool | None = None) -> Pending[T]:
    """Start `fn` in a forked child (with `fork` None: when `can_fork()`; True or False forces
    the choice, for tests and benchmarks); `result()` gives its value."""
    if not (can_fork() if fork is None else fork):
        return Pending(fn, None)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(reader)
            try:
                payload = pickle.dumps((True, fn()), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:  # the parent computes it again and raises it itself
                payload = pickle.dumps((False, None))
            with os.fdopen(writer, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(writer)
    return Pending(fn, (pid, reader))
