"""On the hub's reference broker a client's id is its certificate's name: no pole can take
over another pole's session by connecting with its id (seen in the field: a pole's link
dropped 20 times in 28 s while another pole's certificate fought it for its client id), and
each of the hub's consumers holds a certificate of its own, so several run at once."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import TypeAdapter, ValidationError

from contract.link import TlsSection
from contract.payloads import NodeId
from contract.topics import NodeTopics
from devkit.localbroker import REFERENCE, LocalBroker
from hub.client import HubConsole
from hub.state import HubEvent
from provisioning import pki
from tests.support.fault_sides import PRESS_GAP_S
from tests.support.hub_clients import Listener
from tests.support.node import NODE_ID, NodeProcess
from tests.support.waiting import wait_for

A, B = NODE_ID, "test-0002"  # A: the pole under test; B: the pole whose certificate intrudes
TOPICS = NodeTopics(A)
ROUNDS = 12  # each round: B's certificate connects as A, then as itself


def connects_as(broker: LocalBroker, name: str) -> int:
    """How many connections the broker has logged under client id `name`."""
    return broker.log.read_text().count(f" as {name} (")


def intrude(broker: LocalBroker, tls: TlsSection, client_id: str) -> list[str]:
    """One connection with `tls` claiming `client_id`: it stays long enough to be fought for
    (paho would reconnect if it were taken over), writes an offline status and an alert into
    pole A's topics, and leaves. The broker's answers to the two publishes."""
    c = broker.client(tls, client_id)
    connack: queue.Queue[ReasonCode] = queue.Queue()
    answers: queue.Queue[str] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, reason, _p: connack.put(reason)
    c.on_publish = lambda _c, _u, _m, reason, _p: answers.put(str(reason))
    c.connect(broker.host, broker.port, keepalive=10)
    c.loop_start()
    try:
        assert not connack.get(timeout=10).is_failure, "the broker refused the intruder"
        c.publish(TOPICS.status, f'{{"v": 1, "node": "{A}", "state": "offline"}}'.encode(),
                  qos=1, retain=True)
        c.publish(TOPICS.alert, b"{}", qos=1)
        refused = [answers.get(timeout=10), answers.get(timeout=10)]
        time.sleep(0.15)  # connected a while, as the intruder in the field was
        return refused
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.slow
def test_another_poles_certificate_claiming_this_poles_client_id_never_drops_its_link(
        broker: LocalBroker, start_node: Callable[..., NodeProcess],
        telemetry: Listener) -> None:
    status = Listener(broker, TOPICS.status)
    node = start_node()
    wait_for(lambda: "connected to hub" in node.log(), what="the node connected")
    wait_for(lambda: any(p["state"] == "online" for p in status.payloads()),
             what="the node's online status at the hub")
    intruder = broker.identity(B)
    answers = []
    for _ in range(ROUNDS):
        answers += intrude(broker, intruder, A)  # another pole's certificate, this pole's id
        answers += intrude(broker, intruder, B)  # ... and its own
    beats = len(telemetry.payloads())
    wait_for(lambda: len(telemetry.payloads()) >= beats + 2,
             what="two heartbeats sent after the intruder left")
    status.close()

    drops = node.log().count("lost hub link")
    assert drops == 0, f"the pole's link dropped {drops} times in {ROUNDS} takeover attempts"
    assert node.log().count("connected to hub") == 1
    link = telemetry.payloads()[-1]["link"]
    assert (link["connects"], link["disconnects"]) == (1, 0)
    assert {p["state"] for p in status.payloads()} == {"online"}, "the status flipped"
    assert set(answers) == {"Not authorized"} and len(answers) == 4 * ROUNDS
    # the broker gave every intruding connection its certificate's name, never A's
    assert connects_as(broker, B) == 2 * ROUNDS
    assert connects_as(broker, A) == 1
    assert f"Client {A} already connected" not in broker.log.read_text()


class Console:
    """A HubConsole with every event it told, for the test to read."""

    def __init__(self, broker: LocalBroker, tls: TlsSection, auto_ack: bool) -> None:
        self.events: list[HubEvent] = []
        self.hub = HubConsole(broker.host, broker.port, auto_ack=auto_ack, operator="desk-1",
                              tls=tls, on_event=self.events.append)
        self.hub.start()
        assert self.hub.wait_ready(10), "the console did not connect and subscribe"

    def told(self, kind: str) -> list[str]:
        return [e.text for e in list(self.events) if e.kind == kind]

    def alert_seqs(self) -> list[int]:
        return sorted(a.seq for a in self.hub.state.alerts() if a.node == A)


@pytest.fixture
def consoles() -> Iterator[list[Console]]:
    made: list[Console] = []
    yield made
    for console in made:
        console.hub.stop()


@pytest.mark.slow
def test_two_hub_consoles_with_their_own_certificates_run_at_once_and_keep_their_sessions(
        broker: LocalBroker, start_node: Callable[..., NodeProcess],
        consoles: list[Console]) -> None:
    first_tls, second_tls = broker.hub_identity(), broker.hub_identity()
    first = Console(broker, first_tls, auto_ack=True)
    second = Console(broker, second_tls, auto_ack=False)
    consoles += [first, second]
    names = [pki.common_name(t.cert) for t in (first_tls, second_tls)]
    assert [first.hub.client_id, second.hub.client_id] == names and names[0] != names[1]
    node = start_node()
    node.press()
    wait_for(lambda: first.alert_seqs() == [1] and second.alert_seqs() == [1],
             what="the call at both consoles")
    second.hub.stop()  # the second console's session outlives it: the next call waits there
    time.sleep(PRESS_GAP_S)  # a person's pace: sooner, the debounce takes it for bounce
    node.press()
    wait_for(lambda: first.alert_seqs() == [1, 2], what="the second call at the first console")
    back = Console(broker, second_tls, auto_ack=False)
    consoles.append(back)
    wait_for(lambda: back.alert_seqs() == [2], what="the queued call at the second console")
    assert "resumed session" in back.told("connected")[0]
    assert first.told("disconnected") == [] and first.hub.connected
    assert len(first.told("connected")) == 1
    assert [connects_as(broker, n) for n in names] == [1, 2]
    assert "already connected" not in broker.log.read_text()


@pytest.mark.slow
def test_two_clients_holding_one_hub_certificate_are_one_session(
        broker: LocalBroker, consoles: list[Console]) -> None:
    """Why each consumer needs its own certificate: the client id it asks for is ignored."""
    tls = broker.hub_identity()
    name = pki.common_name(tls.cert)
    consoles.append(Console(broker, tls, auto_ack=False))
    later = HubConsole(broker.host, broker.port, tls=tls, client_id="another-id")
    later.start()
    try:
        wait_for(lambda: f"Client {name} already connected" in broker.log.read_text(),
                 what="the second client taking the first one's session")
        assert connects_as(broker, "another-id") == 0
    finally:
        later.stop()


def test_no_pole_can_hold_a_hub_consumers_name(tmp_path: Path) -> None:
    """Every name the reference ACL gives the hub's rights is hub.<role>: no node id (a
    node's config and every payload's `node` are NodeId) and so no pole certificate."""
    node_id: TypeAdapter[str] = TypeAdapter(NodeId)
    names = [line.removeprefix("user ") for line in (REFERENCE / "acl").read_text().splitlines()
             if line.startswith("user ")]
    assert names and all(pki.is_hub_name(n) for n in names), names
    ca = pki.make_ca(tmp_path / "ca")
    for name in [*names, pki.HUB]:  # and not the name every hub client once shared
        if name != pki.HUB:
            with pytest.raises(ValidationError):
                node_id.validate_python(name)
        with pytest.raises(pki.PkiError, match="not a pole's node id"):
            pki.pole_files(ca, name, tmp_path / "pole")
    assert pki.main(["hub", str(tmp_path / "ca"), "hub.console-2", str(tmp_path / "hub")]) == 0
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == [
        "ca.crt", "hub.console-2.crt", "hub.console-2.key"]
    assert pki.common_name(tmp_path / "hub" / "hub.console-2.crt") == "hub.console-2"
    for bad in ("console", pki.HUB, "hub.Console", "hub.desk_1", A):
        assert pki.main(["hub", str(tmp_path / "ca"), bad, str(tmp_path / "x")]) == 2
