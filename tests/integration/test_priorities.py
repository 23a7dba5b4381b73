"""After an outage the node's backlog reaches the hub by priority: the alerts raised during
the outage first, then the vision events, then the heartbeats, each class in order and
none missing. A real node with a camera on sample video, a real broker stopped and
started again, and a hub client whose session the broker keeps across the restart."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devkit.demo.footage import vtest_path
from devkit.localbroker import LocalBroker
from provisioning.pki import HUB
from tests.support.camera_node import vision_config
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


class Arrivals:
    """Every node message in the order the hub got it; the session outlives a restart."""

    def __init__(self, broker: LocalBroker) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = broker.client(HUB, client_id="hub-priorities")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"poles/{NODE_ID}/+", qos=1)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        # paho annotates whole seconds but sleeps for any float: a tenth, to be back at once
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            self.got.append((leaf, json.loads(msg.payload)))

    def of(self, leaf: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for lf, p in self.got if lf == leaf]

    def order(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_after_an_outage_alerts_go_first_then_events_then_telemetry_none_lost(
        tmp_path: Path, broker: LocalBroker, start_node: Any) -> None:
    hub = Arrivals(broker)
    try:
        node: NodeProcess = start_node(vision_config(tmp_path, broker, str(vtest_path())))
        wait_for(lambda: len(hub.of("event")) >= 3 and len(hub.of("telemetry")) >= 2,
                 timeout=60, what="events and heartbeats flowing")
        broker.stop()
        down_at = time.time()
        for _ in range(3):
            node.press()
            time.sleep(1.0)
        time.sleep(4.0)  # events and heartbeats pile up meanwhile
        up_at = time.time()
        broker.start()

        def drained() -> bool:
            beats = hub.of("telemetry")
            last = beats[-1]["outbox"] if beats else None
            return bool(last and last["events"] == 0 and last["telemetry"] == 0
                        and last["pending"] == 0 and unix(beats[-1]) > up_at + 2)

        wait_for(drained, timeout=90, what="the backlog sent and a heartbeat saying so")
    finally:
        hub.close()
    arrived = hub.order()

    def made_in_outage(p: dict[str, Any]) -> bool:
        return down_at + 1.5 < unix(p) < up_at - 0.5

    first_seen: dict[tuple[str, Any], int] = {}
    for i, (leaf, p) in enumerate(arrived):
        key = (leaf, p.get("id") if leaf == "alert" else p.get("seq", p.get("time")))
        first_seen.setdefault(key, i)
    alerts = [(i, p) for i, (lf, p) in enumerate(arrived)
              if lf == "alert" and first_seen[("alert", p["id"])] == i]
    events = [(i, p) for i, (lf, p) in enumerate(arrived)
              if lf == "event" and first_seen[("event", p["seq"])] == i]
    beats = [(i, p) for i, (lf, p) in enumerate(arrived)
             if lf == "telemetry" and first_seen[("telemetry", p["time"])] == i]

    # none lost, none twice after dedupe, each class in order
    assert [p["seq"] for _, p in alerts] == [1, 2, 3]
    seqs = [p["seq"] for _, p in events]
    assert seqs == list(range(1, len(seqs) + 1)), "event sequence numbers missing or reordered"
    times = [unix(p) for _, p in beats]
    assert times == sorted(times)

    # by priority: what was stored during the outage left in class order
    last_alert = max(i for i, _ in alerts)
    outage_events = [i for i, p in events if made_in_outage(p)]
    outage_beats = [i for i, p in beats if made_in_outage(p)]
    assert outage_events and outage_beats, "nothing was made during the outage to test with"
    assert min(outage_events) > last_alert, "an event overtook an alert"
    assert min(outage_beats) > max(outage_events), "a heartbeat overtook an event"
    assert node.proc is not None and node.proc.poll() is None


def unix(payload: dict[str, Any]) -> float:
    return datetime.fromisoformat(payload["time"]).timestamp()
