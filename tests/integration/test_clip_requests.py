"""The hub asks a real node for footage over MQTT 5 and gets a signed clip by HTTP PUT.

A hub-side paho client sends `clip.request` commands with a response topic and correlation data;
the node records a real H.264 stream, exports, signs and uploads to a real HTTP server,
and the clip is verified offline with the node's public key.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from contract.evidence.keyfiles import PUBLIC_FILE
from contract.evidence.keys import load_public
from contract.evidence.manifest import verify
from devkit.localbroker import LocalBroker
from hub.evidence import EvidenceStore
from tests.support.camera_node import indexed, recording_config
from tests.support.hub_clients import Hub, iso
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow




def test_a_clip_request_is_exported_signed_uploaded_and_verifies_with_the_node_key(
        tmp_path: Path, broker: LocalBroker, start_node: Any, hub: Hub,
        store: EvidenceStore) -> None:
    node: NodeProcess = start_node(recording_config(tmp_path, broker))
    root = tmp_path / "data" / "recordings"
    wait_for(lambda: len(indexed(root)) >= 5, timeout=40, what="ten seconds recorded")
    end = time.time() - 3  # inside closed segments
    request = {"v": 1, "id": "req-1", "issued": iso(time.time()), "camera": "street",
               "start": iso(end - 5), "end": iso(end), "upload_url": store.url("req-1.mp4")}
    hub.send(json.dumps(request).encode(), response_topic=f"poles/{NODE_ID}/response/desk-7",
             correlation=b"corr-1")
    wait_for(lambda: any(a["status"] != "accepted" for a in hub.answers("req-1")), timeout=60,
             what="the clip request settled")
    topics = {t for t, r, _ in hub.responses if r["id"] == "req-1"}
    assert topics == {f"poles/{NODE_ID}/response/desk-7"}, "answered on the asked topic"
    assert all(c == b"corr-1" for _, r, c in hub.responses if r["id"] == "req-1")
    statuses = [a["status"] for a in hub.answers("req-1")]
    assert statuses == ["accepted", "done"], hub.answers("req-1")
    result = hub.answers("req-1")[-1]["clip"]
    clip = store.path("req-1.mp4")
    assert clip.stat().st_size == result["bytes"]
    key = load_public(tmp_path / "data" / "identity" / PUBLIC_FILE)
    verdict = verify(clip, result["manifest"], key)
    assert verdict.ok, verdict.problem
    covered = result["manifest"]["covered"]
    assert covered["start_unix"] <= end - 5 < covered["start_unix"] + 2.1  # one GOP (2 s)
    assert end - 0.2 <= covered["end_unix"] <= end + 0.11  # its last frame starts before end
    # The segments behind the clip are pinned for as long as an alert's.
    assert "clip req-1 (camera street) delivered" in node.log()


def test_bad_commands_are_rejected_with_reasons_and_the_node_keeps_working(
        tmp_path: Path, broker: LocalBroker, start_node: Any, hub: Hub) -> None:
    node: NodeProcess = start_node(recording_config(tmp_path, broker))
    broker.tap.allow_invalid(rf"poles/{NODE_ID}/cmd/.*")  # type: ignore[attr-defined]
    probes = iter(range(1000))

    def subscribed() -> bool:  # a command sent before the node subscribed reaches no one
        hub.send(json.dumps({"v": 1, "id": f"r-probe-{next(probes)}"}).encode(), name="ping")
        return any(r["id"].startswith("r-probe") for _, r, _ in hub.responses)

    wait_for(subscribed, what="the node listening for commands")
    now = time.time()
    good = {"v": 1, "issued": iso(now), "camera": "street", "start": iso(now - 10),
            "end": iso(now), "upload_url": "http://127.0.0.1:9/x.mp4"}
    cases: list[tuple[str, bytes, str]] = [
        ("", b"\xff\xfe not json", "not JSON"),
        ("", b"[1, 2]", "JSON object"),
        ("r-cam", json.dumps({**good, "id": "r-cam", "camera": "gate"}).encode(),
         "no camera 'gate'"),
        ("r-win", json.dumps({**good, "id": "r-win", "end": iso(now - 20)}).encode(),
         "end must be after start"),
        ("r-url", json.dumps({**good, "id": "r-url", "upload_url": "ftp://x/y"}).encode(),
         "upload_url"),
    ]
    for _, payload, _ in cases:
        hub.send(payload)
    hub.send(json.dumps({**good, "id": "r-cmd"}).encode(), name="selfdestruct")
    cases.append(("r-cmd", b"", "unknown command"))
    for cid, _, why in cases:
        if not cid:
            continue
        wait_for(lambda cid=cid: hub.answers(cid), what=f"an answer to {cid}")  # type: ignore[misc]
        (answer,) = hub.answers(cid)
        assert answer["status"] == "rejected" and why in answer["error"], answer
    wait_for(lambda: len([r for _, r, _ in hub.responses if r["id"] == ""]) == 2,
             what="the answers to garbage (no id to echo)")
    nameless = sorted(r["error"] for _, r, _ in hub.responses if r["id"] == "")
    assert "JSON object" in nameless[0] and "not JSON" in nameless[1]
    # An upload nobody takes fails with a reason, after the accepted answer.
    hub.send(json.dumps({**good, "id": "r-down"}).encode())
    wait_for(lambda: any(a["status"] == "failed" for a in hub.answers("r-down")), timeout=90,
             what="the failed upload reported")
    assert hub.answers("r-down")[-1]["error"]
    alerts_before = node.log().count("alert ")
    node.press()
    wait_for(lambda: node.log().count("alert ") > alerts_before, what="a call after the commands")


def test_a_window_reaching_past_now_is_exported_once_its_end_is_recorded(
        tmp_path: Path, broker: LocalBroker, start_node: Any, hub: Hub,
        store: EvidenceStore) -> None:
    start_node(recording_config(tmp_path, broker))
    root = tmp_path / "data" / "recordings"
    wait_for(lambda: len(indexed(root)) >= 2, timeout=40, what="footage on disk")
    now = time.time()  # an alert's after-window: the end is still to come
    request = {"v": 1, "id": "req-after", "issued": iso(now), "camera": "street",
               "start": iso(now - 2), "end": iso(now + 4),
               "upload_url": store.url("req-after.mp4")}
    hub.send(json.dumps(request).encode())
    wait_for(lambda: any(a["status"] != "accepted" for a in hub.answers("req-after")),
             timeout=60, what="the clip request settled")
    done = hub.answers("req-after")[-1]
    assert done["status"] == "done", done
    manifest = done["clip"]["manifest"]
    assert manifest["gaps"] == [] and manifest["covered"]["end_unix"] >= now + 4 - 0.2
