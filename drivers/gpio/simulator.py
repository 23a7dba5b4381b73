"""The pole's wiring, simulated: drive and read MockFactory pins of a running node from outside.

When a node runs on MockFactory pins, `PinSimulator` serves those pins on a unix socket so
another process (the demo, a test, a benchmark) can press the call button or look at the
status lamp. The protocol is newline-delimited JSON, one reply per request:

    {"op": "drive", "pin": 17, "level": 0}  ->  {"ok": true}
    {"op": "read", "pin": 27}               ->  {"ok": true, "level": 1}
    {"op": "chatter", "pin": 17, "levels": [0, 1, 0, 1, 0], "gap_s": 0.0003}  ->  {"ok": true}
        (a contact bouncing: the levels in turn, gap_s apart, timed here in the server so
        the bounce does not stretch with the socket's round trips)
    anything else                           ->  {"ok": false, "error": "..."}

The client end, for the demo and the tests, is `devkit.simulators.gpio.PinSimulatorClient`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import time
from typing import Any

from gpiozero.pins.mock import MockFactory

from drivers.lifecycle import Lifecycle

logger = logging.getLogger(__name__)

_MAX_LINE = 64 * 1024
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL
_REPLY_TIMEOUT_S = 2.0
_FIELDS = {
    "drive": {"op", "pin", "level"},
    "read": {"op", "pin"},
    "chatter": {"op", "pin", "levels", "gap_s"},
}
_MAX_CHATTER = 64
_MAX_GAP_S = 0.1


class PinSimulator(Lifecycle):
    """Serves the pins of `factory` on the unix socket `socket_path` (mode 0600).

    Requests are handled one at a time in the server's thread, and a drive runs the device's
    edge callbacks right there, as an interrupt would. A bad request gets an error reply and
    the connection stays open; nothing a client sends stops the server.
    """

    def __init__(self, factory: MockFactory, socket_path: str) -> None:
        super().__init__()
        self._factory = factory
        self._path = socket_path
        self._listener = _listen(socket_path)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._buffers: dict[socket.socket, bytes] = {}
        self._start_thread(self._serve, "pin-simulator")

    def _interrupt(self) -> None:
        self._wake_w.send(b"x")

    def _release(self) -> None:
        # close(): stop serving, drop the connections and remove the socket file.
        for conn in list(self._buffers):
            conn.close()
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def _serve(self) -> None:
        while not self.closed:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if not isinstance(sock, socket.socket):  # only sockets are registered
                    continue
                try:
                    if sock is self._wake_r:
                        return
                    if sock is self._listener:
                        self._accept()
                    else:
                        self._read(sock)
                except Exception:
                    logger.exception("pin simulator: failed on %s", self._path)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        # Bounded sends so a client that never reads its replies cannot stall the pins.
        conn.settimeout(_REPLY_TIMEOUT_S)
        self._buffers[conn] = b""
        self._selector.register(conn, selectors.EVENT_READ)

    def _drop(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        del self._buffers[conn]
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buffer = self._buffers[conn] + data
        *lines, rest = buffer.split(b"\n")
        try:
            for line in lines:
                if line.strip():
                    conn.sendall(_encode(self._reply(line)))
            if len(rest) > _MAX_LINE:
                conn.sendall(_encode(_error(f"request longer than {_MAX_LINE} bytes")))
                self._drop(conn)
                return
        except OSError:
            self._drop(conn)
            return
        self._buffers[conn] = rest

    def _reply(self, line: bytes) -> dict[str, Any]:
        try:
            return self._handle(line)
        except Exception as exc:
            # E.g. a device's edge callback raising while a drive runs it; the server goes on.
            logger.exception("pin simulator: request %r failed", line[:200])
            return _error(f"request failed: {exc!r}")

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return _error(f"bad JSON: {exc}")
        if not isinstance(request, dict):
            return _error("a request must be a JSON object")
        op = request.get("op")
        if op not in _FIELDS:
            return _error(f"unknown op {op!r}; expected one of: {', '.join(_FIELDS)}")
        unexpected = set(request) - _FIELDS[op]
        missing = _FIELDS[op] - set(request)
        if unexpected or missing:
            return _error(
                f"op {op!r} takes fields {sorted(_FIELDS[op])}; "
                f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        number = request["pin"]
        if not isinstance(number, int) or isinstance(number, bool):
            return _error(f"pin must be an integer GPIO number, got {number!r}")
        try:
            pin = self._factory.pin(number)
        except Exception as exc:
            return _error(f"pin {number}: {exc}")
        if op == "read":
            return {"ok": True, "level": int(bool(pin.state))}
        if op == "chatter":
            return self._chatter(pin, number, request["levels"], request["gap_s"])
        return self._drive(pin, number, request["level"])

    def _chatter(self, pin: Any, number: int, levels: object, gap_s: object) -> dict[str, Any]:
        if not isinstance(levels, list) or not 0 < len(levels) <= _MAX_CHATTER:
            return _error(f"levels must be a list of 1..{_MAX_CHATTER} levels, got {levels!r}")
        if (not isinstance(gap_s, int | float) or isinstance(gap_s, bool)
                or not 0 <= gap_s <= _MAX_GAP_S):
            return _error(f"gap_s must be 0..{_MAX_GAP_S} seconds, got {gap_s!r}")
        for i, level in enumerate(levels):
            if i and gap_s:
                time.sleep(gap_s)
            reply = self._drive(pin, number, level)
            if not reply["ok"]:
                return reply
        return {"ok": True}

    def _drive(self, pin: Any, number: int, level: object) -> dict[str, Any]:
        if level not in (0, 1) or isinstance(level, float):
            return _error(f"level must be 0 or 1, got {level!r}")
        if pin.function != "input":
            return _error(f"pin {number} is an {pin.function}; only inputs can be driven")
        if level:
            pin.drive_high()
        else:
            pin.drive_low()
        return {"ok": True}


def _listen(path: str) -> socket.socket:
    """A listening socket at `path`; the file appears only once it accepts connections."""
    staging = path + ".new"
    if len(os.fsencode(staging)) > _MAX_SOCKET_PATH:
        raise ValueError(
            f"pin simulator socket path {path!r} is too long for a unix socket "
            f"(at most {_MAX_SOCKET_PATH - 4} bytes); choose a shorter one"
        )
    _check_replaceable(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Linux creates the socket file with this mode, so it is never briefly world-writable.
        os.fchmod(listener.fileno(), 0o600)
        listener.bind(staging)
        os.chmod(staging, 0o600)
        listener.listen()
        # A client that waits for the file to appear must never find it refusing connections.
        os.replace(staging, path)
    except BaseException:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise
    listener.setblocking(False)
    return listener


def _check_replaceable(path: str) -> None:
    """Refuse to take over a path that is not a stale socket left by a node that died."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return
    raise FileExistsError(f"another pin simulator is already serving on {path}")


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"
