"""What the camera and detection worker processes share: start-up, stopping, reporting.

A worker talks to the supervisor in the main process through one pipe of its own (a
killed worker can corrupt only its own pipe) and proves it is alive by writing the time
into a shared heartbeat value; a worker whose heartbeat goes stale is killed and restarted.
Messages are small tuples: ("state", online, reason), ("stats", dict), ("event", event).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
Beat = Synchronized  # multiprocessing.Value("d"): monotonic time of the worker's last sign


class WorkerLink:
    """A worker's side of its pipe and heartbeat, plus the stop flag SIGTERM sets."""

    def __init__(self, conn: Connection, beat: Beat, name: str) -> None:  # type: ignore[type-arg]
        self.conn = conn
        self.beat = beat
        self.name = name
        self.stopping = threading.Event()

    def alive(self) -> None:
        self.beat.value = time.monotonic()

    def send(self, kind: str, *body: Any) -> None:
        try:
            self.conn.send((kind, *body))
        except (BrokenPipeError, OSError):
            # The supervisor is gone (the node stopped or died): nothing to report to.
            self.stopping.set()


def start_worker(name: str, nice: int, log_level: int) -> None:
    """Common start of a worker process: die with the node, lower priority, logging."""
    with contextlib.suppress(OSError, AttributeError):
        # If the node is killed (-9), its workers get SIGTERM instead of running on orphaned.
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if nice:
        try:
            os.nice(nice)  # the main process (call button, uplink) must win the CPU
        except OSError as e:
            print(f"{name}: cannot lower priority: {e}", file=sys.stderr)
    logging.basicConfig(
        level=log_level, stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {name}: %(message)s",
    )


def on_sigterm(link: WorkerLink) -> None:
    def stop(_sig: int, _frame: FrameType | None) -> None:
        link.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the node, which stops us
