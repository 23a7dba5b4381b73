"""The lifecycle base of threaded devices and simulators, driven with real threads."""

from __future__ import annotations

import logging
import threading

import pytest

from drivers.lifecycle import Lifecycle

WAIT_S = 10.0  # an upper bound for a test that is about to fail, never a timing assertion


class Worker(Lifecycle):
    """A device with one thread that runs until stopped and counts the hook calls."""

    def __init__(self, *, join_timeout_s: float = 5.0, stubborn: bool = False) -> None:
        super().__init__(join_timeout_s=join_timeout_s)
        self.released = 0
        self.interrupted = 0
        self.in_release = threading.Event()
        self.release_gate: threading.Event | None = None
        self.running = threading.Event()
        self.let_go = threading.Event()  # what a stubborn thread waits for instead
        target = self._ignore_stop if stubborn else self._run
        self.thread = self._start_thread(target, "test-worker")

    def _run(self) -> None:
        self.running.set()
        self._stopping.wait()

    def _ignore_stop(self) -> None:
        self.running.set()
        self.let_go.wait(WAIT_S)

    def _interrupt(self) -> None:
        self.interrupted += 1

    def _release(self) -> None:
        self.released += 1
        self.in_release.set()
        if self.release_gate is not None:
            self.release_gate.wait(WAIT_S)


def test_the_thread_is_a_named_daemon_that_runs_until_close() -> None:
    worker = Worker()
    assert worker.running.wait(WAIT_S)
    assert worker.thread.name == "test-worker"
    assert worker.thread.daemon
    assert not worker.closed
    worker.close()
    assert worker.closed
    assert not worker.thread.is_alive()


def test_closing_twice_stops_and_releases_once() -> None:
    worker = Worker()
    worker.close()
    worker.close()
    assert (worker.interrupted, worker.released) == (1, 1)
    assert not worker.thread.is_alive()


def test_a_close_while_another_is_under_way_returns_without_releasing_again() -> None:
    worker = Worker()
    worker.release_gate = threading.Event()
    first = threading.Thread(target=worker.close)
    first.start()
    assert worker.in_release.wait(WAIT_S)
    worker.close()  # the first close is still releasing: this one must not wait or repeat
    assert worker.closed
    assert worker.released == 1
    worker.release_gate.set()
    first.join(WAIT_S)
    assert not first.is_alive()
    assert (worker.interrupted, worker.released) == (1, 1)


def test_many_threads_closing_at_once_release_once() -> None:
    worker = Worker()
    start = threading.Barrier(8)

    def close() -> None:
        start.wait(WAIT_S)
        worker.close()

    closers = [threading.Thread(target=close) for _ in range(8)]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(WAIT_S)
    assert not any(closer.is_alive() for closer in closers)
    assert (worker.interrupted, worker.released) == (1, 1)
    assert not worker.thread.is_alive()


def test_with_closes_on_exit_and_on_an_exception() -> None:
    with Worker() as worker:
        assert isinstance(worker, Worker)
        assert not worker.closed
    assert worker.closed and worker.released == 1
    assert not worker.thread.is_alive()

    with pytest.raises(ValueError), Worker() as failing:
        raise ValueError("boom")
    assert failing.closed and failing.released == 1


def test_a_thread_that_ignores_the_stop_is_reported_and_close_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker(join_timeout_s=0.05, stubborn=True)
    assert worker.running.wait(WAIT_S)
    with caplog.at_level(logging.WARNING, logger="drivers.lifecycle"):
        worker.close()
    try:
        assert worker.thread.is_alive()
        assert worker.released == 1  # resources are released even so
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "test-worker" in warnings[0].getMessage()
        assert "Worker" in warnings[0].getMessage()
    finally:
        worker.let_go.set()
        worker.thread.join(WAIT_S)


def test_a_close_from_the_objects_own_thread_does_not_wait_for_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class SelfClosing(Lifecycle):
        def __init__(self) -> None:
            super().__init__(join_timeout_s=WAIT_S)
            self.released = threading.Event()
            self.thread = self._start_thread(self.close, "self-closing")

        def _release(self) -> None:
            self.released.set()

    with caplog.at_level(logging.WARNING, logger="drivers.lifecycle"):
        device = SelfClosing()
        assert device.released.wait(WAIT_S)
        device.thread.join(WAIT_S)
    assert device.closed
    assert not device.thread.is_alive()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_every_thread_is_joined_and_a_thread_started_with_arguments_gets_them() -> None:
    class Pair(Lifecycle):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []
            self.threads = [self._start_thread(self._run, f"pair-{tag}", tag) for tag in "ab"]

        def _run(self, tag: str) -> None:
            self._stopping.wait()
            self.seen.append(tag)

    pair = Pair()
    pair.close()
    assert not any(thread.is_alive() for thread in pair.threads)
    assert sorted(pair.seen) == ["a", "b"]
