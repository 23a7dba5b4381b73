"""Shared fixtures: a real Mosquitto per test, a contract tap that validates every message
the node publishes against docs/mqtt-api.asyncapi.yaml, and node processes with simulated
pins that tests press through the pin simulator socket. What they are built on is in
tests/support/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from devkit.localbroker import LocalBroker
from tests.support.contract import ContractTap
from tests.support.hub_clients import Listener
from tests.support.node import NODE_ID, NodeProcess, node_config

# Tests never assert a wall-clock time: hypothesis' default 200 ms deadline per example
# fails on a busy shared machine without saying anything about the code.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """The hub's reference broker (hub/broker/): mutual TLS and the per-pole ACL."""
    b = LocalBroker(tmp_path / "broker", secure=True)
    b.start()
    tap = ContractTap(b)
    b.tap = tap  # type: ignore[attr-defined]
    yield b
    tap.close()
    b.close()
    assert not tap.errors, "messages the AsyncAPI document does not allow:\n" + (
        "\n".join(tap.errors[:10])
    )


@pytest.fixture
def telemetry(broker: LocalBroker) -> Iterator[Listener]:
    """Every heartbeat the test node publishes."""
    listener = Listener(broker, f"poles/{NODE_ID}/telemetry")
    yield listener
    listener.close()


@pytest.fixture
def systemd_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodes started by the test run as under systemd with WatchdogSec=2: they check their
    health, a config change on trial and the installer's files every second (half the
    watchdog period), instead of every 5 s as without a watchdog."""
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")


@pytest.fixture
def start_node(tmp_path: Path, broker: LocalBroker) -> Iterator[Callable[..., NodeProcess]]:
    nodes: list[NodeProcess] = []

    def start(config: Path | None = None, env: dict[str, str] | None = None,
              **timings: float) -> NodeProcess:
        # node_id and certificate as node_config's defaults: `timings` can only be timings
        config = config or node_config(tmp_path, broker, node_id=NODE_ID, certificate=None,
                                       **timings)
        node = NodeProcess(config, env).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()
