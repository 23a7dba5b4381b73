"""A simulated serial cable: a pseudo-terminal whose far end a device simulator holds.

On the pole a driver opens /dev/ttyUSB0 (or a udev link such as /dev/serial/by-id/...) and a
device answers at the other end of the cable. On a build machine `PtyLine` stands in for the
cable: the driver opens `path` exactly as it would the adapter, and the simulator reads and
writes raw bytes at the pty's master end, byte-exact, no line discipline in between.

`unplug()` is the adapter pulled out: the master closes, so the driver's reads and writes fail
with EIO, and the stable `link` (if any) disappears. `plug()` is a new adapter: a fresh pty,
with `link` pointing at it again, as udev would recreate /dev/serial/by-id/....
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import tty
from collections.abc import Callable
from pathlib import Path

from drivers.lifecycle import Lifecycle

logger = logging.getLogger(__name__)

_READ_SIZE = 4096
_ERROR_PAUSE_S = 0.05


class PtyLine(Lifecycle):
    """A pty pair with a thread that hands every byte the driver sends to `on_data`.

    `on_data` runs in the line's own thread; an exception in it is logged and the line goes on.
    `write` may be called from any thread. Bytes written while no driver reads them wait in the
    pty's buffer as they would in a UART FIFO; once that is full further bytes are dropped and
    counted, since a device on a wire never blocks on its listener.
    """

    def __init__(
        self,
        on_data: Callable[[bytes], None] | None = None,
        *,
        link: str | os.PathLike[str] | None = None,
        name: str = "pty-line",
    ) -> None:
        super().__init__()
        self._on_data = on_data
        self._link = Path(link) if link is not None else None
        self._lock = threading.Condition()
        self._generation = 0
        self._polling = False
        self._unplugging = False
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self.dropped_bytes = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.plug()
        self._thread = self._start_thread(self._serve, name)

    @property
    def path(self) -> str:
        """What the driver opens: the stable link if one was asked for, else the pty's name."""
        return str(self._link) if self._link is not None else self._slave_name

    @property
    def plugged(self) -> bool:
        """False between `unplug()` and `plug()`."""
        with self._lock:
            return self._master is not None

    def write(self, data: bytes) -> int:
        """Send bytes to the driver; returns how many were accepted (0 while unplugged)."""
        with self._lock:
            if self._master is None:
                return 0
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                logger.debug("%s: write failed: %s", self.path, exc)
                written = 0
            self.dropped_bytes += len(data) - written
            return written

    def unplug(self) -> None:
        """Pull the adapter: the driver's open port fails and `path` goes away."""
        with self._lock:
            self._unplugging = True
        self._wake()
        with self._lock:
            # The kernel hangs the pty up only when no poll holds the master any more: closing
            # it under the thread's poll would leave the driver's next write "succeeding".
            while self._polling and threading.current_thread() is not self._thread:
                self._lock.wait()
            self._unplugging = False
            self._lock.notify_all()
            self._generation += 1
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None
            if self._link is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._link.unlink()
        self._wake()

    def plug(self) -> None:
        """Plug an adapter in: a fresh pty appears at `path` (a no-op if one is plugged)."""
        with self._lock:
            if self.closed or self._master is not None:
                return
            master, slave = os.openpty()
            # Raw before any byte flows: no echo, no CR/LF mapping, so bytes arrive as sent.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self._slave_name = os.ttyname(slave)
            self._generation += 1
            if self._link is not None:
                staging = self._link.with_name(self._link.name + ".new")
                with contextlib.suppress(FileNotFoundError):
                    staging.unlink()
                staging.symlink_to(self._slave_name)
                # Atomic, so a driver retrying never finds a half-made link.
                staging.replace(self._link)
        self._wake()

    def _interrupt(self) -> None:
        # close(): unplug for good and stop the thread.
        self.unplug()
        self._wake()

    def _release(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _serve(self) -> None:
        while True:
            with self._lock:
                while self._unplugging:
                    self._lock.wait()
                if self.closed:
                    return
                master, generation = self._master, self._generation
                self._polling = True
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            if master is not None:
                poller.register(master, select.POLLIN)
            try:
                ready = {fd for fd, _ in poller.poll()}
            finally:
                with self._lock:
                    self._polling = False
                    self._lock.notify_all()
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, _READ_SIZE)
            if master is None or master not in ready:
                continue
            data = self._read(master, generation)
            if data is None:
                # A master that keeps failing must not turn this thread into a busy loop.
                select.select([self._wake_r], [], [], _ERROR_PAUSE_S)
                continue
            if data and self._on_data is not None:
                try:
                    self._on_data(data)
                except Exception:
                    logger.exception("%s: device simulator failed on %r", self.path, data[:64])

    def _read(self, master: int, generation: int) -> bytes | None:
        with self._lock:
            # unplug() may have closed this fd (and the number been reused) since the select.
            if generation != self._generation:
                return b""
            try:
                return os.read(master, _READ_SIZE)
            except BlockingIOError:
                return b""
            except OSError as exc:
                if exc.errno != errno.EIO:
                    logger.warning("%s: read failed: %s", self.path, exc)
                return None
