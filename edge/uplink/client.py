"""The node's MQTT 5 link to the hub (paho-mqtt 2, VERSION2 callbacks).

One network thread owns the connection: it connects, runs paho's loop, and after a loss
waits a jittered exponential backoff before trying again, so a city's poles do not all
reconnect in the same second after the hub restarts. The retained status topic says
`online` on every connect; the broker publishes the `offline` last will if the node
vanishes. QoS 1 messages handed to paho while the link is down are queued by paho and
sent (or re-sent, with DUP) on reconnect; the caller learns of each PUBACK through a
callback, which runs on the network thread and must only hand the result on.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.link import TlsSection, make_client
from drivers.backoff import Backoff
from edge import clock
from edge.config.model import HubSection

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600  # the broker keeps our ack subscription and queued acks this long
# QoS 1 messages the broker may have on their way to us unacknowledged (MQTT 5 Receive
# Maximum; unset, a client takes 65,535). A flood of commands faster than the node reads
# then waits in the broker's queue, not in the stream ahead of the broker's PUBACKs for our
# alerts and the hub's acks.
RECEIVE_MAXIMUM = 20

# (ok, reason) once the broker has answered a QoS 1 publish
Delivery = Callable[[bool, str], None]


@dataclass(frozen=True)
class ReplyTo:
    """Where a request wants its answer (MQTT 5 response topic and correlation data)."""

    topic: str | None = None
    correlation: bytes | None = None


MessageHandler = Callable[[str, bytes, ReplyTo], None]
PUBACK_TIMEOUT_MIN_S = 10.0  # a PUBACK later than this (or two keepalives) is taken as lost


@dataclass(frozen=True)
class _Waiting:
    """A message handed to paho and not yet reported sent (QoS 0) or acknowledged (QoS 1)."""

    qos: int
    on_done: Delivery | None
    since: float  # monotonic time it was handed over


def _loop_writes(_c: mqtt.Client, _u: Any, _sock: Any) -> None:
    """Nothing to register: the uplink's own loop() writes whatever paho has queued."""


@dataclass
class LinkState:
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    connected_since: datetime | None = None
    refused_connects: int = 0  # the broker answered CONNECT with an error
    refused_publishes: int = 0  # the broker answered a publish with an error (e.g. ACL)
    refused_subscriptions: int = 0  # ... or a subscription
    puback_timeouts: int = 0  # a QoS 1 publish went unanswered on a live link: reconnected


class Uplink:
    def __init__(
        self,
        hub: HubSection,
        client_id: str,
        *,
        status_topic: str,
        online: Callable[[], bytes],
        offline: Callable[[str], bytes],
        subscriptions: dict[str, MessageHandler],
        on_link: Callable[[bool], None] | None = None,
        tls: TlsSection | None = None,
    ) -> None:
        self.hub = hub
        self.state = LinkState()
        self._status_topic = status_topic
        self._online, self._offline = online, offline
        self._subscriptions = subscriptions
        self._on_link = on_link
        self._backoff = Backoff(hub.reconnect_min_s, hub.reconnect_max_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Every publish goes through publish(): mid → (qos, callback) until paho reports it
        # sent (QoS 0) or acknowledged (QoS 1); _early holds reports that beat publish()
        # returning. Never hold _lock while calling paho: paho holds its own mutex when it
        # calls _on_publish.
        self._waiting: dict[int, _Waiting] = {}
        self._early: dict[int, ReasonCode] = {}
        self._up_at = 0.0  # monotonic time of the last CONNACK
        self._next_overdue_check = 0.0
        self.loop_beat = clock.monotonic()  # last time the network loop ran: for health
        self._link_up_pending = False  # CONNACK seen; connected after this loop pass

        c = make_client(client_id, tls)
        c.max_inflight_messages_set(20)
        c.max_queued_messages_set(0)  # unbounded: the outbox on disk is the real bound
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        # This thread drives paho with loop(), so paho has no thread of its own and would
        # write the socket from whichever thread publishes, at the same time as loop() does:
        # two threads in one TLS connection corrupt it (the broker drops the link; once, in a
        # test script, the process died in free()). With this hook set, publish() only queues
        # the packet and wakes loop() through paho's socket pair: one thread writes.
        c.on_socket_register_write = _loop_writes
        # paho numbers messages 1..65535 and wraps without looking at what is still in
        # flight: under a flood of QoS 1 answers a new message could take an alert's number
        # and overwrite its entry. Numbers still held by paho or by us are skipped.
        self._paho_mid = c._mid_generate
        setattr(c, "_mid_generate", self._free_mid)  # noqa: B010 (a method of paho's, replaced)
        self._client = c

    @property
    def connected(self) -> bool:
        return self.state.connected

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, *, timeout_s: float = 2.0) -> None:
        """Say `offline` (retained) if connected, then close the link."""
        if self.state.connected:
            said = threading.Event()
            self.publish(
                self._status_topic, self._offline("shutdown"), qos=1, retain=True,
                on_done=lambda _ok, _why: said.set(),
            )
            said.wait(timeout_s)  # if not said, the broker's last will says the same
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s + 1)
        # The network thread is gone: this one may write the DISCONNECT itself, at once (a
        # clean disconnect, so the broker drops the "connection lost" will).
        self._client.on_socket_register_write = None
        self._client.disconnect()

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
        on_done: Delivery | None = None, correlation: bytes | None = None,
    ) -> None:
        """Hand a message to the link. QoS 1 ones are kept (and re-sent) until the broker
        answers; on_done then says whether the broker accepted it. `correlation` is echoed
        to a requester as MQTT 5 correlation data."""
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return  # QoS 0 while the link is down is simply not sent
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._waiting[info.mid] = _Waiting(qos, on_done, clock.monotonic())
                return
        if on_done is not None:
            on_done(not early.is_failure, str(early))

    # --- network thread ---

    def _free_mid(self) -> int:
        """paho's next message number that nothing in flight holds."""
        held = self._client._out_messages
        for _ in range(65535):
            mid = self._paho_mid()
            if mid not in held and mid not in self._waiting and mid not in self._early:
                return mid
        raise RuntimeError("65535 messages in flight: no message number is free")

    def _overdue(self) -> bool:
        """Whether a QoS 1 message has waited for its PUBACK longer than a live link ever
        makes it wait (a middlebox lost it): then the link is dropped and made again, since
        the node must never wait forever. Checked about once a second."""
        now = clock.monotonic()
        if not self.state.connected or now < self._next_overdue_check:
            return False
        self._next_overdue_check = now + 1.0
        limit = max(PUBACK_TIMEOUT_MIN_S, 2.0 * self.hub.keepalive_s)
        with self._lock:
            oldest = min((w.since for w in self._waiting.values() if w.qos == 1),
                         default=None)
        if oldest is None or now - max(oldest, self._up_at) < limit:
            return False
        self.state.puback_timeouts += 1
        log.warning("no PUBACK for %.0f s on a live link: reconnecting to send again",
                    now - max(oldest, self._up_at))
        return True

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                self._client.will_set(
                    self._status_topic, self._offline("connection lost"), qos=1, retain=True
                )
                if first:
                    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                    props.SessionExpiryInterval = SESSION_EXPIRY_S
                    props.ReceiveMaximum = RECEIVE_MAXIMUM
                    self._client.connect(
                        self.hub.host, self.hub.port, keepalive=self.hub.keepalive_s,
                        clean_start=False, properties=props,
                    )
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as e:
                log.warning("hub %s:%d unreachable: %s", self.hub.host, self.hub.port, e)
                self._pause(self._backoff.next())
                continue
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.2)
                self.loop_beat = clock.monotonic()
                if self._link_up_pending:
                    # Connected only now, after paho has finished with the CONNACK: it
                    # re-sends what it still held from the lost connection first, so what
                    # callers send once they see the link up queues behind those.
                    self._link_up_pending = False
                    self.state.connected = True
                    if self._on_link is not None:
                        self._on_link(True)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                if self._overdue():
                    self._client.disconnect()  # clean: no will; the session and paho's
                    # copies stay, and what waits is sent again (DUP) on reconnect
            if not self._stop.is_set():
                self._pause(self._backoff.next())

    def _pause(self, seconds: float) -> None:
        """Wait before reconnecting, beating meanwhile: a link that is down is not a hung loop."""
        end = clock.monotonic() + seconds
        while not self._stop.is_set() and (left := end - clock.monotonic()) > 0:
            self.loop_beat = clock.monotonic()
            self._stop.wait(min(1.0, left))
        self.loop_beat = clock.monotonic()

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.state.refused_connects += 1
            log.error("broker refused connection: %s", reason)
            return
        self._backoff.reset()
        self._up_at = clock.monotonic()
        self.state.connects += 1
        self.state.connected_since = clock.now()
        log.info("connected to hub %s:%d", self.hub.host, self.hub.port)
        self.publish(self._status_topic, self._online(), qos=1, retain=True)
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self._link_up_pending = True

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if self.state.connected or self._link_up_pending:
            self.state.disconnects += 1
            log.warning("lost hub link: %s", reason)
        self._link_up_pending = False
        self.state.connected = False
        self.state.connected_since = None
        with self._lock:  # unsent QoS 0 packets are dropped by paho and never reported
            for mid in [m for m, w in self._waiting.items() if w.qos == 0]:
                del self._waiting[mid]
        if self._on_link is not None:
            self._on_link(False)

    def _on_publish(
        self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.state.refused_publishes += 1
            log.error("broker refused a publish: %s", reason)
        with self._lock:
            if mid not in self._waiting:
                self._early[mid] = reason
                return
            on_done = self._waiting.pop(mid).on_done
        if on_done is not None:
            on_done(not reason.is_failure, str(reason))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                self.state.refused_subscriptions += 1
                log.error("broker refused a subscription: %s (check the node's certificate "
                          "and the broker's ACL)", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        handler = next((h for sub, h in self._subscriptions.items()
                        if mqtt.topic_matches_sub(sub, msg.topic)), None)
        if handler is None:
            log.warning("message on unexpected topic %r ignored", msg.topic)
            return
        props = getattr(msg, "properties", None)
        reply = ReplyTo(getattr(props, "ResponseTopic", None),
                        getattr(props, "CorrelationData", None))
        try:
            handler(msg.topic, bytes(msg.payload), reply)
        except Exception:  # a bad message must never take the link down
            log.exception("handling message on %s failed", msg.topic)
