"""A real Mosquitto broker on a free loopback port, for the demo, the tests and benchmarks.

Run from its own config file, not as a system service, and stoppable and restartable on
the same port so outages can be staged. Persistence is on, so a clean restart keeps
sessions and queued QoS 1 messages, as the hub's broker would.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalBroker:
    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="edge-broker-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._exe = exe
        self._proc: subprocess.Popen[bytes] | None = None
        self.conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "user root\n"  # started as root, mosquitto would drop to a user that cannot write here
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_queued_messages 100000\n"
            "set_tcp_nodelay true\n"  # as the hub's broker should: alerts are small packets
        )

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        if not Path(self._exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self._proc = subprocess.Popen(
            [self._exe, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err.strip()} (log: {self.log})")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGCONT)  # a frozen broker cannot act on SIGTERM
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def freeze(self) -> None:
        """Stop the broker answering without closing its sockets (SIGSTOP): a hung hub."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
