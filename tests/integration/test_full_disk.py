"""A full data partition changes nothing the citizen or the hub sees.

A real node runs with its data partition on a real 4 MB tmpfs. During a broker outage
(heartbeats are stored meanwhile) the test fills the partition with a ballast file (what a
runaway log does on a pole) and presses the call button; the broker comes back and the hub
acknowledges some calls; the node is stopped cleanly and started on the full card and more
calls are made; the space is freed; the node is stopped, the card filled again and the node
started on it, and more calls are made. The hub must get every call, no sequence number may
carry two different alerts (the hub dedupes by id and counts gaps by seq), no heartbeat may
arrive twice nor more than one per interval, and the node must stay up throughout.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devkit.localbroker import LocalBroker
from hub.client import HubConsole
from hub.state import AlertRecord
from provisioning.pki import HUB
from tests.support import disks
from tests.support.node import NODE_ID, NodeProcess, node_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

HEARTBEAT_S = 1.0  # the shortest the config allows


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Path]:
    """The node's data partition: a real 4 MB filesystem."""
    with disks.tmpfs(tmp_path / "data", "4m") as mount:
        yield mount


def fill(card: Path) -> Path:
    """Fill the partition to the last byte with a ballast file; returns the file."""
    ballast = card / "ballast.bin"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (64 * 1024, 4096, 1):  # big pieces, then whatever is left
            try:
                while os.write(fd, bytes(size)):
                    pass
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return ballast


class Running:
    """How long the node ran: heartbeats may not outnumber its intervals."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.runs = 0
        self._since: float | None = None

    def start(self) -> None:
        self._since = time.monotonic()
        self.runs += 1

    def stop(self) -> None:
        if self._since is not None:
            self.seconds += time.monotonic() - self._since
            self._since = None


def calls(hub: HubConsole) -> list[AlertRecord]:
    return sorted((a for a in hub.state.alerts() if a.kind == "call"), key=lambda a: a.seq)


def twins(hub: HubConsole) -> dict[int, set[str]]:
    """Sequence numbers the hub got on more than one alert."""
    ids: dict[int, set[str]] = {}
    for a in hub.state.alerts():
        ids.setdefault(a.seq, set()).add(a.alert_id)
    return {seq: got for seq, got in ids.items() if len(got) > 1}


def press(node: NodeProcess, times: int) -> None:
    for _ in range(times):
        node.press()
        time.sleep(0.3)  # well past the debounce: each press is its own call


class Beats:
    """Every heartbeat the hub's side gets, copies included: its session outlives a broker
    restart, so none is missed while it reconnects (a copy would go unseen)."""

    def __init__(self, broker: LocalBroker) -> None:
        self.got: list[bytes] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = broker.client(HUB, client_id="test-beats")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"poles/{NODE_ID}/telemetry", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.got.append(bytes(msg.payload))

    def counts(self) -> tuple[int, int]:
        """(heartbeats received, distinct ones)."""
        with self._lock:
            return len(self.got), len(set(self.got))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_full_card_loses_no_call_reuses_no_seq_and_sends_no_heartbeat_storm(
        tmp_path: Path, broker: LocalBroker, card: Path) -> None:
    beats = Beats(broker)
    hub = HubConsole(broker.host, broker.port, auto_ack=False, operator="test-dispatch",
                     client_id="test-hub", tls=broker.hub_tls)
    hub.start()
    assert hub.wait_ready(10)
    node = NodeProcess(node_config(tmp_path, broker, heartbeat_s=HEARTBEAT_S, ack_retry_s=2))
    ran = Running()
    pressed = 0

    def press_and_wait(times: int, what: str, timeout: float = 30) -> None:
        nonlocal pressed
        press(node, times)
        pressed += times
        wait_for(lambda: len(calls(hub)) == pressed, timeout=timeout, what=what)

    def start() -> None:
        node.start()
        ran.start()
        wait_for(lambda: any(n.node_id == NODE_ID and n.state == "online"
                             for n in hub.state.nodes()), what="the node online")

    def stop() -> None:
        assert node.proc is not None and node.proc.poll() is None, node.log()[-3000:]
        assert node.stop() == 0, node.log()[-3000:]
        ran.stop()

    try:
        start()
        wait_for(lambda: beats.counts()[0] >= 2, timeout=30, what="heartbeats flowing")
        press_and_wait(1, "a call with room on the card")

        # An outage stores heartbeats; the card fills meanwhile; citizens press.
        broker.stop()
        time.sleep(3 * HEARTBEAT_S)
        ballast = fill(card)
        press(node, 3)
        pressed += 3
        time.sleep(HEARTBEAT_S)
        before = beats.counts()[0]
        t0 = time.monotonic()
        broker.start()
        wait_for(lambda: len(calls(hub)) == pressed, what="the calls raised on a full card")
        for a in calls(hub)[:2]:  # dispatch takes the first two
            hub.ack(a.alert_id)
        press_and_wait(2, "calls on a full card with the broker back")
        time.sleep(3 * HEARTBEAT_S)
        sent = beats.counts()[0] - before
        print(f"\nfull card, broker back: {sent} heartbeats in "
              f"{(time.monotonic() - t0) / HEARTBEAT_S:.1f} intervals")

        # A clean stop while the card is full, and a start on it.
        stop()
        start()
        press_and_wait(2, "calls after a restart on the full card")
        print(f"after a restart on the full card: seqs on two alerts {twins(hub)}")

        # Room again: what waited is written; then a clean stop, and a start on a card that
        # was filled again meanwhile.
        ballast.unlink()
        press_and_wait(1, "a call once there is room")
        time.sleep(2 * HEARTBEAT_S)
        stop()
        fill(card)
        start()
        press_and_wait(3, "calls after a start on a card filled again")
        for a in calls(hub)[-2:]:
            hub.ack(a.alert_id)
        time.sleep(3 * HEARTBEAT_S)
        stop()
    finally:
        node.stop()
        hub.stop()
        beats.close()

    total, distinct = beats.counts()
    intervals = ran.seconds / HEARTBEAT_S
    reused = twins(hub)
    print(f"heartbeats: {total} received, {distinct} distinct, over {intervals:.0f} intervals "
          f"in {ran.runs} runs; seqs on two alerts: {reused}; "
          f"calls: {[a.seq for a in calls(hub)]}")
    assert len(calls(hub)) == pressed, "every call reaches the hub"
    assert not reused, f"sequence numbers used by two alerts: {reused}"
    assert total <= intervals + ran.runs, \
        f"{total} heartbeats over {intervals:.0f} intervals: more than one per interval"
    assert total == distinct, f"{total - distinct} heartbeats were sent again"
