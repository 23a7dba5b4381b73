"""A PUBACK lost on a live link (a broken middlebox; a correct broker never loses one) must
not hold the node's telemetry back for good: the node notices the alert's PUBACK is overdue,
makes the link again, and sends the alert again; events and telemetry follow."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from devkit.localbroker import LocalBroker
from tests.support.faultproxy import FaultProxy
from tests.support.hub_clients import Listener
from tests.support.node import NODE_ID, NodeProcess, node_config
from tests.support.waiting import wait_for


def test_a_lost_puback_forces_a_reconnect_and_telemetry_resumes(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "broker")  # plaintext: the proxy reads the MQTT packets
    broker.start()
    proxy = FaultProxy((broker.host, broker.port), mqtt_frames=True).start()
    config = node_config(tmp_path, broker)
    cfg = yaml.safe_load(config.read_text())
    cfg["hub"].update(host=proxy.host, port=proxy.port, keepalive_s=3)
    config.write_text(yaml.safe_dump(cfg))
    alerts = Listener(broker, f"poles/{NODE_ID}/alert")
    beats = Listener(broker, f"poles/{NODE_ID}/telemetry")
    node = NodeProcess(config).start()
    try:
        wait_for(lambda: len(beats.messages) >= 2, timeout=30, what="heartbeats flowing")
        proxy.drop_pubacks(1)
        node.press()
        wait_for(lambda: alerts.messages, timeout=15, what="the alert at the broker")
        wait_for(lambda: proxy.stats.dropped_pubacks == 1, what="its PUBACK lost")
        before = len(beats.messages)
        # Telemetry waits behind an alert until its PUBACK; with the PUBACK lost it waited
        # until the next reconnect, which a healthy link never makes. Now the node makes one.
        wait_for(lambda: len(beats.messages) >= before + 3, timeout=40,
                 what="telemetry flowing again after the lost PUBACK")
        assert "no PUBACK for" in node.log(), node.log()[-3000:]
        seqs = [json.loads(p)["seq"] for _, p in alerts.messages]
        assert set(seqs) == {1}, seqs  # the one alert; sent again, never a new one
        assert len(seqs) >= 2, "the alert was not sent again after the reconnect"
        assert node.proc is not None and node.proc.poll() is None
    finally:
        node.stop()
        alerts.close()
        beats.close()
        proxy.close()
        broker.close()
