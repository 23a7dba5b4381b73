"""`cmd/firmware.update` on a real node and the reference broker: the node queues the update
for the root installer, relays its progress and its refusals to the hub, and answers the
command once after the reboot with how the trial ended. The installer and the commit service
are tested in tests/firmware/; here only the files they write are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.localbroker import LocalBroker
from firmware import handoff
from firmware.handoff import Pending, Progress, Request, Result
from tests.support.hub_clients import REPLY, Desk, Listener
from tests.support.node import NodeProcess
from tests.support.waiting import wait_for

# the node's health tick runs config trials and reads the installer's files: each second
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("systemd_watchdog")]

URL = "https://updates.hub.example/safecity-edge-0.2.0-pi4.sfw?sig=secret"
SHA = "ab" * 32
MiB = 1 << 20


@pytest.fixture
def desk(broker: LocalBroker) -> Iterator[Desk]:
    d = Desk(broker)
    yield d
    d.close()


def folder(node: NodeProcess) -> Path:
    return Path(node.cfg["data_dir"]) / "firmware"


def update(desk: Desk, cid: str, correlation: bytes | None = None) -> dict[str, Any]:
    """Send firmware.update and return its first answer."""
    desk.send("firmware.update", {"url": URL, "sha256": SHA}, cid=cid, correlation=correlation)
    first: dict[str, Any] = wait_for(lambda: next(iter(desk.of(cid)), None),
                                     what=f"the first answer to {cid}")
    return first


def downloading(node: NodeProcess, cid: str, pct: int) -> None:
    """What the installer writes while it streams the bundle into slot B."""
    handoff.write(folder(node), handoff.PROGRESS, Progress(
        id=cid, stage="downloading", bytes=pct * MiB, total=100 * MiB, slot="B"))


def progress_of(desk: Desk, cid: str) -> list[float]:
    return [a["firmware"]["percent"] for a in desk.of(cid)
            if a["status"] == "accepted" and a["firmware"]["stage"] == "downloading"]


def test_an_update_is_queued_for_the_installer_and_a_second_one_is_refused_meanwhile(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    first = update(desk, "fw-1", correlation=b"\x01fw")
    assert first["status"] == "accepted" and first["firmware"]["stage"] == "queued", first
    request = handoff.read(folder(node), handoff.REQUEST, Request)
    assert request is not None and request.url == URL and request.sha256 == SHA
    assert request.reboot and request.reply.id == "fw-1" and request.reply.topic == REPLY
    assert bytes.fromhex(request.reply.correlation) == b"\x01fw"
    assert "sig=secret" not in node.log()  # a presigned URL's query stays out of the journal

    second = desk.final(desk.send("firmware.update", {"url": URL}, cid="fw-2"))
    assert second["status"] == "rejected" and "fw-1 is under way" in second["error"], second
    assert handoff.read(folder(node), handoff.REQUEST, Request) == request


def test_the_installers_progress_reaches_the_hub_in_answers_and_in_the_heartbeat(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk,
        telemetry: Listener) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    assert update(desk, "fw-p", correlation=b"prog")["status"] == "accepted"
    downloading(node, "fw-p", 10)
    wait_for(lambda: 10.0 in progress_of(desk, "fw-p"), what="the 10 % report")
    downloading(node, "fw-p", 50)
    wait_for(lambda: 50.0 in progress_of(desk, "fw-p"), what="the 50 % report")

    def beat_at(pct: float) -> dict[str, Any] | None:
        return next((b["firmware"] for b in reversed(telemetry.payloads())
                     if b["firmware"]["update"] and b["firmware"]["update"]["percent"] == pct),
                    None)

    beat = wait_for(lambda: beat_at(50.0), what="a heartbeat at 50 %")
    assert beat["update"]["stage"] == "downloading" and beat["update"]["slot"] == "B"
    assert beat["update"]["bytes"] == 50 * MiB and beat["update"]["total"] == 100 * MiB
    downloading(node, "fw-p", 52)  # the same 5 % step: no report of its own
    wait_for(lambda: beat_at(52.0), what="the node to have read 52 %")
    downloading(node, "fw-p", 60)
    wait_for(lambda: 60.0 in progress_of(desk, "fw-p"), what="the 60 % report")
    assert progress_of(desk, "fw-p") == [10.0, 50.0, 60.0]
    assert {c for _, a, c in desk.answers if a["id"] == "fw-p"} == {b"prog"}


def test_a_refused_bundle_is_answered_failed_with_the_reason_and_the_next_update_can_come(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    assert update(desk, "fw-bad")["status"] == "accepted"
    why = ("the signature of bundle 0.2.0 (build 1763730000) does not match its manifest: "
           "it was altered after signing; download it again from the release server")
    handoff.write(folder(node), handoff.PROGRESS, Progress(
        id="fw-bad", stage="refused", reason="bad_signature", error=why, slot="B"))
    answer = desk.final("fw-bad")
    assert answer["status"] == "failed" and answer["error"] == why, answer
    assert answer["firmware"]["stage"] == "refused"
    assert answer["firmware"]["reason"] == "bad_signature"
    assert not (folder(node) / handoff.REQUEST).exists()
    assert update(desk, "fw-good")["status"] == "accepted"


def test_a_rollback_found_after_the_reboot_is_answered_once_when_the_node_is_connected(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk,
        telemetry: Listener) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    assert update(desk, "fw-rb", correlation=b"trial")["status"] == "accepted"
    node.stop()
    # What the installer and the commit service leave behind: 0.2.0 written to slot B,
    # armed, rebooted into, not healthy in its trial; the loader went back to slot A.
    state = folder(node)
    request = handoff.read(state, handoff.REQUEST, Request)
    assert request is not None
    label = "0.2.0 (build 1763730000, g1234abc)"
    handoff.write(state, handoff.PROGRESS, Progress(
        id="fw-rb", stage="rebooting", bytes=100 * MiB, total=100 * MiB, version=label,
        slot="B"))
    handoff.write(state, handoff.PENDING, Pending(reply=request.reply, version=label, slot="B",
                                                  from_slot="A", from_version="0.1.0"))
    handoff.remove(state, handoff.REQUEST)
    error = (f"rolled back: {label} in slot B did not prove healthy in its trial boots; the "
             "boot loader went back to slot A (0.1.0)")
    handoff.write(state, handoff.RESULT, Result(
        reply=request.reply, status="failed", version="0.1.0", slot="A", error=error))
    handoff.remove(state, handoff.PENDING)

    node = start_node(node.config)
    answer = desk.final("fw-rb", timeout=60)
    assert answer["status"] == "failed" and answer["error"] == error, answer
    assert answer["firmware"] == {**answer["firmware"], "stage": "rolled_back", "slot": "A",
                                  "version": label}
    assert [c for _, a, c in desk.answers if a["id"] == "fw-rb"] == [b"trial", b"trial"]
    assert not (state / handoff.RESULT).exists()
    assert handoff.read(state, handoff.REPORTED, Result) is not None
    wait_for(lambda: any((b["firmware"]["update"] or {}).get("stage") == "rolled_back"
                         for b in telemetry.payloads()), what="the outcome in a heartbeat")

    node.stop()  # a restart does not answer it again
    start_node(node.config)
    desk.listening()
    desk.send("firmware.update", {"url": URL}, cid="fw-rb")
    wait_for(lambda: any(a["status"] == "duplicate" for a in desk.of("fw-rb")),
             what="the answer to the repeated id")
    statuses = [a["status"] for a in desk.of("fw-rb")]
    assert statuses == ["accepted", "failed", "duplicate"], statuses
    again = desk.of("fw-rb")[-1]
    assert again["previous"]["status"] == "failed"
    assert again["previous"]["firmware"]["stage"] == "rolled_back"
    assert json.loads((state / handoff.REPORTED).read_bytes())["reply"]["id"] == "fw-rb"
