"""`ledger.beside`: a computation run in a forked child gives the value it gives here, and
anything that goes wrong in the child ends with the computation done here instead."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ledger.beside import beside, can_fork

PARENT = os.getpid()


def test_a_forked_computation_runs_in_another_process() -> None:
    with beside(os.getpid, fork=True) as pending:
        assert pending.in_child
        assert pending.result() not in (PARENT, None)


def test_without_a_fork_it_runs_here_when_asked() -> None:
    calls: list[int] = []

    def fn() -> int:
        calls.append(1)
        return os.getpid()

    with beside(fn, fork=False) as pending:
        assert not pending.in_child and calls == []
        assert pending.result() == os.getpid() and calls == [1]


def test_a_large_result_arrives_whole() -> None:
    big = [f"discrepancy {i}" for i in range(200_000)]  # far more than a pipe holds
    with beside(lambda: list(big), fork=True) as pending:
        assert pending.result() == big


def test_what_the_child_raises_is_raised_here() -> None:
    def fails() -> None:
        raise ValueError(f"from {os.getpid()}")

    with beside(fails, fork=True) as pending, pytest.raises(ValueError, match=f"from {PARENT}"):
        pending.result()


def test_a_child_killed_midway_is_replaced_by_the_computation_here() -> None:
    def dies_in_the_child() -> int:
        if os.getpid() != PARENT:
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    with beside(dies_in_the_child, fork=True) as pending:
        assert pending.result() == PARENT


def test_a_child_whose_result_is_not_taken_is_stopped_and_reaped() -> None:
    with beside(lambda: time.sleep(60), fork=True) as pending:
        pid = pending._child[0] if pending._child else 0
        assert pid
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no longer a child of ours


def test_no_fork_while_another_thread_runs() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not can_fork()
        with beside(os.getpid) as pending:
            assert not pending.in_child and pending.result() == PARENT
    finally:
        stop.set()
        other.join()
