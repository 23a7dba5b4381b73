"""The hub's side of the fleet benchmark: one consumer that reads every pole and acks alerts.

Like each of the hub's consumers (hub/), it holds a certificate of its own (hub.<role>: its
client id and its session on the hub's broker), keeps a persistent session (alerts
published while it is away are queued for it by the broker), validates every payload
against the contract models, drops duplicate alerts by id and acks every copy on
`poles/<node>/ack`. Alert latency is its receive time minus the alert's own `time`: the
poles and the hub share the host's clock.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from contract.payloads import Ack, Alert, Heartbeat, Status
from contract.topics import ROOT, NodeTopics, parse
from devkit.localbroker import LocalBroker
from provisioning.pki import HUB

SUBSCRIPTIONS = [f"{ROOT}/+/alert", f"{ROOT}/+/telemetry", f"{ROOT}/+/status"]


class FleetHub:
    def __init__(self, broker: LocalBroker) -> None:
        self.latency: dict[str, float] = {}  # alert id → seconds, first copy
        self.copies: Counter[str] = Counter()
        self.beats = 0
        self.online: set[str] = set()
        self.invalid: Counter[str] = Counter()
        self.connects = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        # a hub consumer's certificate on a secure broker, plain MQTT on a plaintext one
        self.client = broker.client(HUB, client_id="fleet-hub")
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, keepalive=10, clean_start=False,
                            properties=props)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the hub consumer could not subscribe; see {broker.log}")

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any,
                    _p: Any) -> None:
        if reason.is_failure:
            self.invalid[f"connect refused: {reason}"] += 1
            return
        self.connects += 1
        if not flags.session_present:  # a restored session keeps its subscriptions
            client.subscribe([(t, 1) for t in SUBSCRIPTIONS])
        self._ready.set()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.time()
        where = parse(msg.topic)
        if where is None:
            return
        leaf = where[1]
        try:
            if leaf == "alert":
                alert = Alert.model_validate_json(msg.payload)
                with self._lock:
                    self.copies[alert.id] += 1
                    self.latency.setdefault(alert.id, t - alert.time.timestamp())
                ack = Ack(alert_id=alert.id, by="fleet-hub", time=datetime.now(UTC))
                client.publish(NodeTopics(alert.node).ack, ack.to_bytes(), qos=1)
            elif leaf == "telemetry":
                Heartbeat.model_validate_json(msg.payload)
                self.beats += 1
            elif leaf == "status":
                status = Status.model_validate_json(msg.payload)
                with self._lock:
                    if status.state == "online":
                        self.online.add(status.node)
                    else:
                        self.online.discard(status.node)
        except ValidationError:
            self.invalid[leaf] += 1

    def received(self, ids: list[str]) -> tuple[list[float], int]:
        """Latencies (s) of those of `ids` that arrived, and their duplicate copies."""
        with self._lock:
            lat = [self.latency[i] for i in ids if i in self.latency]
            dups = sum(max(0, self.copies[i] - 1) for i in ids)
        return lat, dups

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
