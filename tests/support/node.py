"""A node under test: its config for a test broker, and a real `edge-node run` process whose
pins are driven through the pin simulator socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devkit.localbroker import LocalBroker
from tests.support.waiting import wait_for

NODE_ID = "test-0001"
BUTTON, LED, TAMPER = 17, 27, 22


def node_config(tmp_path: Path, broker: LocalBroker, *, node_id: str = NODE_ID,
                certificate: str | None = None, **timings: float) -> Path:
    """A node's config for `broker`. On a secure broker the node gets `hub.tls: {}` and a
    certificate for `certificate` (default: its own id) in `<data_dir>/tls/`."""
    hub: dict[str, Any] = {"host": broker.host, "port": broker.port, "keepalive_s": 3,
                           "reconnect_min_s": 0.1, "reconnect_max_s": 1.0}
    if broker.secure:
        broker.node_tls_dir(certificate or node_id, tmp_path / "data")
        hub["tls"] = {}
    cfg = {
        "node": {"id": node_id, "site": "Test pole, Kozyatyn",
                 "location": {"lat": 49.71, "lon": 28.83, "description": "Station square"}},
        "hub": hub,
        "gpio": {"pin_factory": "mock", "simulator_socket": str(tmp_path / "pins.sock"),
                 "call_button": {"pin": BUTTON}, "call_led": {"pin": LED},
                 "inputs": [{"name": "tamper", "pin": TAMPER}]},
        "timings": {"debounce_ms": 20, "ack_timeout_s": 5, "ack_display_s": 3,
                    "heartbeat_s": 1, **timings},
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class NodeProcess:
    """A real `edge-node run` process; its pins are driven through the simulator socket."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.cfg = yaml.safe_load(config.read_text())
        self.socket = Path(self.cfg["gpio"]["simulator_socket"])
        self.log_path = config.parent / "node.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.pins: Any = None

    def start(self) -> NodeProcess:
        from devkit.simulators.gpio import PinSimulatorClient

        self.socket.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "--log-level", "DEBUG", "run",
             "--config", str(self.config)],
            stdout=log, stderr=log, env={**os.environ, **(self.env or {})},
        )
        wait_for(lambda: self.socket.exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                 what="the node's pin simulator socket")
        assert self.proc.poll() is None, f"node exited at start:\n{self.log()}"
        self.pins = PinSimulatorClient(str(self.socket))
        return self

    def press(self, hold_s: float = 0.05, bounce: bool = True) -> None:
        self.pins.press(BUTTON, hold_s=hold_s, bounce=bounce)

    def led(self) -> int:
        return int(self.pins.read(LED))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_client()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_client()
        return self.proc.returncode

    def _close_client(self) -> None:
        if self.pins is not None:
            self.pins.close()
            self.pins = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
