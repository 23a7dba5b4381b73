"""Node start: time to READY=1 and the main process's memory, with a camera running.

A real `edge-node run` process, configured as a pole is: mutual TLS to a real Mosquitto on
loopback (the hub's reference config), simulated pins, and one camera on the street sample
(H.264 as an IP camera sends it, at its own 10 fps, looped), recorded and analysed by the
node's real worker processes. The bench binds a unix datagram socket, passes it as
NOTIFY_SOCKET as systemd does for `Type=notify`, and times from just before it starts the
process until READY=1 arrives. `--settle` seconds after READY (the camera worker decoding
and recording, the detection worker running the model) it reads the main process's RSS and
peak RSS from /proc, the workers' RSS, and which heavy libraries the main process has
mapped (/proc/<pid>/maps).

The first start makes the data folder (outbox, evidence key) and is reported on its own;
the medians are over `--runs` restarts on that folder, as a pole starts after a reboot or
a crash. Baseline, measured in the same run and the same way: a bare Python process that
imports paho-mqtt, pydantic and PyYAML (what any MQTT client with a typed config loads)
and sends READY=1 at once.

    python bench/node_start.py [--runs 7] [--settle 8] [--markdown]

Run from the project's root. `python -m` puts the current folder first on the path, so
running this file from another checkout measures that checkout's node.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from report import Row, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/

from devkit.demo.footage import vtest_h264_path
from devkit.localbroker import LocalBroker
from tests.support.footprint import LIBRARIES, loaded

NODE = "bench-0001"
READY_TIMEOUT_S = 60.0
BASELINE = (
    "import os, socket, time\n"
    "import paho.mqtt.client, pydantic, yaml\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(3600)\n"
)


@dataclass(frozen=True)
class Sample:
    ready_s: float
    rss_mb: float
    peak_mb: float
    libraries: frozenset[str]
    workers_mb: dict[str, float]  # by kind: camera, detector


def status_mb(pid: int, field: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def start(cmd: list[str], workdir: Path, settle_s: float, log: Path) -> Sample:
    """Start `cmd`, time it to READY=1, and measure it `settle_s` later; then stop it."""
    notify = workdir / "notify"
    notify.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    before = log.read_text(errors="replace") if log.exists() else ""
    with log.open("ab") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env={**os.environ, "NOTIFY_SOCKET": str(notify)},
                                stdout=out, stderr=out)
    try:
        ready_s = None
        while ready_s is None:
            try:
                if b"READY=1" in sock.recv(4096):
                    ready_s = time.monotonic() - t0
            except TimeoutError:
                if proc.poll() is not None or time.monotonic() - t0 > READY_TIMEOUT_S:
                    raise RuntimeError(f"{cmd[-1]} never sent READY=1; see {log}") from None
        time.sleep(settle_s)
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[-1]} exited after READY=1; see {log}")
        pids = re.findall(r"camera street: (\w+) worker started \(pid (\d+)\)",
                          log.read_text(errors="replace")[len(before):])
        workers = {kind: status_mb(int(pid), "VmRSS") for kind, pid in pids}
        return Sample(ready_s, status_mb(proc.pid, "VmRSS"), status_mb(proc.pid, "VmHWM"),
                      loaded(proc.pid), workers)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.close()


def node_config(workdir: Path, broker: LocalBroker) -> Path:
    broker.node_tls_dir(NODE, workdir / "data")
    cfg = {
        "node": {"id": NODE, "site": "Bench", "location": {"lat": 50.0, "lon": 30.0}},
        "hub": {"host": broker.host, "port": broker.port, "tls": {}},
        "gpio": {"pin_factory": "mock", "call_button": {"pin": 17}, "call_led": {"pin": 27}},
        "cameras": [{"name": "street", "url": str(vtest_h264_path()), "loop": True}],
        "data_dir": str(workdir / "data"),
    }
    path = workdir / "node.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], unit: str, digits: int) -> str:
    return (f"{median(values):.{digits}f} {unit} "
            f"({min(values):.{digits}f}–{max(values):.{digits}f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="restarts to take the medians over")
    ap.add_argument("--settle", type=float, default=8.0,
                    help="seconds after READY=1 to measure memory (camera running)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-bench-start-") as tmp:
        workdir = Path(tmp)
        broker = LocalBroker(workdir / "broker", secure=True)
        broker.start()
        try:
            config = node_config(workdir, broker)
            node = [sys.executable, "-m", "edge.cli", "run", "--config", str(config)]
            bare = [sys.executable, "-c", BASELINE]
            print("first start (makes the data folder) ...", file=sys.stderr)
            first = start(node, workdir, args.settle, workdir / "node.log")
            nodes, bases = [], []
            for i in range(args.runs):  # alternated, so both see the same machine
                print(f"restart {i + 1}/{args.runs} ...", file=sys.stderr)
                bases.append(start(bare, workdir, 1.0, workdir / "bare.log"))
                nodes.append(start(node, workdir, args.settle, workdir / "node.log"))
        finally:
            broker.close()

    ready, base_ready = [s.ready_s for s in nodes], [s.ready_s for s in bases]
    rss, base_rss = [s.rss_mb for s in nodes], [s.rss_mb for s in bases]
    peak = [s.peak_mb for s in nodes]
    mapped = sorted(set().union(*(s.libraries for s in nodes)))
    camera = [s.workers_mb["camera"] for s in nodes if "camera" in s.workers_mb]
    detector = [s.workers_mb["detector"] for s in nodes if "detector" in s.workers_mb]
    n = f"median of {args.runs} (min–max)"
    rows = [
        Row("start → READY=1, restart, one camera", spread(ready, "s", 2),
            f"{median(base_ready):.2f} s bare python + paho, pydantic, yaml",
            f"{median(ready) / median(base_ready):.1f}×", "≤ 3 s"),
        Row(f"main-process RSS, {args.settle:.0f} s after READY", spread(rss, "MB", 1),
            f"{median(base_rss):.1f} MB bare", f"{median(rss) / median(base_rss):.1f}×",
            "≤ 60 MB"),
        Row("main-process peak RSS (VmHWM)", spread(peak, "MB", 1), n),
        Row("first start (makes outbox, evidence key)",
            f"{first.ready_s:.2f} s, {first.rss_mb:.1f} MB",
            "libraries: " + (", ".join(sorted(first.libraries)) or "none")),
        Row("heavy libraries in the main process", ", ".join(mapped) or "none",
            "looked for: " + ", ".join(LIBRARIES), "", "none"),
        Row("camera worker RSS", spread(camera, "MB", 0) if camera else "not started",
            "decodes, records"),
        Row("detection worker RSS", spread(detector, "MB", 0) if detector else "not started",
            "runs the model"),
    ]
    print_table(rows, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
