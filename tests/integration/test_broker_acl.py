"""The hub's reference broker (hub/broker/, Mosquitto 2.0) keeps every pole to its own
topics: a pole is its certificate, a client without one from the city's CA never gets in,
and what a pole may not write or read is refused or never delivered.

"Receives nothing" is shown with a marker: the forbidden message is sent first, then an
allowed one on the same path; once the marker has arrived, the forbidden one would have too.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract.link import TlsSection
from devkit.localbroker import LocalBroker
from edge.config.model import HubSection
from edge.uplink.client import ReplyTo, Uplink
from provisioning import pki
from tests.support.node import NODE_ID, NodeProcess, node_config
from tests.support.waiting import wait_for

A, B = "test-0001", "test-0002"  # A is the shared fixtures' node id


class Peer:
    """One MQTT 5 client and everything the broker answered it, in order."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.connack: ReasonCode | None = None
        self.closed = threading.Event()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._answers: dict[int, queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        client.on_connect = self._on_connect
        client.on_disconnect = lambda *_: self.closed.set()
        client.on_publish = lambda _c, _u, mid, reason, _p: self._answer(mid).put(str(reason))
        client.on_subscribe = lambda _c, _u, mid, reasons, _p: self._answer(mid).put(
            [str(r) for r in reasons])
        client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, bytes(msg.payload)))
        self.connected = threading.Event()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack = reason
        if not reason.is_failure:
            self.connected.set()

    def _answer(self, mid: int) -> queue.Queue[Any]:
        with self._lock:
            return self._answers.setdefault(mid, queue.Queue())

    def connect(self, broker: LocalBroker) -> bool:
        """True once the broker accepted us; False if it closed the link first."""
        try:
            self.client.connect(broker.host, broker.port)
        except (OSError, ssl.SSLError):
            return False
        self.client.loop_start()
        wait_for(lambda: self.connected.is_set() or self.closed.is_set(),
                 what="the broker's answer to CONNECT (or the link closed)")
        return self.connected.is_set()

    def publish(self, topic: str, payload: bytes = b"{}") -> str:
        """The broker's PUBACK reason for a QoS 1 publish."""
        mid = self.client.publish(topic, payload, qos=1).mid
        reason: str = self._answer(mid).get(timeout=10)
        return reason

    def subscribe(self, topic: str) -> list[str]:
        """The broker's SUBACK reasons."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None  # None only when not connected
        reasons: list[str] = self._answer(mid).get(timeout=10)
        return reasons

    def until(self, marker: str) -> list[str]:
        """Topics received up to and including the first message on `marker`."""
        seen: list[str] = []
        while not seen or seen[-1] != marker:
            try:
                seen.append(self.messages.get(timeout=10)[0])
            except queue.Empty:
                raise AssertionError(f"no message on {marker} (got {seen})") from None
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(autouse=True)
def placeholders(broker: LocalBroker) -> None:
    """These tests are about topics: their payloads are placeholders the contract refuses."""
    broker.tap.allow_invalid(r"poles/.*")  # type: ignore[attr-defined]


@pytest.fixture
def peers(broker: LocalBroker) -> Any:
    made: list[Peer] = []

    def connect(identity: str | TlsSection, client_id: str = "") -> Peer:
        peer = Peer(broker.client(identity, client_id))
        made.append(peer)
        assert peer.connect(broker), f"{identity} could not connect: {peer.connack}"
        return peer

    yield connect
    for peer in made:
        peer.close()


def test_a_client_without_a_certificate_is_refused_in_the_tls_handshake(
        broker: LocalBroker) -> None:
    stranger = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    stranger.tls_set(ca_certs=str(broker.ca.cert))  # trusts the broker, shows no certificate
    peer = Peer(stranger)
    try:
        assert not peer.connect(broker)
        assert peer.connack is None  # never got as far as MQTT
    finally:
        peer.close()
    wait_for(lambda: "peer did not return a certificate" in broker.log.read_text(),
             what="the broker logging the missing certificate")


def test_a_certificate_from_another_ca_is_refused(broker: LocalBroker, tmp_path: Path) -> None:
    other = pki.make_ca(tmp_path / "other-ca", name="Not the city's CA")
    forged = pki.issue(other, A, tmp_path / "forged")
    peer = Peer(broker.client(TlsSection(ca=broker.ca.cert, cert=forged.cert, key=forged.key)))
    try:
        assert not peer.connect(broker)
        assert peer.connack is None
    finally:
        peer.close()
    wait_for(lambda: "certificate verify failed" in broker.log.read_text(),
             what="the broker logging the untrusted certificate")


def test_a_pole_cannot_publish_as_another_pole(peers: Any) -> None:
    hub, a = peers(pki.HUB), peers(A)
    assert hub.subscribe("poles/#") == ["Granted QoS 1"]
    assert a.publish(f"poles/{B}/alert") == "Not authorized"
    assert a.publish(f"poles/{B}/status") == "Not authorized"
    assert a.publish(f"poles/{A}/alert") == "Success"
    assert hub.until(f"poles/{A}/alert") == [f"poles/{A}/alert"]


def test_a_pole_cannot_fake_acks_or_commands_even_for_itself(peers: Any) -> None:
    hub, a = peers(pki.HUB), peers(A)
    assert a.subscribe(f"poles/{A}/ack") == ["Granted QoS 1"]
    assert a.subscribe(f"poles/{A}/cmd/+") == ["Granted QoS 1"]
    assert a.publish(f"poles/{A}/ack") == "Not authorized"
    assert a.publish(f"poles/{A}/cmd/x") == "Not authorized"
    # nor may the hub write a pole's own topics
    assert hub.publish(f"poles/{A}/alert") == "Not authorized"
    assert hub.publish(f"poles/{A}/cmd/selftest") == "Success"
    assert hub.publish(f"poles/{A}/ack") == "Success"
    assert a.until(f"poles/{A}/ack") == [f"poles/{A}/cmd/selftest", f"poles/{A}/ack"]


def test_only_the_hub_consumers_the_acl_names_have_the_hubs_rights(
        broker: LocalBroker, peers: Any, tmp_path: Path) -> None:
    a = peers(A)
    assert a.subscribe(f"poles/{A}/ack") == ["Granted QoS 1"]
    # the name every hub client once shared, and a hub.<role> no `user` block names
    for name in (pki.HUB, "hub.not-listed"):
        issued = pki.issue(broker.ca, name, tmp_path / name)
        other = peers(TlsSection(ca=broker.ca.cert, cert=issued.cert, key=issued.key))
        assert other.publish(f"poles/{A}/ack") == "Not authorized"
        assert other.publish(f"poles/{A}/cmd/selftest") == "Not authorized"
    hub = peers(pki.HUB)  # a hub consumer the ACL names
    assert hub.publish(f"poles/{A}/ack") == "Success"
    assert a.until(f"poles/{A}/ack") == [f"poles/{A}/ack"]


def test_a_pole_reads_only_its_own_acks_and_commands(peers: Any) -> None:
    hub, a, b = peers(pki.HUB), peers(A), peers(B)
    for topic in (f"poles/{B}/ack", f"poles/{B}/cmd/+", f"poles/{A}/ack", f"poles/{A}/cmd/+"):
        # Mosquitto 2.0's acl_file grants every subscription and checks `read` when it
        # delivers, so the SUBACK says granted even for another pole's topics.
        assert a.subscribe(topic) == ["Granted QoS 1"]
    assert b.subscribe(f"poles/{B}/#") == ["Granted QoS 1"]
    for topic in (f"poles/{B}/ack", f"poles/{B}/cmd/clip.request", f"poles/{A}/ack"):
        assert hub.publish(topic) == "Success"
    assert b.until(f"poles/{B}/cmd/clip.request") == [f"poles/{B}/ack",
                                                      f"poles/{B}/cmd/clip.request"]
    assert a.until(f"poles/{A}/ack") == [f"poles/{A}/ack"]


def test_a_last_will_on_another_poles_status_is_accepted_but_never_published(
        broker: LocalBroker, peers: Any) -> None:
    hub = peers(pki.HUB)
    assert hub.subscribe("poles/+/status") == ["Granted QoS 1"]
    for will, at_the_hub in ((f"poles/{B}/status", []),
                             (f"poles/{A}/status", [f"poles/{A}/status"])):
        dying = Peer(broker.client(A))
        dying.client.will_set(will, b'{"state": "offline"}', qos=1, retain=True)
        assert dying.connect(broker), "the broker refused a CONNECT with a foreign will"
        assert dying.connack is not None and str(dying.connack) == "Success"
        closed = broker.log.read_text().count("closed its connection")
        dying.client.loop_stop()
        sock = dying.client.socket()
        assert sock is not None
        sock.close()  # vanish without DISCONNECT: the will is due

        def gone(n: int = closed) -> bool:
            return broker.log.read_text().count("closed its connection") > n

        wait_for(gone, what="the broker noticing the pole has gone")
        if at_the_hub:
            assert hub.until(will) == at_the_hub  # and nothing from the foreign will before it


def test_an_uplink_with_another_poles_topics_counts_and_logs_what_the_broker_refuses(
        broker: LocalBroker, peers: Any, caplog: pytest.LogCaptureFixture) -> None:
    hub = peers(pki.HUB)
    assert hub.subscribe(f"poles/{B}/#") == ["Granted QoS 1"]
    received: queue.Queue[str] = queue.Queue()

    def handler(topic: str, _payload: bytes, _reply: ReplyTo) -> None:
        received.put(topic)

    caplog.set_level(logging.INFO, logger="edge.uplink.client")
    uplink = Uplink(  # pole A's certificate, pole B's topics
        HubSection(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=1),
        f"uplink-{A}", status_topic=f"poles/{B}/status", online=lambda: b'{"state": "online"}',
        offline=lambda why: b'{"state": "offline"}',
        subscriptions={f"poles/{B}/ack": handler, f"poles/{B}/cmd/+": handler,
                       f"poles/{A}/ack": handler},
        tls=broker.identity(A),
    )
    uplink.start()
    try:
        wait_for(lambda: uplink.state.refused_publishes >= 1,
                 what="the broker refusing the online status on B's topic")
        assert uplink.connected and uplink.state.refused_connects == 0
        assert "broker refused a publish: Not authorized" in caplog.text
        refused: list[bool] = []
        done = threading.Event()

        def answered(ok: bool, _why: str) -> None:
            refused.append(not ok)
            done.set()

        uplink.publish(f"poles/{B}/alert", b"{}", qos=1, on_done=answered)
        assert done.wait(10) and refused == [True]
        assert uplink.state.refused_publishes == 2
        # The subscriptions are granted (see above): what they would bring is not delivered.
        for topic in (f"poles/{B}/ack", f"poles/{B}/cmd/x", f"poles/{A}/ack"):
            assert hub.publish(topic) == "Success"
        assert received.get(timeout=10) == f"poles/{A}/ack"
        assert uplink.state.refused_subscriptions == 0
    finally:
        uplink.stop()
    assert uplink.state.refused_publishes == 3  # the offline status at stop, too
    assert hub.until(f"poles/{B}/ack") == [f"poles/{B}/ack"]  # never a status or alert of B's


def test_a_node_holding_another_poles_certificate_runs_but_delivers_nothing(
        tmp_path: Path, broker: LocalBroker, peers: Any) -> None:
    hub = peers(pki.HUB)
    assert hub.subscribe(f"poles/{B}/#") == ["Granted QoS 1"]
    config = node_config(tmp_path, broker, node_id=B, certificate=NODE_ID)
    node = NodeProcess(config).start()
    try:
        wait_for(lambda: "broker refused a publish: Not authorized" in node.log(),
                 what="the broker refusing the node's online status")
        node.press()
        wait_for(lambda: "broker refused alert seq=1: Not authorized" in node.log(),
                 what="the call refused (it stays pending on the node)")
        assert node.proc is not None and node.proc.poll() is None
    finally:
        code = node.stop()
    assert code == 0, node.log()
    log = node.log()
    assert "Traceback" not in log
    stopped = next(line for line in log.splitlines() if f"node {B} stopped" in line)
    assert "refused by the broker: 0 connects" in stopped and " 0 subscriptions" in stopped
    assert hub.publish(f"poles/{B}/ack") == "Success"
    assert hub.until(f"poles/{B}/ack") == [f"poles/{B}/ack"]  # nothing as B before it


def test_the_broker_serves_the_names_in_its_certificate(broker: LocalBroker) -> None:
    """A pole checks the broker's certificate against the host name it dials."""
    ctx = ssl.create_default_context(cafile=str(broker.ca.cert))
    tls = broker.hub_tls
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection((broker.host, broker.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=name) as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection((broker.host, broker.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(raw, server_hostname="hub.elsewhere.example")
