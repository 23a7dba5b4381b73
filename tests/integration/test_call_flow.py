"""A citizen's call, end to end: real node process, real Mosquitto, the real hub console.

Only the pins are simulated (gpiozero MockFactory, worked through the pin simulator).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contract.ids import uuid7
from contract.payloads import Ack
from contract.topics import NodeTopics
from devkit.localbroker import LocalBroker
from hub.client import HubConsole
from hub.state import AlertRecord
from provisioning.pki import HUB
from tests.support.hub_clients import Listener
from tests.support.node import BUTTON, NODE_ID, TAMPER, NodeProcess, node_config
from tests.support.waiting import wait_for

TOPICS = NodeTopics(NODE_ID)


@pytest.fixture
def start_hub(broker: LocalBroker) -> Iterator[Callable[..., HubConsole]]:
    hubs: list[HubConsole] = []

    def start(auto_ack: bool = True) -> HubConsole:
        hub = HubConsole(broker.host, broker.port, auto_ack=auto_ack, operator="test-dispatch",
                         client_id=f"test-hub-{len(hubs)}", tls=broker.hub_tls)
        hub.start()
        assert hub.wait_ready(10)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()



def online(hub: HubConsole) -> bool:
    return any(n.node_id == NODE_ID and n.state == "online" for n in hub.state.nodes())


def alerts(hub: HubConsole) -> list[AlertRecord]:
    return sorted(hub.state.alerts(), key=lambda a: a.seq)


def led_samples(node: NodeProcess, seconds: float, every: float = 0.05) -> list[int]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(node.led())
        time.sleep(every)
    return out


def outbox_rows(data_dir: Path) -> list[tuple[int, str, float | None, float | None]]:
    db = sqlite3.connect(f"file:{data_dir / 'outbox.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT seq, id, delivered_at, acked_at FROM alerts ORDER BY seq").fetchall()
    finally:
        db.close()


def counters(telemetry: Listener) -> dict[str, int]:
    beats = telemetry.payloads()
    return beats[-1]["counters"] if beats else {}


def test_a_press_reaches_the_hub_and_the_led_goes_steady_after_the_ack(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess],
) -> None:
    hub = start_hub(auto_ack=False)
    node = start_node()
    wait_for(lambda: online(hub), what="the node's online status")
    assert node.led() == 0

    node.press()
    [alert] = wait_for(lambda: alerts(hub), what="the alert at the hub")
    assert (alert.node, alert.seq, alert.kind, alert.source) == (NODE_ID, 1, "call", "call_button")
    assert alert.site == "Test pole, Kozyatyn"
    blinking = led_samples(node, 1.2)
    assert 0 in blinking and 1 in blinking, f"LED should blink while pending: {blinking}"

    assert hub.ack(alert.alert_id)
    wait_for(lambda: all(led_samples(node, 0.6)), what="a steady LED after the ack")
    wait_for(lambda: not any(led_samples(node, 0.6)), timeout=10,
             what="the LED going off after ack_display_s")
    wait_for(lambda: outbox_rows(Path(node.cfg["data_dir"]))[0][3] is not None,
             what="the ack recorded in the node's outbox")
    assert hub.state.summary()["duplicates"] == 0


def test_presses_during_a_broker_outage_all_arrive_in_order_after_it_returns(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess],
) -> None:
    hub = start_hub()
    node = start_node()
    wait_for(lambda: online(hub), what="the node's online status")
    broker.stop()
    for _ in range(5):
        node.press()
        time.sleep(0.1)
    rows = wait_for(lambda: len(outbox_rows(Path(node.cfg["data_dir"]))) == 5
                    and outbox_rows(Path(node.cfg["data_dir"])), what="5 alerts in the outbox")
    assert all(delivered is None for _, _, delivered, _ in rows), "delivered with no broker?"
    samples = led_samples(node, 2.5)
    assert 0 in samples and 1 in samples, "the LED must show the no-link pattern, not go dark"

    broker.start()
    wait_for(lambda: len(alerts(hub)) == 5 and all(a.acked for a in alerts(hub)), timeout=30,
             what="all 5 alerts delivered and acknowledged after the outage")
    assert [a.seq for a in alerts(hub)] == [1, 2, 3, 4, 5]
    assert [a.alert_id for a in alerts(hub)] == [row[1] for row in rows]
    arrival = sorted(hub.state.alerts(), key=lambda a: a.received_at)
    assert [a.seq for a in arrival] == [1, 2, 3, 4, 5], "must arrive in the order raised"
    assert hub.state.summary()["seq_missing"] == 0


@pytest.mark.usefixtures("systemd_watchdog")  # health checked every second meanwhile
def test_a_long_broker_outage_does_not_make_the_node_unhealthy(
    tmp_path: Path, broker: LocalBroker, start_node: Callable[..., NodeProcess],
) -> None:
    # Reconnect waits longer than the health check's stall limit (5 s): waiting to reconnect
    # is the uplink doing its job, and systemd must not restart a node for a dead network.
    config = node_config(tmp_path, broker)
    cfg = yaml.safe_load(config.read_text())
    cfg["hub"].update(reconnect_min_s=6, reconnect_max_s=12)
    config.write_text(yaml.safe_dump(cfg))
    node = start_node(config)
    wait_for(lambda: "connected to hub" in node.log(), what="the node connected")
    broker.stop()
    wait_for(lambda: node.log().count("unreachable") >= 1, timeout=20,
             what="the node retrying the hub")
    # The wait after a failed retry is 6 to 12 s (half to all of 12 s), longer than the stall
    # limit, whenever the broker comes back: the node sees all of it.
    broker.start()
    wait_for(lambda: node.log().count("connected to hub") >= 2, timeout=30,
             what="the node back on the hub")
    assert "unhealthy" not in node.log()
    node.press()
    wait_for(lambda: "alert " in node.log(), what="a call after the outage")


def test_kill_9_between_the_outbox_write_and_the_puback_delivers_once_after_restart(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess],
) -> None:
    hub = start_hub()
    node = start_node()
    wait_for(lambda: online(hub), what="the node's online status")
    data = Path(node.cfg["data_dir"])

    broker.freeze()  # the broker takes the bytes but answers nothing: no PUBACK can come
    try:
        node.press()
        [(seq, alert_id, delivered, _)] = wait_for(lambda: outbox_rows(data),
                                                    what="the alert on disk")
        assert delivered is None
        time.sleep(0.3)  # the publish is on the wire, unanswered
        node.kill9()
    finally:
        broker.thaw()
    # The frozen broker may still deliver the copy it had; the restarted node sends another.
    restarted = start_node(config=node.config)
    wait_for(lambda: any(a.alert_id == alert_id and a.acked for a in alerts(hub)), timeout=30,
             what="the alert at the hub after the node's restart")
    summary = hub.state.summary()
    assert summary["alerts_unique"] == 1, "the hub must see the alert once after dedupe"
    assert [a.seq for a in alerts(hub)] == [seq] == [1]
    wait_for(lambda: outbox_rows(data)[0][2] is not None and outbox_rows(data)[0][3] is not None,
             what="delivery and ack recorded after the restart")
    restarted.press()
    wait_for(lambda: len(alerts(hub)) == 2, what="the next press")
    assert [a.seq for a in alerts(hub)] == [1, 2], "sequence numbers continue after kill -9"


def test_garbage_on_the_nodes_topics_is_logged_counted_and_harmless(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    hub = start_hub()
    node = start_node()
    wait_for(lambda: online(hub), what="the node's online status")
    broker.tap.allow_invalid(r"poles/test-0001/(ack|cmd/.*)")  # type: ignore[attr-defined]
    junk = broker.client(HUB)  # only the hub may write a pole's ack and commands
    junk.connect(broker.host, broker.port)
    junk.loop_start()
    malformed = [
        b"", b"\xff\xfe\x00garbage", b"{", b"[]", b"{}", b'{"alert_id": "nope"}',
        json.dumps({"alert_id": uuid7(), "time": "yesterday"}).encode(),
        json.dumps({"alert_id": uuid7(), "time": "2026-11-21T12:00:00Z", "x": 1}).encode(),
        # as big as the hub's broker lets through (max_packet_size 65536)
        b"{" * 60_000, b'{"a":' * 5000, b"0" * 60_000,
    ]
    for payload in malformed:
        junk.publish(TOPICS.ack, payload, qos=1).wait_for_publish(5)
    unknown = Ack(alert_id=uuid7(), by="someone", time="2026-11-21T12:00:00Z")  # type: ignore[arg-type]
    junk.publish(TOPICS.ack, unknown.to_bytes(), qos=1).wait_for_publish(5)
    for topic in (f"{TOPICS.ack}/extra", "poles/test-0001/cmd/reboot", "poles/test-0001"):
        junk.publish(topic, b"\x00\x01", qos=0)
    junk.disconnect()
    junk.loop_stop()

    wait_for(lambda: counters(telemetry).get("malformed_acks") == len(malformed), timeout=20,
             what=f"{len(malformed)} malformed acks counted in telemetry")
    wait_for(lambda: counters(telemetry).get("unknown_acks") == 1, what="the unknown ack counted")
    assert "malformed ack on poles/test-0001/ack ignored" in node.log()

    node.press()  # the node still does its job
    wait_for(lambda: len(alerts(hub)) == 1 and alerts(hub)[0].acked, what="the call after junk")
    assert node.proc is not None and node.proc.poll() is None


def test_a_cabinet_tamper_contact_raises_an_input_alert_and_its_restoral(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    hub = start_hub()
    node = start_node()
    wait_for(lambda: online(hub), what="the node's online status")

    def tamper() -> dict[str, Any]:
        beats = telemetry.payloads()
        return beats[-1]["inputs"]["tamper"] if beats else {}

    node.pins.drive(TAMPER, 0)  # the cabinet door switch opens (pulled-up input goes low)
    [alert] = wait_for(lambda: alerts(hub), what="the tamper alert")
    assert (alert.kind, alert.source) == ("input", "tamper")
    wait_for(lambda: tamper().get("active"), what="tamper active in telemetry")
    node.pins.drive(TAMPER, 1)
    wait_for(lambda: tamper().get("active") is False, what="tamper cleared")
    assert tamper()["changes"] == 2 and not tamper()["flapping"]
    tripped, restored = wait_for(lambda: len(alerts(hub)) == 2 and all(a.acked for a in
                                 alerts(hub)) and sorted(alerts(hub), key=lambda a: a.seq),
                                 what="both alerts acked")
    assert (restored.kind, restored.source) == ("input_restored", "tamper")
    assert tripped.seq < restored.seq
    # a tamper alert is not a citizen's call: the call LED stays dark
    assert not any(led_samples(node, 0.5))


def test_every_node_channel_was_checked_against_the_asyncapi_document(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess],
) -> None:
    hub = start_hub()
    node = start_node()
    node.press()
    wait_for(lambda: alerts(hub) and alerts(hub)[0].acked, what="an acknowledged call")
    tap = broker.tap  # type: ignore[attr-defined]
    wait_for(lambda: {"status", "alert", "telemetry"} <= set(tap.checked),
             what="status, alert and telemetry seen by the contract tap")
    online_statuses = tap.checked["status"]
    assert node.stop() == 0
    wait_for(lambda: tap.checked["status"] > online_statuses, what="the offline status checked")
    assert tap.errors == []


def test_running_with_a_bad_config_says_which_field_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "pole.yaml"
    bad.write_text("node: {id: x, site: s, location: {lat: 0, lon: 0}}\n"
                   "hub: {host: h, port: 70000}\n"
                   "gpio: {call_button: {pin: 17}, call_led: {pin: 27}}\n")
    run = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert "hub.port: must be 1..65535, got 70000" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_call_raised_while_the_outbox_cannot_be_written_still_reaches_the_hub(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    hub = start_hub()
    node = start_node()
    wait_for(lambda: online(hub), what="the node's online status")
    data = Path(node.cfg["data_dir"])
    lock = sqlite3.connect(data / "outbox.sqlite", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # the card refuses writes (stalled, full, read-only)
    try:
        node.press()
        [alert] = wait_for(lambda: alerts(hub), what="the call, sent from memory")
        wait_for(lambda: alerts(hub)[0].acked, what="the hub's ack")
        wait_for(lambda: all(led_samples(node, 0.6)), what="a steady LED after the ack")
        assert "not on disk, sending from memory" in node.log()
        assert outbox_rows(data) == []
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    rows = wait_for(lambda: outbox_rows(data), what="the alert written once the disk allows")
    [(seq, alert_id, delivered, acked)] = rows
    assert (seq, alert_id) == (1, alert.alert_id)
    assert delivered is not None and acked is not None, "delivery and ack kept while unsaved"
    wait_for(lambda: counters(telemetry).get("outbox_errors", 0) >= 1,
             what="the outbox error counted in telemetry")
    node.press()
    wait_for(lambda: [a.seq for a in alerts(hub)] == [1, 2], what="the next call, seq 2")


def test_a_button_held_down_raises_one_stuck_alert_and_no_more_calls(
    broker: LocalBroker, start_hub: Callable[..., HubConsole],
    start_node: Callable[..., NodeProcess], telemetry: Listener,
) -> None:
    hub = start_hub()
    node = start_node(long_press_s=0.5, stuck_after_s=1.5)
    wait_for(lambda: online(hub), what="the node's online status")
    node.pins.drive(BUTTON, 0)  # pressed and held: jammed, or taped down
    wait_for(lambda: [a.kind for a in alerts(hub)] == ["call", "button_stuck"],
             what="the call, then the stuck alert")
    assert counters(telemetry).get("presses") == 1
    wait_for(lambda: counters(telemetry).get("long_presses") == 1, what="the long press counted")
    node.pins.drive(BUTTON, 1)
    wait_for(lambda: "call button released after" in node.log(), what="the release logged")
    assert [a.kind for a in alerts(hub)] == ["call", "button_stuck"]
