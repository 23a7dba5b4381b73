"""The pole's wiring, worked from outside: a client for a node's `PinSimulator`.

A node running on MockFactory pins serves them on a unix socket
(`drivers.gpio.simulator.PinSimulator`); `PinSimulatorClient` connects there so the demo, a
test or a benchmark can press the call button, drive a cabinet contact or read the status
lamp, in the simulator's newline-delimited JSON protocol, one reply per request.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from drivers.lifecycle import Lifecycle

_TIMEOUT_S = 2.0


class PinSimulatorError(RuntimeError):
    """The simulator refused a request; the message is the server's error."""


class PinSimulatorClient(Lifecycle):
    """Connects to a `PinSimulator` and works the simulated pole's pins; `close()` disconnects."""

    def __init__(self, socket_path: str, *, timeout_s: float = _TIMEOUT_S) -> None:
        super().__init__()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(socket_path)
        except OSError:
            self._sock.close()
            raise
        self._pending = b""

    def drive(self, pin: int, level: int) -> None:
        """Drive input `pin` to `level` (0 or 1), as the wiring would."""
        self._request({"op": "drive", "pin": pin, "level": level})

    def read(self, pin: int) -> int:
        """The level (0 or 1) of `pin`, input or output."""
        level = self._request({"op": "read", "pin": pin})["level"]
        if not isinstance(level, int):
            raise PinSimulatorError(f"read of pin {pin} returned {level!r}")
        return level

    def press(
        self, pin: int, hold_s: float = 0.05, bounce: bool = False, *, active_low: bool = True
    ) -> None:
        """Press the button on `pin`, hold it for `hold_s`, release it.

        With `bounce`, the contact chatters like a real one: a burst of edges back to back
        before it settles, on press and again on release. `active_low` matches a button
        that closes to ground (the usual wiring, with a pull-up).
        """
        pressed, released = (0, 1) if active_low else (1, 0)
        self._settle(pin, pressed, released, bounce)
        time.sleep(hold_s)
        self._settle(pin, released, pressed, bounce)

    def _release(self) -> None:
        # close(): disconnect.
        self._sock.close()

    def _settle(self, pin: int, level: int, other: int, bounce: bool) -> None:
        if bounce:
            levels = [level, other, level, other, level]
            # Back to back: real bounce edges are microseconds apart, and a sleep here is where
            # a starved process would stretch a bounce past the debounce time.
            self._request({"op": "chatter", "pin": pin, "levels": levels, "gap_s": 0})
        else:
            self.drive(pin, level)

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        self._sock.sendall(_encode(message))
        while b"\n" not in self._pending:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionError("pin simulator closed the connection")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise PinSimulatorError(f"unexpected reply {reply!r}")
        if not reply.get("ok"):
            raise PinSimulatorError(str(reply.get("error")))
        return reply


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"
