"""The node's main process stays small: video, model and key libraries live in the workers.

A real node runs a camera on vtest.avi through its real worker processes. What each
process has loaded is read from the kernel (`/proc/<pid>/maps`: the shared objects it has
mapped), so the check does not depend on what the node says about itself; the workers are
checked the same way, to show the check finds these libraries where they are loaded.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.demo.footage import vtest_path
from devkit.localbroker import LocalBroker
from hub.evidence import EvidenceStore
from tests.support.camera_node import indexed, recording_config
from tests.support.footprint import loaded
from tests.support.hub_clients import Hub, Listener
from tests.support.node import NODE_ID, NodeProcess, node_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

VIDEO_AND_MODEL = {"numpy", "cv2", "av", "litert"}


def worker_pid(node: NodeProcess, kind: str) -> int | None:
    found = re.findall(rf"camera street: {kind} worker started \(pid (\d+)\)", node.log())
    return int(found[-1]) if found else None


def camera_config(tmp_path: Path, broker: LocalBroker) -> Path:
    path = node_config(tmp_path, broker)
    cfg = yaml.safe_load(path.read_text())
    cfg["cameras"] = [{"name": "street", "url": str(vtest_path()), "loop": True}]
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_node_watching_the_street_leaves_video_and_model_libraries_to_its_workers(
    tmp_path: Path, broker: LocalBroker, start_node: Any,
) -> None:
    events = Listener(broker, f"poles/{NODE_ID}/event")
    node = start_node(camera_config(tmp_path, broker))
    assert node.proc is not None
    camera = wait_for(lambda: worker_pid(node, "camera"), timeout=30, what="camera worker")
    detector = wait_for(lambda: worker_pid(node, "detector"), timeout=30,
                        what="detection worker")
    wait_for(lambda: {"numpy", "cv2", "av"} <= loaded(camera), timeout=60,
             what="the camera worker decoding with PyAV and OpenCV")
    wait_for(lambda: {"numpy", "litert"} <= loaded(detector), timeout=60,
             what="the detection worker running the model")
    wait_for(lambda: events.payloads(), timeout=60, what="the first event at the hub")
    node.press()  # the alarm path runs too, while the camera is busy
    assert not loaded(node.proc.pid) & VIDEO_AND_MODEL
    events.close()


def test_a_restarted_node_reads_its_certificate_and_key_without_cryptography(
    tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
) -> None:
    config = camera_config(tmp_path, broker)
    first = start_node(config)
    wait_for(lambda: "evidence key" in first.log(), what="the evidence key made")
    first.stop()
    again = start_node(config)
    assert again.proc is not None
    wait_for(lambda: again.log().count("evidence key") == 2, what="the key named again")
    since = len(telemetry.payloads())
    wait_for(lambda: any(p["certificate"] and p["certificate"]["subject"] == NODE_ID
                         for p in telemetry.payloads()[since:]),
             what="a heartbeat from the restarted node with its certificate")
    assert not loaded(again.proc.pid) & (VIDEO_AND_MODEL | {"cryptography"})


def test_a_clip_the_hub_asks_for_is_cut_in_a_child_and_the_node_stays_without_video(
    tmp_path: Path, broker: LocalBroker, start_node: Any,
) -> None:
    hub, store = Hub(broker), EvidenceStore(tmp_path / "evidence")
    store.start()
    node = start_node(recording_config(tmp_path, broker))
    assert node.proc is not None
    wait_for(lambda: len(indexed(tmp_path / "data" / "recordings")) >= 3, timeout=40,
             what="six seconds recorded")
    end = time.time() - 3
    iso = [datetime.fromtimestamp(t, UTC).isoformat() for t in (time.time(), end - 3, end)]
    hub.send(json.dumps({"v": 1, "id": "req-1", "issued": iso[0], "camera": "street",
                         "start": iso[1], "end": iso[2],
                         "upload_url": store.url("req-1.mp4")}).encode(),
             response_topic=f"poles/{NODE_ID}/response/desk-1")
    wait_for(lambda: [a["status"] for a in hub.answers("req-1")] == ["accepted", "done"],
             timeout=60, what="the clip exported, signed and uploaded")
    assert not loaded(node.proc.pid) & VIDEO_AND_MODEL
    hub.close()
    store.stop()
