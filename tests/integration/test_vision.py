"""The camera pipeline inside a real node: real video, the real model, real worker processes.

A node process runs with one camera on vtest.avi (a street with pedestrians) and a hub-side
listener on the real broker. Workers are killed and frozen the way a crash or a deadlock
would, and the call button is pressed meanwhile.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.demo.footage import vtest_path
from devkit.localbroker import LocalBroker
from tests.support.camera_node import vision_config
from tests.support.hub_clients import Listener
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def camera_stats(telemetry: Listener) -> list[dict[str, Any]]:
    return [p["cameras"]["street"] for p in telemetry.payloads() if p.get("cameras")]


def worker_pids(node: NodeProcess, kind: str) -> list[int]:
    pattern = rf"camera street: {kind} worker started \(pid (\d+)\)"
    return [int(pid) for pid in re.findall(pattern, node.log())]



@pytest.fixture
def events(broker: LocalBroker) -> Iterator[Listener]:
    listener = Listener(broker, f"poles/{NODE_ID}/event")
    yield listener
    listener.close()


def test_people_walking_down_the_street_reach_the_hub_as_events_with_snapshots(
    tmp_path: Path, broker: LocalBroker, start_node: Any, events: Listener,
    telemetry: Listener,
) -> None:
    start_node(vision_config(tmp_path, broker, str(vtest_path())))
    wait_for(lambda: sum(e["phase"] == "new" for e in events.payloads()) >= 3, timeout=60,
             what="three new objects on the street")
    new = [e for e in events.payloads() if e["phase"] == "new"]
    assert {e["label"] for e in new} >= {"person"}
    assert all(e["camera"] == "street" and e["node"] == NODE_ID for e in new)
    assert len({e["id"] for e in new}) == len(new)
    with_snapshot = [e for e in new if e["snapshot"]]
    assert with_snapshot, "no event references a snapshot"
    jpeg = tmp_path / "data" / "snapshots" / with_snapshot[0]["snapshot"]
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"
    wait_for(lambda: any(s["processed_fps"] > 0 and s["inference_ms"] > 0
                         for s in camera_stats(telemetry)), what="camera telemetry")
    # The heartbeat taken while the street played (the file plays once: on a loaded machine
    # a later one may come after its end, at 0 fps).
    running = next(s for s in camera_stats(telemetry)
                   if s["processed_fps"] > 0 and s["inference_ms"] > 0)
    assert running["online"] and running["capture_fps"] > 0
    assert running["restarts"] == {"camera": 0, "detector": 0}


def test_a_killed_detection_worker_comes_back_and_the_call_button_works_meanwhile(
    tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
) -> None:
    alerts = Listener(broker, f"poles/{NODE_ID}/alert")
    node = start_node(vision_config(tmp_path, broker, str(vtest_path()), loop=True))
    wait_for(lambda: any(s["processed_fps"] > 0 for s in camera_stats(telemetry)),
             timeout=60, what="detection running")
    first = worker_pids(node, "detector")
    assert len(first) == 1
    os.kill(first[0], signal.SIGKILL)
    node.press()
    wait_for(lambda: len(alerts.payloads()) == 1, what="the call during the worker's restart")
    wait_for(lambda: len(worker_pids(node, "detector")) == 2, what="a new detection worker")
    wait_for(lambda: any(s["restarts"]["detector"] == 1 and s["processed_fps"] > 0
                         for s in camera_stats(telemetry)), timeout=60,
             what="detection running again, restart reported")
    assert worker_pids(node, "camera") == worker_pids(node, "camera")[:1]  # camera untouched
    alerts.close()


def test_a_hung_detection_worker_is_killed_and_replaced(
    tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
) -> None:
    node = start_node(vision_config(tmp_path, broker, str(vtest_path()), loop=True))
    wait_for(lambda: len(worker_pids(node, "detector")) == 1, timeout=30, what="detector")
    os.kill(worker_pids(node, "detector")[0], signal.SIGSTOP)  # a deadlock, as seen from outside
    wait_for(lambda: len(worker_pids(node, "detector")) == 2, timeout=30,
             what="the frozen worker replaced")
    assert "detector worker hung" in node.log()
    wait_for(lambda: any(s["restarts"]["detector"] == 1 and s["processed_fps"] > 0
                         for s in camera_stats(telemetry)), timeout=60,
             what="detection running again")


def test_a_corrupt_video_file_sets_the_camera_offline_and_nothing_else_stops(
    tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
) -> None:
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(os.urandom(200_000))
    alerts = Listener(broker, f"poles/{NODE_ID}/alert")
    node = start_node(vision_config(tmp_path, broker, str(corrupt)))
    wait_for(lambda: any(not s["online"] and "corrupt.avi" in s["reason"]
                         for s in camera_stats(telemetry)), timeout=30,
             what="the camera reported offline with the file named")
    node.press()
    wait_for(lambda: len(alerts.payloads()) == 1, what="the call with a broken camera")
    # retried with backoff, by the same camera worker: a bad source is not a crash
    wait_for(lambda: node.log().count("corrupt.avi") >= 3, what="retries")
    assert camera_stats(telemetry)[-1]["restarts"] == {"camera": 0, "detector": 0}
    alerts.close()


class StallingVideoServer:
    """An HTTP server that sends a video slowly, then stops sending (a stream that stalls).

    Each connection gets the file's first `cut` bytes at about `rate` bytes/s, then silence
    until the test ends; set `full` to serve the whole file (the stream is back)."""

    def __init__(self, video: Path, cut: int, rate: int = 400_000) -> None:
        self.data = video.read_bytes()
        self.cut, self.rate, self.full = cut, rate, False
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                body = self.data if self.full else self.data[: self.cut]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-msvideo\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(self.data))
                for i in range(0, len(body), self.rate // 10):
                    conn.sendall(body[i: i + self.rate // 10])
                    if self._stop.wait(0.1):
                        return
                self._stop.wait()  # stall: the camera's stream stopped mid-way
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def test_a_stream_that_stops_is_reported_offline_retried_and_comes_back(
    tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
) -> None:
    server = StallingVideoServer(vtest_path(), cut=1_500_000)
    try:
        start_node(vision_config(tmp_path, broker, f"http://127.0.0.1:{server.port}/cam"))
        wait_for(lambda: any(s["online"] for s in camera_stats(telemetry)), timeout=30,
                 what="the stream online")
        wait_for(lambda: any(not s["online"] and s["reason"]
                             for s in camera_stats(telemetry)[1:]), timeout=60,
                 what="the stalled stream reported offline")
        server.full = True
        connections = server.connections
        wait_for(lambda: server.connections > connections, timeout=30, what="a reconnect")
        wait_for(lambda: camera_stats(telemetry)[-1]["online"], timeout=30,
                 what="the camera online again")
        assert camera_stats(telemetry)[-1]["restarts"]["camera"] == 0
    finally:
        server.close()


