"""What the camera and detection worker processes share: start-up, stopping, reporting.

A worker talks to the supervisor in the main process through one pipe of its own (a
killed worker can corrupt only its own pipe) and proves it is alive by writing the time
into a shared heartbeat value; a worker whose heartbeat goes stale is killed and restarted.
Messages are small tuples: ("state", online, reason), ("stats", dict), ("event", event),
("recording", dict).

`start` (in the supervisor's thread) and `serve` (the child's entry) are the two ends of a
worker's start. The child is a fresh interpreter (never a fork of the threaded main
process) whose first lines set the parent-death signal (`drivers.platform.parent_death`),
so a worker never outlives its node, even one killed in the middle of starting it. It
reads its job from stdin and imports its worker module itself, so the main process never
imports OpenCV, FFmpeg or the model runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import mmap
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sized
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from drivers.platform.parent_death import python_child
from edge.config.recording import RecordingSection
from edge.config.vision import CameraSection, DetectorSection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraJob:
    """Everything a camera worker needs; picklable, sent once at process start."""

    camera: CameraSection
    ring_name: str
    nice: int
    log_level: int
    open_timeout_s: float
    read_timeout_s: float
    recording: RecordingSection | None = None  # None: this camera is not recorded
    recording_dir: Path | None = None


@dataclass(frozen=True)
class DetectionJob:
    """Everything a detection worker needs; picklable, sent once at process start."""

    camera: CameraSection
    detector: DetectorSection
    ring_name: str
    snapshot_dir: Path | None
    nice: int
    log_level: int


class Beat:
    """The monotonic time of a worker's last sign of life: one double in memory shared by
    the worker and the supervisor (a memfd, handed to the worker by its number)."""

    def __init__(self, fd: int) -> None:
        self._map = mmap.mmap(fd, ctypes.sizeof(ctypes.c_double))
        self._cell = ctypes.c_double.from_buffer(self._map)  # one aligned 8-byte store

    @property
    def value(self) -> float:
        return float(self._cell.value)

    @value.setter
    def value(self, t: float) -> None:
        self._cell.value = t


@dataclass
class Started:
    """A worker process just started, as the supervisor holds it."""

    process: subprocess.Popen[bytes]
    conn: Connection  # the supervisor's (reading) end of the worker's pipe
    beat: Beat


def start(module: str, job: Any) -> Started:
    """Start a worker process that runs `module`'s `run(job, conn, beat)`.

    The worker dies with the thread that calls this (the kernel's parent-death signal is
    tied to the thread): call it only from the thread that supervises the worker."""
    ours, theirs = os.pipe()
    beat_fd = os.memfd_create("worker-beat")
    try:
        os.ftruncate(beat_fd, ctypes.sizeof(ctypes.c_double))
        beat = Beat(beat_fd)
        beat.value = time.monotonic()
        message = pickle.dumps((module, job, theirs, beat_fd))
        process = subprocess.Popen(  # noqa: S603 (this interpreter, our own program)
            python_child(f"{__name__}:serve"), stdin=subprocess.PIPE,
            pass_fds=(theirs, beat_fd))
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)
        os.close(beat_fd)
    if process.stdin is not None:  # always (stdin=PIPE)
        # A worker that died at once breaks this pipe; the supervisor sees it exit.
        with contextlib.suppress(BrokenPipeError), process.stdin:
            process.stdin.write(message)
    return Started(process, Connection(ours, writable=False), beat)


def serve() -> None:
    """A worker process's main, the parent-death signal already set: its job from stdin."""
    # From the supervisor, through a pipe only it held.
    module, job, conn_fd, beat_fd = pickle.load(sys.stdin.buffer)  # noqa: S301
    beat = Beat(beat_fd)
    os.close(beat_fd)
    _leave_rings_to_the_node()
    worker = importlib.import_module(module)
    worker.run(job, Connection(conn_fd, readable=False), beat)


def _leave_rings_to_the_node() -> None:
    # Before Python 3.13, attaching to shared memory registers it with a resource tracker,
    # which a worker would start for itself and which unlinks the node's frame ring when
    # the worker exits. The node made the rings; the node (or its tracker) removes them.
    register = resource_tracker.register

    def shared_memory_untracked(name: Sized, rtype: str) -> None:
        if rtype != "shared_memory":
            register(name, rtype)

    resource_tracker.register = shared_memory_untracked


class WorkerLink:
    """A worker's side of its pipe and heartbeat, plus the stop flag SIGTERM sets."""

    def __init__(self, conn: Connection, beat: Beat, name: str) -> None:
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
    """Common start of a worker process: lower priority, logging."""
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
