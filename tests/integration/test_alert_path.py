"""The way from the call button to the broker is short: a press, in the thread that saw the
GPIO edge, reaches the outbox and the publish through the alarm path alone. Measured on a
real node object (real outbox on disk, real uplink to a real broker), not read off the
source."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from devkit.localbroker import LocalBroker
from edge.config import load_config
from edge.node import Node
from tests.support.node import BUTTON, node_config
from tests.support.waiting import wait_for


def edge_modules_on_the_stack() -> set[str]:
    return {name for f in inspect.stack()
            if (name := str(f.frame.f_globals.get("__name__", ""))).startswith("edge.")}


def test_a_press_reaches_the_outbox_and_the_broker_through_at_most_four_modules_of_edge(
        tmp_path: Path, broker: LocalBroker) -> None:
    node = Node(load_config(node_config(tmp_path, broker)))
    crossed: set[str] = set()
    published: list[bytes] = []
    add, publish = node.outbox.add, node.uplink.publish

    def add_watched(*args: Any, **kwargs: Any) -> None:
        crossed.update(edge_modules_on_the_stack() | {add.__module__})
        add(*args, **kwargs)

    def publish_watched(topic: str, payload: bytes, **kwargs: Any) -> None:
        if topic == node.topics.alert:
            crossed.update(edge_modules_on_the_stack() | {publish.__module__})
            published.append(payload)
        publish(topic, payload, **kwargs)

    node.outbox.add = add_watched  # type: ignore[method-assign]
    node.uplink.publish = publish_watched  # type: ignore[method-assign]
    try:
        node.uplink.start()
        wait_for(lambda: node.uplink.connected, what="the uplink connected")
        assert node.pins is not None  # node_config's mock pin factory
        pin = node.pins.pin(BUTTON)
        pin.drive_low()  # MockFactory's pin: the button closes
        wait_for(lambda: published, what="the alert handed to the uplink")
        pin.drive_high()
    finally:
        node.shutdown()
    print("the alert path's modules of edge/:", ", ".join(sorted(crossed)))
    assert b'"kind":"call"' in published[0]
    assert "edge.node" not in crossed  # the button's callback reaches the alarm path directly
    assert {"edge.call.alarm", "edge.call.outbox", "edge.uplink.client"} <= crossed
    assert len(crossed) <= 4, crossed
