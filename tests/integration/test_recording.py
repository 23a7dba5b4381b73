"""Recording inside a real node: a real camera worker cuts real H.264 into segments on disk.

The camera is an H.264 file played at its own rate, as an IP camera would send it. The
camera worker is killed mid-write the way a power cut or the OOM killer would; the data
partition is a real tmpfs mounted read-only; the call button is pressed meanwhile.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from devkit.localbroker import LocalBroker
from tests.support import disks
from tests.support.camera_node import indexed, recording_config
from tests.support.hub_clients import Listener
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def recording_stats(telemetry: Listener) -> list[dict[str, Any]]:
    return [p["cameras"]["street"]["recording"] for p in telemetry.payloads()
            if p.get("cameras", {}).get("street", {}).get("recording")]



@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    """The data partition: a real 8 MB filesystem, to fill or make read-only."""
    with disks.tmpfs(tmp_path / "card", "8m") as mount:
        yield mount


def test_a_camera_worker_killed_mid_segment_leaves_a_consistent_index_of_playable_segments(
        tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener) -> None:
    node: NodeProcess = start_node(recording_config(tmp_path, broker))
    root = tmp_path / "data" / "recordings"
    wait_for(lambda: len(indexed(root)) >= 3, timeout=30, what="three segments recorded")
    pid = int(re.findall(r"camera street: camera worker started \(pid (\d+)\)", node.log())[-1])
    # Mid-segment: 2 s segments, and the last one closed a moment ago.
    before = len(indexed(root))
    wait_for(lambda: len(indexed(root)) > before, timeout=10, what="a segment closing")
    subprocess.run(["kill", "-9", str(pid)], check=True)
    wait_for(lambda: "segment(s) repaired" in node.log() or "cut short" in node.log(),
             timeout=30, what="the restarted worker repairing the torn segment")
    wait_for(lambda: len(indexed(root)) >= before + 3, timeout=30,
             what="recording going on after the restart")
    rows = indexed(root)
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.ts")}
    listed = {path for path, _, _ in rows}
    # The file being written now has no row yet; every row names a whole file.
    assert len(on_disk - listed) <= 1
    for path, size, sha in rows:
        data = (root / path).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, path
        with av.open(str(root / path)) as c:
            assert sum(1 for _ in c.decode(video=0)) > 0, f"{path} does not play"
    alerts = Listener(broker, f"poles/{NODE_ID}/alert")
    node.press()
    wait_for(lambda: len(alerts.payloads()) == 1, what="a call while recording")
    alerts.close()
    wait_for(lambda: any(r["state"] == "recording" and r["stored_segments"]
                         for r in recording_stats(telemetry)), what="recording telemetry")
    # The evidence key was made at the first start: it can be enrolled before any clip.
    assert (tmp_path / "data" / "identity" / "evidence-ed25519.pub.pem").exists()


def test_a_read_only_card_is_reported_in_telemetry_and_the_call_button_still_works(
        tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
        card: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(card)], check=True)
    node: NodeProcess = start_node(recording_config(tmp_path, broker, dir=str(card / "rec")))
    wait_for(lambda: any(r["state"] == "failed" for r in recording_stats(telemetry)),
             timeout=30, what="telemetry saying recording failed")
    failed = next(r for r in recording_stats(telemetry) if r["state"] == "failed")
    assert "Read-only file system" in failed["reason"]
    alerts = Listener(broker, f"poles/{NODE_ID}/alert")
    node.press()
    wait_for(lambda: len(alerts.payloads()) == 1, what="the call with a read-only card")
    alerts.close()
    assert "footage for alert" in node.log(), "the pin that could not be written is logged"


def test_a_full_card_is_reported_in_telemetry_and_recording_goes_on_when_space_returns(
        tmp_path: Path, broker: LocalBroker, start_node: Any, telemetry: Listener,
        card: Path) -> None:
    filler = card / "other-data.bin"
    filler.write_bytes(bytes(7_400_000))  # something else filled the partition
    node: NodeProcess = start_node(recording_config(tmp_path, broker, dir=str(card / "rec"),
                                                    min_free="200KB"))
    wait_for(lambda: any(r["state"] == "failed" for r in recording_stats(telemetry)),
             timeout=30, what="telemetry saying the card is full")
    failed = next(r for r in recording_stats(telemetry) if r["state"] == "failed")
    assert "free" in failed["reason"] or "No space" in failed["reason"]
    alerts = Listener(broker, f"poles/{NODE_ID}/alert")
    node.press()
    wait_for(lambda: len(alerts.payloads()) == 1, what="the call with a full card")
    alerts.close()
    filler.unlink()
    wait_for(lambda: len(indexed(card / "rec")) >= 2, timeout=40,
             what="recording again once there is room")
