"""What the camera and detection worker processes share: start-up, stopping, reporting.

A worker talks to the supervisor in the main process through one pipe of its own (a
killed worker can corrupt only its own pipe) and proves it is alive by writing the time
into a shared heartbeat value; a worker whose heartbeat goes stale is killed and restarted.
Messages are small tuples: ("state", online, reason), ("stats", dict), ("event", event),
("recording", dict).

The jobs and the launcher live here, not in the worker modules, so that the supervisor in
the main process never imports OpenCV, FFmpeg or the model runtime: the child imports its
worker module itself.
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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from types import FrameType
from typing import Any

from edge.config.recording import RecordingSection
from edge.config.vision import CameraSection, DetectorSection

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
Beat = Synchronized  # multiprocessing.Value("d"): monotonic time of the worker's last sign


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


def launch(module: str, job: Any, conn: Connection, beat: Beat) -> None:  # type: ignore[type-arg]
    """Process entry point (multiprocessing, spawn): run `module`'s `run(job, conn, beat)`."""
    import importlib

    importlib.import_module(module).run(job, conn, beat)


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
