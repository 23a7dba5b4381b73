"""The hub console against a real Mosquitto, with a plain paho client playing the pole: calls
are acknowledged, duplicates counted once, garbage counted without stopping the console,
and nothing is lost across a broker restart or while the console is away."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.ids import uuid7
from contract.payloads import Ack, Alert, AlertKind, Location
from contract.topics import NodeTopics
from devkit.localbroker import LocalBroker
from edge import clock
from hub.console import HubConsole, main
from tests.support.waiting import wait_for

NODE = "pole-7"
OPERATOR = "desk-3"




class FakePole:
    """A pole as the hub sees it on the wire: publishes alerts (QoS 1), receives acks."""

    def __init__(self, broker: LocalBroker, node_id: str = NODE) -> None:
        self.topics = NodeTopics(node_id)
        self.node_id = node_id
        self.acks: queue.Queue[Ack] = queue.Queue()
        self.ready = threading.Event()
        self.seq = 0
        c = broker.client(node_id, client_id=f"fake-{node_id}")  # the pole's certificate
        c.reconnect_delay_set(1, 2)
        c.on_connect = lambda cl, _u, _f, _r, _p: cl.subscribe(self.topics.ack, qos=1)
        c.on_subscribe = lambda _c, _u, _m, _r, _p: self.ready.set()
        c.on_disconnect = lambda _c, _u, _f, _r, _p: self.ready.clear()
        c.on_message = lambda _c, _u, msg: self.acks.put(Ack.model_validate_json(msg.payload))
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10), "fake pole could not subscribe to its ack topic"

    def new_alert(self) -> Alert:
        self.seq += 1
        return Alert(
            id=uuid7(), seq=self.seq, node=self.node_id, kind=AlertKind.CALL,
            source="call_button", time=clock.now(), clock_synced=True, site="Harbour Gate",
            location=Location(lat=53.54, lon=9.98, description="Harbour Gate 2"),
        )

    def publish(self, topic: str, payload: bytes) -> None:
        wait_for(self.ready.is_set, what="the fake pole to be connected")
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def refused(self, topic: str, payload: bytes) -> str:
        """Publish on `topic`; the broker's answer (MQTT 5 PUBACK reason)."""
        wait_for(self.ready.is_set, what="the fake pole to be connected")
        answer: queue.Queue[str] = queue.Queue()
        self.client.on_publish = lambda _c, _u, _m, reason, _p: answer.put(str(reason))
        try:
            self.client.publish(topic, payload, qos=1).wait_for_publish(10)
            return answer.get(timeout=10)
        finally:
            self.client.on_publish = None

    def send(self, alert: Alert) -> None:
        self.publish(self.topics.alert, alert.to_bytes())

    def next_ack(self, timeout: float = 10.0) -> Ack:
        try:
            return self.acks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.node_id} got no ack within {timeout} s") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hub_tls(broker: LocalBroker) -> list[str]:
    """edge-hub's options for a hub consumer's certificate of its own."""
    tls = broker.hub_tls
    return ["--tls-ca", str(tls.ca), "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]


@pytest.fixture
def hub_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """The hub's reference broker without the shared contract tap: these tests publish
    garbage on purpose."""
    with LocalBroker(tmp_path / "broker", secure=True) as b:
        yield b


@pytest.fixture
def pole(hub_broker: LocalBroker) -> Iterator[FakePole]:
    p = FakePole(hub_broker)
    yield p
    p.close()


@pytest.fixture
def start_console(hub_broker: LocalBroker) -> Iterator[Callable[..., HubConsole]]:
    started: list[HubConsole] = []

    def start(**kw: Any) -> HubConsole:
        kw.setdefault("operator", OPERATOR)
        # a console's session is its certificate's: the same client id, the same certificate
        kw.setdefault("tls", hub_broker.hub_identity(kw.get("client_id") or ""))
        c = HubConsole(hub_broker.host, hub_broker.port, **kw)
        c.start()
        started.append(c)
        assert c.wait_ready(10), "console did not connect and subscribe"
        return c

    yield start
    for c in started:
        c.stop()


def test_a_call_from_a_pole_is_acknowledged_by_the_auto_ack_console(
    pole: FakePole, start_console: Callable[..., HubConsole]
) -> None:
    console = start_console(auto_ack=True)
    alert = pole.new_alert()
    pole.send(alert)
    ack = pole.next_ack()
    assert ack.alert_id == alert.id and ack.by == OPERATOR
    rec = wait_for(lambda: (r := console.state.alert(alert.id)) and r.acked and r,
             what="the console to record the broker taking its ack")
    assert rec.node == NODE and rec.seq == 1 and rec.copies == 1


def test_a_call_sent_twice_is_one_alert_and_each_copy_is_acked(
    pole: FakePole, start_console: Callable[..., HubConsole]
) -> None:
    console = start_console(auto_ack=True)
    alert = pole.new_alert()
    pole.send(alert)
    pole.send(alert)  # as a pole does when the hub's first ack was lost
    assert {pole.next_ack().alert_id, pole.next_ack().alert_id} == {alert.id}
    # The console counts an ack once the broker confirms it, which may be after the pole
    # already has it: wait for that too.
    summary = wait_for(lambda: (s := console.state.summary())["copies"] == 2 and s["acked"]
                       and s, what="both copies counted and the ack confirmed")
    assert (summary["alerts_unique"], summary["duplicates"], summary["acked"]) == (1, 1, 1)


def test_garbage_is_counted_and_the_console_still_acks_the_next_call(
    pole: FakePole, start_console: Callable[..., HubConsole]
) -> None:
    console = start_console(auto_ack=True)
    pole.publish(pole.topics.alert, b"\x00 not json")
    pole.publish(pole.topics.alert, b'{"v": 1, "node": "pole-7"}')
    # A topic no pole may use never reaches the console: the broker's ACL refuses it.
    assert pole.refused("poles/x/y/z", b"{}") == "Not authorized"
    alert = pole.new_alert()
    pole.send(alert)
    assert pole.next_ack().alert_id == alert.id
    counts = wait_for(lambda: (g := console.state.garbage()[0]) and sum(g.values()) == 2 and g,
             what="two malformed messages to be counted")
    assert counts == {"json": 1, "schema": 1}
    assert console.state.summary()["alerts_unique"] == 1


def test_the_operator_acks_a_row_of_the_alerts_table(
    pole: FakePole, start_console: Callable[..., HubConsole]
) -> None:
    console = start_console(auto_ack=False)
    first, second = pole.new_alert(), pole.new_alert()
    pole.send(first)
    pole.send(second)
    wait_for(lambda: len(console.state.pending()) == 2, what="two pending alerts")
    assert pole.acks.empty()
    console.render()  # the operator reads row numbers off the screen: newest is row 1
    console.command("a 2")
    assert pole.next_ack().alert_id == first.id
    wait_for(lambda: [a.alert_id for a in console.state.pending()] == [second.id],
             what="only the second alert to remain pending")
    assert "no row 9" in console.command("a 9")
    console.command("a")
    assert pole.next_ack().alert_id == second.id


def test_the_console_keeps_acking_after_the_broker_restarts(
    hub_broker: LocalBroker, pole: FakePole, start_console: Callable[..., HubConsole]
) -> None:
    console = start_console(auto_ack=True)
    hub_broker.stop()
    wait_for(lambda: not console.connected and not pole.ready.is_set(),
             what="console and pole to notice the broker has gone")
    hub_broker.start()
    assert console.wait_ready(10), "console did not reconnect after the broker restart"
    alert = pole.new_alert()
    pole.send(alert)
    assert pole.next_ack().alert_id == alert.id


def test_a_call_published_while_the_console_was_away_is_acked_when_it_returns(
    pole: FakePole, start_console: Callable[..., HubConsole]
) -> None:
    start_console(auto_ack=True, client_id="hub-desk-3").stop()
    alert = pole.new_alert()
    pole.send(alert)  # the broker queues it in the console's session
    assert pole.acks.empty()
    console = start_console(auto_ack=True, client_id="hub-desk-3")
    assert pole.next_ack().alert_id == alert.id
    assert console.state.summary()["alerts_unique"] == 1


def test_edge_hub_ack_publishes_one_ack_the_pole_receives(
    hub_broker: LocalBroker, pole: FakePole
) -> None:
    alert_id = uuid7()
    code = main(["--ack", NODE, alert_id, "--port", str(hub_broker.port), "--operator", "script",
                 *hub_tls(hub_broker)])
    assert code == 0
    ack = pole.next_ack()
    assert (ack.alert_id, ack.by) == (alert_id, "script")


def test_edge_hub_ack_refuses_a_bad_alert_id_and_reports_an_unreachable_broker(
    hub_broker: LocalBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--ack", NODE, "not-a-uuid", "--port", str(hub_broker.port),
                 *hub_tls(hub_broker)]) == 2
    assert "ALERT_ID of --ack is not valid" in capsys.readouterr().err
    hub_broker.stop()
    assert main(["--ack", NODE, uuid7(), "--port", str(hub_broker.port), *hub_tls(hub_broker)]) == 1
    assert "ack not delivered" in capsys.readouterr().err


def test_edge_hub_watches_for_a_duration_and_writes_its_summary(
    hub_broker: LocalBroker, pole: FakePole, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary_path = tmp_path / "summary.json"
    codes: list[int] = []
    run = threading.Thread(target=lambda: codes.append(main([
        "--port", str(hub_broker.port), "--auto-ack", "--plain", "--duration", "3",
        "--summary-json", str(summary_path), *hub_tls(hub_broker),
    ])))
    run.start()
    alert = pole.new_alert()
    while run.is_alive() and pole.acks.empty():  # re-send until acked, as a pole does
        pole.send(alert)
        time.sleep(0.3)
    run.join(20)
    assert codes == [0]
    assert pole.next_ack().alert_id == alert.id
    summary = json.loads(summary_path.read_text())
    assert (summary["alerts_unique"], summary["acked"]) == (1, 1)
    out = capsys.readouterr().out
    assert "ALERT" in out and f"{NODE} seq 1" in out and out.rstrip().splitlines()[-1].startswith(
        "summary {")
