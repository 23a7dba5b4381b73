"""paho numbers messages 1..65535 and wraps; the uplink makes it skip numbers still in flight,
so that under a flood of QoS 1 answers no new message can take an alert's number."""

from __future__ import annotations

from edge.config.model import HubSection
from edge.uplink.client import Uplink


def make_uplink() -> Uplink:
    return Uplink(HubSection(host="127.0.0.1", port=1), "test-0001", status_topic="s",
                  online=lambda: b"on", offline=lambda _why: b"off", subscriptions={})


def test_after_a_wrap_the_numbers_of_messages_in_flight_are_skipped() -> None:
    up = make_uplink()
    for i in range(3):  # not connected: paho keeps them, numbered 1, 2, 3, until it can send
        up.publish(f"poles/test-0001/alert/{i}", b"{}", qos=1)
    held = sorted(up._client._out_messages)
    assert held == [1, 2, 3]
    up._client._last_mid = 65534
    up.publish("poles/test-0001/response", b"{}", qos=1)
    up.publish("poles/test-0001/response", b"{}", qos=1)
    numbers = sorted(up._client._out_messages)
    assert numbers == [1, 2, 3, 4, 65535]  # wrapped past the three still waiting
    assert all(up._client._out_messages[m].topic.startswith("poles/test-0001/alert")
               for m in held)  # none of them overwritten
