"""Hub commands to a real node over MQTT 5 on the reference broker: each runs once per id,
bad ones are refused with a reason, and a config change that leaves the node unhealthy is
rolled back by the node itself."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.localbroker import LocalBroker, free_port
from tests.support.hub_clients import REPLY, Desk, Listener
from tests.support.node import NODE_ID, NodeProcess, node_config
from tests.support.waiting import wait_for

# the node's health tick runs config trials and reads the installer's files: each second
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("systemd_watchdog")]

@pytest.fixture
def desk(broker: LocalBroker) -> Iterator[Desk]:
    d = Desk(broker)
    yield d
    d.close()


def config_with(tmp_path: Path, broker: LocalBroker, **sections: Any) -> Path:
    path = node_config(tmp_path, broker)
    data = yaml.safe_load(path.read_text())
    data.update(sections)
    path.write_text(yaml.safe_dump(data))
    return path


def test_selftest_answers_on_the_response_topic_with_its_correlation(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    start_node()
    desk.listening()
    cid = desk.send("selftest", {}, correlation=b"\x00corr\xff")
    answer = desk.final(cid)
    assert answer["status"] == "done" and answer["command"] == "selftest"
    checks = {c["name"]: c for c in answer["checks"]}
    assert checks["uplink"]["ok"] and checks["outbox"]["ok"] and checks["data_disk"]["ok"]
    assert checks["certificate"]["detail"].startswith(NODE_ID)
    assert [(t, c) for t, a, c in desk.answers if a["id"] == cid] == [(REPLY, b"\x00corr\xff")]


def test_a_command_runs_once_per_id_even_across_a_restart(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    marker = tmp_path / "rebooted"
    script = (f"import pathlib; p = pathlib.Path({str(marker)!r}); "
              "p.write_text(p.read_text() + 'x' if p.exists() else 'x')")
    config = config_with(tmp_path, broker, commands={"reboot_command": [sys.executable, "-c",
                                                                          script]})
    node: NodeProcess = start_node(config)
    desk.listening()
    cid = desk.send("reboot", {"delay_s": 0, "reason": "test"}, cid="reboot-1")
    assert desk.final(cid)["status"] == "done"
    assert [a["status"] for a in desk.of(cid)] == ["accepted", "done"]
    assert marker.read_text() == "x"
    desk.send("reboot", {"delay_s": 0}, cid="reboot-1")  # a retry, or a replay
    wait_for(lambda: len(desk.of(cid)) == 3, what="the answer to the repeated id")
    again = desk.of(cid)[-1]
    assert again["status"] == "duplicate" and again["previous"]["status"] == "done"
    node.stop()
    start_node(config)
    desk.listening()
    desk.send("reboot", {"delay_s": 0}, cid="reboot-1")
    wait_for(lambda: len(desk.of(cid)) == 4, what="the answer after the restart")
    assert desk.of(cid)[-1]["status"] == "duplicate"
    time.sleep(1.0)  # time for a wrongly repeated reboot to show
    assert marker.read_text() == "x", "the reboot command ran twice"


def test_a_failing_reboot_is_reported_failed_with_its_error(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    script = "import sys; sys.exit('Failed to reboot: access denied')"
    start_node(config_with(tmp_path, broker, commands={"reboot_command": [sys.executable, "-c",
                                                                            script]}))
    desk.listening()
    answer = desk.final(desk.send("reboot", {"delay_s": 0}))
    assert answer["status"] == "failed" and "access denied" in answer["error"]


def test_bad_commands_are_refused_with_reasons(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    broker.tap.allow_invalid(rf"poles/{NODE_ID}/cmd/.*")  # type: ignore[attr-defined]
    node: NodeProcess = start_node()
    desk.listening()
    original = node.config.read_text()
    cases = {
        desk.send("selftest", b"x" * 20_000, cid="big"): "at most 16384",
        desk.send("launch", {}): "unknown command 'launch'",
        desk.send("telemetry.interval", {"interval_s": 0.1}): "interval_s",
        desk.send("selftest", {"issued": "yesterday"}): "issued",
        desk.send("config.set", {"set": {"node.id": "test-0002"}}): "cannot be set remotely",
        desk.send("config.set", {"set": {"commands.reboot_command": ["sh"]}}):
            "cannot be set remotely",
        desk.send("config.set", {"set": {"timings.debounce_ms": -5}}): "debounce_ms",
        desk.send("config.set", {"set": {"timings.debounce_ms.x": 1}}): "not a section",
    }
    for cid, why in cases.items():
        answer = desk.final(cid) if cid != "big" else wait_for(
            lambda: next((a for _, a, _ in desk.answers if "16384" in a["error"]), None),
            what="the answer to the oversized command")
        assert answer["status"] == "rejected" and why in answer["error"], (cid, answer)
    assert node.config.read_text() == original, "a refused config.set touched the file"
    assert node.proc is not None and node.proc.poll() is None


def test_telemetry_interval_changes_the_heartbeat_period_for_a_while(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    answer = desk.final(desk.send("telemetry.interval", {"interval_s": 5, "for_s": 2}))
    assert answer["status"] == "done" and answer["interval_s"] == 5
    wait_for(lambda: "heartbeat back to every 1 s" in node.log(), timeout=15,
             what="the configured period back")
    assert "heartbeat every 5 s for 2 s" in node.log()


def test_config_set_is_applied_and_committed_once_the_node_is_healthy(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    pid = node.proc.pid  # type: ignore[union-attr]
    cid = desk.send("config.set", {"set": {"timings.ack_display_s": 7,
                                           "node.site": "Test pole, moved"}})
    answer = desk.final(cid, timeout=60)
    assert answer["status"] == "done", desk.of(cid)
    assert [a["status"] for a in desk.of(cid)] == ["accepted", "done"]
    data = yaml.safe_load(node.config.read_text())
    assert data["timings"]["ack_display_s"] == 7 and data["node"]["site"] == "Test pole, moved"
    assert node.config.with_name("node.yaml.last-good").exists()
    assert not node.config.with_name("node.yaml.trial.json").exists()
    assert node.proc.pid == pid and node.proc.poll() is None  # type: ignore[union-attr]
    assert "restarting: config change" in node.log()
    status = Listener(broker, f"poles/{NODE_ID}/status")
    try:
        wait_for(lambda: any(p["site"] == "Test pole, moved" for p in status.payloads()),
                 timeout=20, what="the new site in the retained status")
    finally:
        status.close()


def test_a_config_that_cuts_the_node_off_is_rolled_back_by_the_node(
        tmp_path: Path, broker: LocalBroker, start_node: Any, desk: Desk) -> None:
    node: NodeProcess = start_node()
    desk.listening()
    original = node.config.read_text()
    dead = free_port()  # nothing listens there: the node cannot reach its hub
    cid = desk.send("config.set", {"set": {"hub.port": dead}, "trial_s": 10},
                    correlation=b"trial")
    answer = desk.final(cid, timeout=90)
    assert answer["status"] == "failed", desk.of(cid)
    assert "rolled back" in answer["error"] and "not connected" in answer["error"]
    assert node.config.read_text() == original
    assert [c for _, a, c in desk.answers if a["id"] == cid] == [b"trial", b"trial"]
    assert not node.config.with_name("node.yaml.trial.json").exists()
    assert node.proc is not None and node.proc.poll() is None
