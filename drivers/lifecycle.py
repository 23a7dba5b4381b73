"""One lifecycle for the pole's devices and their simulators: start threads, stop, release.

`Lifecycle` is what every driver and simulator with a thread (or a resource to give back)
shares, as gpiozero's `GPIOBase`/`GPIOThread` are for its devices: a `stopping` event its
threads watch, `close()` that is safe to call twice and from several threads at once, the
`closed` property, use as a context manager, and named daemon threads that `close()` joins
with a timeout, so a thread stuck in a handler is logged by name and never hangs the caller.

A subclass starts its threads with `_start_thread` and overrides two hooks, each run once:
`_interrupt()` wakes its threads from whatever they wait on (notify a condition, write a wake
pipe, cancel a read), and `_release()` gives back what it holds (pins, ports, sockets) once
the threads have ended or been given up on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Self

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0


class Lifecycle:
    """Closing, once, of a device or simulator and of the daemon threads it started.

    `close()` sets `_stopping`, calls `_interrupt()`, joins the threads started with
    `_start_thread` (all within `join_timeout_s`; a thread still running after that is
    logged as a warning, named, and left behind as a daemon), then calls `_release()`. Only
    the first call does this; any later or concurrent call returns at once. Called from one
    of the object's own threads (a callback that closes its device), that thread is not
    joined, since it cannot wait for itself.
    """

    def __init__(self, *, join_timeout_s: float = JOIN_TIMEOUT_S) -> None:
        self._stopping = threading.Event()
        self._join_timeout_s = join_timeout_s
        self._lifecycle_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def closed(self) -> bool:
        """True from the moment `close()` is first called."""
        return self._stopping.is_set()

    def close(self) -> None:
        """Stop the threads and release the resources; idempotent and thread-safe."""
        with self._lifecycle_lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
        self._interrupt()
        self._join_threads()
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start_thread(
        self, target: Callable[..., object], name: str, *args: Any
    ) -> threading.Thread:
        """Start `target(*args)` in a daemon thread called `name`, joined by `close()`."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lifecycle_lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _interrupt(self) -> None:
        """Wake the threads so they see `_stopping`; runs once, before they are joined."""

    def _release(self) -> None:
        """Give back what the object holds; runs once, after its threads are joined."""

    def _join_threads(self) -> None:
        deadline = time.monotonic() + self._join_timeout_s
        with self._lifecycle_lock:
            threads = list(self._threads)
        current = threading.current_thread()
        for thread in threads:
            if thread is current:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(
                    "%s: thread %r did not stop within %.1f s of close; left running",
                    type(self).__name__,
                    thread.name,
                    self._join_timeout_s,
                )
