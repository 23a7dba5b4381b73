"""Working a node's simulated pole from outside, over the pin simulator's unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from gpiozero import Button

from devkit.simulators.gpio import PinSimulatorClient, PinSimulatorError
from drivers.gpio import CallButton, PinSimulator, StatusLed, make_pin_factory
from tests.support.waiting import wait_for

BUTTON_PIN, LED_PIN = 17, 27




@dataclass
class Pole:
    factory: Any
    button: CallButton
    led: StatusLed
    simulator: PinSimulator
    path: str
    presses: list[str] = field(default_factory=list)
    releases: list[float] = field(default_factory=list)


@pytest.fixture
def socket_dir() -> Iterator[str]:
    # Short path: unix socket names are limited to ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="gpio-sim-") as path:
        yield path


@pytest.fixture
def pole(socket_dir: str) -> Iterator[Pole]:
    factory = make_pin_factory("mock")
    assert factory is not None
    path = os.path.join(socket_dir, "pins.sock")
    with (
        CallButton(BUTTON_PIN, debounce_s=0.02, pin_factory=factory) as button,
        StatusLed(LED_PIN, pin_factory=factory) as led,
        PinSimulator(factory, path) as simulator,
    ):
        pole = Pole(factory, button, led, simulator, path)
        button.when_pressed = lambda: pole.presses.append(threading.current_thread().name)
        button.when_released = pole.releases.append
        yield pole
    factory.reset()


@pytest.fixture
def client(pole: Pole) -> Iterator[PinSimulatorClient]:
    with PinSimulatorClient(pole.path) as client:
        yield client


def raw_exchange(path: str, lines: list[bytes]) -> list[dict[str, Any]]:
    """Sends each line on one connection and returns the replies, in order."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(path)
        replies: list[dict[str, Any]] = []
        stream = sock.makefile("rb")
        for line in lines:
            sock.sendall(line)
            replies.append(json.loads(stream.readline()))
        return replies


def test_the_socket_is_private_to_the_node_user(pole: Pole) -> None:
    mode = os.stat(pole.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_a_press_through_the_socket_calls_the_node_once_from_the_server_thread(
    pole: Pole, client: PinSimulatorClient
) -> None:
    client.press(BUTTON_PIN, hold_s=0.05)
    assert pole.presses == ["pin-simulator"]
    assert wait_for(lambda: len(pole.releases) == 1)
    assert pole.releases[0] >= 0.04
    assert pole.button.presses == 1


def test_a_bouncy_press_through_the_socket_is_still_one_press(
    pole: Pole, client: PinSimulatorClient
) -> None:
    client.press(BUTTON_PIN, hold_s=0.05, bounce=True)
    assert wait_for(lambda: len(pole.releases) == 1)
    time.sleep(0.05)
    edges = [s.state for s in pole.factory.pin(BUTTON_PIN).states]
    # The burst really reached the pin: five edges down, five up.
    assert edges.count(False) >= 5
    assert len(pole.presses) == 1
    assert len(pole.releases) == 1


def test_chatter_plays_a_bounce_burst_in_the_server_and_rejects_bad_bursts(
    pole: Pole, client: PinSimulatorClient
) -> None:
    replies = raw_exchange(pole.path, [
        b'{"op": "chatter", "pin": 17, "levels": [0, 1, 0, 1, 0], "gap_s": 0.0003}\n',
        b'{"op": "chatter", "pin": 17, "levels": [], "gap_s": 0.001}\n',
        b'{"op": "chatter", "pin": 17, "levels": [1, 2], "gap_s": 0.001}\n',
        b'{"op": "chatter", "pin": 17, "levels": [1], "gap_s": 5}\n',
        b'{"op": "drive", "pin": 17, "level": 1}\n',
    ])
    assert [r["ok"] for r in replies] == [True, False, False, False, True]
    assert "levels must be a list" in replies[1]["error"]
    assert "level must be 0 or 1" in replies[2]["error"]
    assert "gap_s must be" in replies[3]["error"]
    assert wait_for(lambda: len(pole.releases) == 1)
    assert len(pole.presses) == 1


def test_read_returns_the_lamp_level(pole: Pole, client: PinSimulatorClient) -> None:
    assert client.read(LED_PIN) == 0
    pole.led.on()
    assert client.read(LED_PIN) == 1
    assert client.read(BUTTON_PIN) == 1  # pulled up while nobody presses it


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"press the button\n", "bad JSON"),
        (b"\xff\xfe\n", "bad JSON"),
        (b"[17, 0]\n", "JSON object"),
        (b'{"op": "fly", "pin": 17}\n', "unknown op"),
        (b'{"pin": 17, "level": 0}\n', "unknown op"),
        (b'{"op": "drive", "pin": "17", "level": 0}\n', "integer"),
        (b'{"op": "drive", "pin": true, "level": 0}\n', "integer"),
        (b'{"op": "drive", "pin": 17}\n', "missing"),
        (b'{"op": "read", "pin": 27, "level": 1}\n', "unexpected"),
        (b'{"op": "drive", "pin": 17, "level": 5}\n', "0 or 1"),
        (b'{"op": "drive", "pin": 17, "level": 0.0}\n', "0 or 1"),
        (b'{"op": "drive", "pin": 27, "level": 1}\n', "output"),
        (b'{"op": "read", "pin": 999}\n', "999"),
        (b"[" * 20_000 + b"\n", "bad JSON"),
    ],
)
def test_a_malformed_request_gets_an_error_and_the_connection_keeps_serving(
    pole: Pole, line: bytes, error: str
) -> None:
    bad, good = raw_exchange(pole.path, [line, b'{"op": "read", "pin": 27}\n'])
    assert bad["ok"] is False
    assert error in bad["error"]
    assert good == {"ok": True, "level": 0}
    assert pole.presses == []


def test_the_client_raises_the_servers_error(client: PinSimulatorClient) -> None:
    with pytest.raises(PinSimulatorError, match="output"):
        client.drive(LED_PIN, 1)
    assert client.read(LED_PIN) == 0


def test_a_device_callback_that_raises_does_not_stop_the_server(
    pole: Pole, client: PinSimulatorClient
) -> None:
    def broken() -> None:
        raise RuntimeError("handler bug")

    # A plain gpiozero Button does not guard its callbacks the way CallButton does.
    with Button(22, pin_factory=pole.factory) as other:
        other.when_pressed = broken
        with pytest.raises(PinSimulatorError, match="handler bug"):
            client.drive(22, 0)
    client.press(BUTTON_PIN)
    assert len(pole.presses) == 1


def test_clients_that_vanish_mid_request_do_not_stop_the_server(
    pole: Pole, client: PinSimulatorClient
) -> None:
    for junk in (b'{"op": "drive", "pi', b"x" * 70_000):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(pole.path)
            # The server may hang up on an oversized line before it is all sent.
            with contextlib.suppress(OSError):
                sock.sendall(junk)
    client.press(BUTTON_PIN)
    assert len(pole.presses) == 1


def test_close_removes_the_socket_and_a_stale_one_is_replaced(socket_dir: str) -> None:
    factory = make_pin_factory("mock")
    path = os.path.join(socket_dir, "pins.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    simulator = PinSimulator(factory, path)
    with PinSimulatorClient(path) as client:
        assert client.read(LED_PIN) == 0
    simulator.close()
    simulator.close()
    assert not os.path.exists(path)
    assert all(t.name != "pin-simulator" for t in threading.enumerate())


def test_a_path_already_in_use_is_refused_with_the_reason(pole: Pole, socket_dir: str) -> None:
    with pytest.raises(FileExistsError, match="already serving"):
        PinSimulator(pole.factory, pole.path)
    assert raw_exchange(pole.path, [b'{"op": "read", "pin": 27}\n']) == [{"ok": True, "level": 0}]
    not_a_socket = os.path.join(socket_dir, "notes.txt")
    with open(not_a_socket, "w") as notes:
        notes.write("keep me")
    with pytest.raises(FileExistsError, match="not a socket"):
        PinSimulator(pole.factory, not_a_socket)
    with open(not_a_socket) as notes:
        assert notes.read() == "keep me"
    with pytest.raises(ValueError, match="too long"):
        PinSimulator(pole.factory, os.path.join(socket_dir, "p" * 120))
    assert sorted(os.listdir(socket_dir)) == ["notes.txt", "pins.sock"]


def test_a_runaway_line_is_refused_and_that_connection_closed(
    pole: Pole, client: PinSimulatorClient
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(pole.path)
        with contextlib.suppress(OSError):
            sock.sendall(b"x" * 100_000)
        reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False and "longer than" in reply["error"]
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True  # closed with the rest of the runaway line still unread
        assert closed
    assert client.read(LED_PIN) == 0
