"""The uplink under network faults: every press reaches the hub, once after dedupe by id,
in the order raised, and every alert is acknowledged back through the same faults.

Real parts throughout: the hub's secure Mosquitto, real node processes, real sockets;
faults come from real network namespaces (tests/support/netns.py: a pulled link, random loss
with nftables), a TCP proxy (tests/support/faultproxy.py: latency, stall, half-open,
blackhole, reset), broker restarts and `kill -9`. Only the pins are simulated. The harness
(scenarios, the hub's and the pole's sides, judging) is in tests/support/faults.py.

Each scenario presses the call button before, during and after its fault, clears the
fault, waits (bounded) until the hub has every alert the node committed and the node has
every ack, stops the node and judges its outbox against what the hub saw:
- lost: alerts in outbox.sqlite the hub never received (must be 0);
- duplicates after dedupe by id: each seq carries one id, seqs run 1..N with N the
  alerts committed (raw re-deliveries are counted and allowed);
- order: by first arrival of each id, seqs increase; heartbeats' `time` and events'
  `seq` increase within their class.
One row per scenario is printed as a table when the module ends (`pytest -s` or `-rA`),
and written as JSON to $SAFECITY_FAULT_REPORT if set. `make soak` (tests/soak.py) runs
the same scenarios longer, with more kills and a random mix of faults.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import netns
from tests.support.fault_report import Row, judge, table, write_json
from tests.support.faults import Plan, run, settle, staged
from tests.support.waiting import wait_for

REPORT: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not REPORT:
        return
    text = ("\n\nuplink fault scenarios (sent = committed by the node, delivered = distinct "
            "ids at the hub)\n" + table(REPORT))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(text)  # past the capture: a table to read after any run, like a benchmark's
    write_json(REPORT)


@pytest.fixture
def namespaces() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)


def check(name: str, tmp_path: Path) -> None:
    row = run(name, tmp_path)
    REPORT.append(row)
    assert row.ok, f"{name}:\n" + "\n".join(row.problems)


# --- the tests ---

@pytest.mark.usefixtures("namespaces")
def test_presses_while_the_link_is_down_reach_the_hub_once_in_order_after_it_returns(
    tmp_path: Path,
) -> None:
    check("link down/up", tmp_path)


@pytest.mark.usefixtures("namespaces")
def test_presses_over_a_link_losing_30_percent_of_packets_all_arrive_once_in_order(
    tmp_path: Path,
) -> None:
    check("30% packet loss", tmp_path)


def test_presses_over_a_slow_link_arrive_once_in_order(tmp_path: Path) -> None:
    check("300 ms latency", tmp_path)


def test_a_link_stalled_past_the_keepalive_is_dropped_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    check("stall > keepalive", tmp_path)


def test_a_half_open_link_is_noticed_by_keepalive_and_nothing_is_lost(tmp_path: Path) -> None:
    check("half-open + blackhole", tmp_path)


def test_presses_around_broker_restarts_all_arrive_once_in_order(tmp_path: Path) -> None:
    check("broker restarts", tmp_path)


def test_connections_reset_under_the_node_lose_nothing(tmp_path: Path) -> None:
    check("connection resets", tmp_path)


def test_kill_9_at_random_moments_loses_no_committed_alert_and_duplicates_none(
    tmp_path: Path,
) -> None:
    check("kill -9", tmp_path)


def test_a_press_while_the_link_is_reconnecting_does_not_overtake_alerts_queued_before(
    tmp_path: Path,
) -> None:
    # A slow link back from the broker (2.5 s) stretches both phases of a reconnect: a press
    # during the TLS handshake (no connection yet), then one between the CONNECT and the
    # CONNACK (the socket is open): the second must not reach the hub first.
    with staged("proxy", tmp_path, Plan(), keepalive_s=10) as s:
        proxy = s.proxy
        assert proxy is not None
        s.pole.start()
        wait_for(lambda: s.hub.seen("telemetry"), timeout=30, what="the node's first heartbeat")
        s.pole.press()
        wait_for(lambda: s.hub.seen("alert"), what="seq 1 at the hub")
        proxy.delay(down_s=2.5)
        proxy.reset()
        wait_for(lambda: proxy.stats.accepted >= 2, what="the node reconnecting")
        reconnecting = time.monotonic()
        time.sleep(1.0)
        s.pole.press()  # seq 2, in the handshake
        time.sleep(max(0.0, reconnecting + 3.7 - time.monotonic()))
        s.pole.press()  # seq 3, between CONNECT and CONNACK
        proxy.clear()
        settle(s)
        s.pole.stop()
        row = judge("press while reconnecting", s.pole, s.hub, 0.0, all_presses=True)
    REPORT.append(row)
    assert row.ok, "\n".join(row.problems)


def test_alerts_sent_into_a_dead_link_are_not_overtaken_by_alerts_held_after_it_was_noticed(
    tmp_path: Path,
) -> None:
    # Seq 2 is sent before the node notices the stalled link (paho keeps it to re-send);
    # seq 3 comes after the keepalive gave up (it waits for the link): 2 must still lead.
    with staged("proxy", tmp_path, Plan()) as s:
        proxy = s.proxy
        assert proxy is not None
        s.pole.start()
        wait_for(lambda: s.hub.seen("telemetry"), timeout=30, what="the node's first heartbeat")
        s.pole.press()
        wait_for(lambda: s.hub.seen("alert"), what="seq 1 at the hub")
        proxy.stall()
        s.pole.press()  # seq 2
        wait_for(lambda: not s.pole.linked(), timeout=30, what="the node giving up on the link")
        s.pole.press()  # seq 3
        proxy.resume()
        settle(s)
        s.pole.stop()
        row = judge("alerts into a dead link", s.pole, s.hub, 0.0, all_presses=True)
    REPORT.append(row)
    assert row.ok, "\n".join(row.problems)
