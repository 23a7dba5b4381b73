"""The node's wall clock steps (NTP or GPS setting it after a cold boot) while an alert
waits for the hub's ack: the alert is sent again on its usual schedule; while a config
change is on trial: it is rolled back on its usual schedule. Only the node's
wall clock moves (tests/support/clockstep.py); the broker, the hub and every monotonic
clock carry on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devkit.localbroker import LocalBroker, free_port
from tests.support.clockstep import ClockStep
from tests.support.hub_clients import Desk, Listener
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

RETRY_S = 2.0


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0], ids=["back an hour", "ahead an hour"])
def test_an_unacknowledged_alert_is_sent_again_on_schedule_after_the_wall_clock_steps(
        tmp_path: Path, broker: LocalBroker, start_node: Callable[..., NodeProcess],
        step_s: float) -> None:
    clock = ClockStep(tmp_path)
    hub = Listener(broker, f"poles/{NODE_ID}/alert")  # it never acks
    try:
        node = start_node(env=clock.env(), ack_retry_s=RETRY_S)

        def copies() -> list[dict[str, Any]]:
            return [p for p in hub.payloads() if p["kind"] == "call"]

        node.press()
        first = wait_for(copies, what="the call at the hub")[0]
        clock.step(step_s)
        # Sent again after ack_retry_s, as with no step (a generous bound: it only limits a
        # failing test; before the fix, a step back held the re-send for the whole hour).
        again = wait_for(lambda: len(copies()) >= 2, timeout=10 * RETRY_S + 15,
                         what="the call sent again after the step")
        assert again
        assert {p["id"] for p in copies()} == {first["id"]}  # the same alert, not a new one
        assert {p["seq"] for p in copies()} == {first["seq"]}
    finally:
        hub.close()


@pytest.mark.usefixtures("systemd_watchdog")
def test_a_config_on_trial_is_rolled_back_on_schedule_after_the_wall_clock_steps_back(
        tmp_path: Path, broker: LocalBroker, start_node: Callable[..., NodeProcess]) -> None:
    clock = ClockStep(tmp_path)
    node = start_node(env=clock.env())
    desk = Desk(broker)
    try:
        desk.listening()
        original = node.config.read_text()
        cid = desk.send("config.set", {"set": {"hub.port": free_port()}, "trial_s": 10})
        wait_for(lambda: any(a["status"] == "accepted" for a in desk.of(cid)),
                 what="the change accepted")
        clock.step(-3600.0)  # while the node, cut off by its new config, waits out the trial
        # Rolled back after its 10 s (a generous bound that only limits a failing test;
        # timed on the wall clock, the trial would have run an hour longer).
        answer = desk.final(cid, timeout=90)
        assert answer["status"] == "failed" and "rolled back" in answer["error"], answer
        assert node.config.read_text() == original
    finally:
        desk.close()
