"""The hub console's MQTT client: HubConsole watches every pole on a broker, acknowledges
their alerts and asks them for evidence clips; send_ack() publishes a single ack for scripts.

HubConsole is the piece the demo runs in its own process: a paho MQTT 5 client on its own
network thread (loop_start; paho reconnects by itself) that feeds a HubState and publishes
acks and commands. Its session is persistent, so alerts published while it is away are
queued for it by the broker, and it re-subscribes on every connect.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import TypeAdapter
from rich.console import RenderableType

from contract import topics
from contract.commands import ClipRequest
from contract.ids import uuid7
from contract.link import TlsSection, certificate_name, make_client
from contract.payloads import Ack, NodeId
from hub import clock, view
from hub.state import EventHook, HubEvent, HubState

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from contract.evidence.manifest import Verdict

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 3600  # the broker keeps our subscriptions and queues alerts this long
KEEPALIVE_S = 10
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 2  # one console: no herd to spread, see alerts soon
# Topics no node may use, watched only to count them as garbage. Disjoint from
# hub_subscriptions() (three levels, and response/<one level>) and from the commands the
# hub itself sends (cmd/<name>), so no message arrives twice.
STRAY_SUBSCRIPTIONS = [f"{topics.ROOT}/+", f"{topics.ROOT}/+/+/+/+/#"]

_NODE_ID: TypeAdapter[str] = TypeAdapter(NodeId)


def _session_expiry(packet: int, seconds: int) -> Properties:
    props = Properties(packet)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
    props.SessionExpiryInterval = seconds
    return props


class HubConsole:
    """A live view of every pole on one broker, able to acknowledge their alerts.

    on_event gets every HubEvent (status, alert, duplicate, acked, garbage, connected, ...)
    on paho's network thread: hand it on, quickly. An operator name the contract does not
    allow in an ack's `by` raises pydantic.ValidationError here, not at the first ack.
    """

    def __init__(
        self, host: str, port: int, *, auto_ack: bool = False, operator: str = "hub-console",
        tls: TlsSection | None = None, client_id: str | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        Ack(alert_id=uuid7(), by=operator, time=clock.now())  # a bad operator fails here
        self.host, self.port = host, port
        self.auto_ack, self.operator = auto_ack, operator
        # On the hub's broker a client's id is its certificate's name, whatever it asks for:
        # the session is the certificate's, kept at stop() like that of a fixed id.
        self.client_id = client_id or (certificate_name(tls.cert) if tls else
                                       f"hub-console-{secrets.token_hex(4)}")
        self._own_session = client_id is None and tls is None  # a made-up id's is dropped
        self.on_event = on_event
        self.state = HubState(on_event=self._emit)
        self.notice = "" if auto_ack else "type 'a' + Enter to ack all pending, 'a N' for row N"
        self.last_error = ""
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopping = False
        self._rows: list[str] = []  # alert ids in the order last drawn, for `a N`
        # mid → what to do with the broker's answer, for QoS 1 messages (acks, commands) it
        # has not answered yet; _early holds answers that beat publish() returning. Never
        # hold _lock while calling paho (it holds its own mutex while calling _on_publish).
        self._lock = threading.Lock()
        self._waiting: dict[int, Callable[[ReasonCode], None]] = {}
        self._early: dict[int, ReasonCode] = {}
        c = make_client(self.client_id, tls)
        c.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self._client = c

    # --- life ---

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until stop()."""
        self._client.connect_async(
            self.host, self.port, keepalive=KEEPALIVE_S, clean_start=False,
            properties=_session_expiry(PacketTypes.CONNECT, SESSION_EXPIRY_S),
        )
        self._client.loop_start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once connected and subscribed, so alerts published from now on reach us."""
        return self._subscribed.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Let acks and commands in flight reach the broker (up to timeout_s), then
        disconnect."""
        deadline = clock.monotonic() + timeout_s
        while self.connected and self._waiting and clock.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping = True
        props = _session_expiry(PacketTypes.DISCONNECT, 0) if self._own_session else None
        self._client.disconnect(properties=props)
        self._client.loop_stop()

    # --- acks ---

    def ack(self, alert_id: str) -> bool:
        """Publish an ack for a known alert (QoS 1); False if the hub never received it."""
        rec = self.state.alert(alert_id)
        if rec is None:
            return False
        self._publish_ack(rec.node, alert_id)
        return True

    def ack_pending(self) -> int:
        pending = self.state.pending()
        for rec in pending:
            self._publish_ack(rec.node, rec.alert_id)
        return len(pending)

    def command(self, line: str) -> str:
        """An operator's line: `a` acks all pending alerts, `a N` row N of the alerts table."""
        words = line.lower().split()
        if words == ["a"]:
            reply = f"acking {self.ack_pending()} pending alert(s)"
        elif len(words) == 2 and words[0] == "a" and words[1].isdigit():
            rows = self._rows or [a.alert_id for a in self.state.alerts(view.ALERT_ROWS)]
            n = int(words[1])
            if 1 <= n <= len(rows) and self.ack(rows[n - 1]):
                reply = f"acking row {n} (alert {rows[n - 1]})"
            else:
                reply = f"no row {n}: the alerts table has {len(rows)} row(s)"
        else:
            reply = f"unknown command {line.strip()!r}: 'a' acks all pending, 'a N' row N"
        self.notice = reply
        self._emit(HubEvent(clock.now(), "operator", reply))
        return reply

    def _publish_ack(self, node: str, alert_id: str) -> None:
        ack = Ack(alert_id=alert_id, by=self.operator, time=clock.now())
        self._publish(topics.NodeTopics(node).ack, ack.to_bytes(), None,
                      lambda reason: self._ack_answered(alert_id, reason),
                      lambda why: self._ack_failed(node, alert_id, why))

    def _publish(self, topic: str, payload: bytes, props: Properties | None,
                 answered: Callable[[ReasonCode], None], unsent: Callable[[str], None]) -> None:
        """Publish at QoS 1; `answered` gets the broker's answer, `unsent` why paho refused."""
        info = self._client.publish(topic, payload, qos=1, properties=props)
        # NO_CONN: paho keeps a QoS 1 message and sends it once reconnected
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            unsent(mqtt.error_string(info.rc))
            return
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None:
                self._waiting[info.mid] = answered
                return
        answered(early)

    def _ack_answered(self, alert_id: str, reason: ReasonCode) -> None:
        if reason.is_failure:
            rec = self.state.alert(alert_id)
            self._ack_failed(rec.node if rec else "?", alert_id, f"broker refused it: {reason}")
        else:
            self.state.mark_acked(alert_id, clock.now())

    def _ack_failed(self, node: str, alert_id: str, why: str) -> None:
        log.warning("ack for alert %s of %s not sent: %s", alert_id, node, why)
        self._emit(HubEvent(clock.now(), "ack_failed", f"ack for {node} alert {alert_id}: {why}",
                            node, alert_id))

    # --- clips ---

    def request_clip(
        self, node: str, camera: str, start: datetime, end: datetime, upload_url: str, *,
        manifest_url: str | None = None, request_id: str | None = None,
    ) -> str:
        """Ask a pole for a camera's footage of [start, end) as a signed clip, PUT to
        `upload_url`; returns the request id (a new UUIDv7 unless given). Published at QoS 1
        on the pole's cmd/clip.request topic with MQTT 5 ResponseTopic = its response topic and
        CorrelationData = the id; the answers land in `state.clips`. A bad node id, camera
        or window raises pydantic.ValidationError here, before anything is sent."""
        node_topics = topics.NodeTopics(_NODE_ID.validate_python(node))
        request = ClipRequest(id=request_id or uuid7(), issued=clock.now(), camera=camera,
                              start=start, end=end, upload_url=upload_url,
                              manifest_url=manifest_url)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = node_topics.response
        props.CorrelationData = request.id.encode()
        now = clock.now()
        self._emit(HubEvent(now, "clip", self.state.clips.requested(node, request, now), node))

        def unsent(why: str) -> None:
            line = self.state.clips.not_sent(request.id, why, clock.now())
            if line:
                log.warning("%s", line)
                self._emit(HubEvent(clock.now(), "clip", line, node))

        def answered(reason: ReasonCode) -> None:
            if reason.is_failure:
                unsent(f"the broker refused it: {reason}")

        self._publish(node_topics.cmd("clip.request"), request.to_bytes(), props, answered,
                      unsent)
        return request.id

    def check_clip(self, request_id: str, clip: Path, public_key: Ed25519PublicKey) -> Verdict:
        """Check the delivered clip of a request (the uploaded file at `clip`) against the
        signed manifest in the pole's `done` answer, with the pole's public evidence key;
        the verdict is kept in `state.clips` and told as an event."""
        from contract.evidence.manifest import Verdict
        from hub.evidence import check_clip  # PyAV only once a clip is checked

        rec = self.state.clips.get(request_id)
        if rec is None or rec.result is None:
            verdict = Verdict(False, f"clip {request_id}: no delivered clip to check")
        else:
            verdict = check_clip(clip, rec.result, public_key, node=rec.node, camera=rec.camera)
        line = self.state.clips.checked(request_id, verdict.ok, verdict.problem)
        if line:
            self._emit(HubEvent(clock.now(), "clip", line, rec.node if rec else ""))
        return verdict

    # --- drawing ---

    def render(self) -> RenderableType:
        alerts = self.state.alerts(view.ALERT_ROWS)
        self._rows = [a.alert_id for a in alerts]
        if self.connected:
            link = f"connected to {self.host}:{self.port}"
        else:
            link = f"NOT CONNECTED to {self.host}:{self.port}" + (
                f" ({self.last_error})" if self.last_error else "")
        mode = "auto-ack" if self.auto_ack else f"operator {self.operator}"
        header = f"Safe City hub console | {link} as {self.client_id} | {mode}"
        return view.render(self.state, alerts, now=clock.now(), header=header,
                           notice=self.notice)

    # --- network thread ---

    def _emit(self, ev: HubEvent) -> None:
        hook = self.on_event
        if hook is not None:
            hook(ev)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused connection: {reason}"
            log.error("%s", self.last_error)
            self._emit(HubEvent(clock.now(), "refused", self.last_error))
            return
        self.last_error = ""
        self._connected.set()
        # re-subscribe on every connect: a broker that lost our session has no subscriptions
        wanted = topics.hub_subscriptions() + STRAY_SUBSCRIPTIONS
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in wanted])
        session = "resumed" if flags.session_present else "new"
        self._emit(HubEvent(clock.now(), "connected",
                            f"connected to {self.host}:{self.port} as {self.client_id} "
                            f"({session} session)"))

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self.last_error = f"cannot reach {self.host}:{self.port}"
        log.warning("%s; retrying", self.last_error)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self.last_error = f"subscription refused: {', '.join(refused)}"
            log.error("%s", self.last_error)
            self._emit(HubEvent(clock.now(), "refused", self.last_error))
        self._subscribed.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        if was_connected and not self._stopping:
            self.last_error = f"link lost: {reason}"
            log.warning("%s; reconnecting", self.last_error)
            self._emit(HubEvent(clock.now(), "disconnected", self.last_error))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers should refuse these; count it, do not fail
            topic = "<topic not UTF-8>"
        correlation = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        try:
            ids = self.state.receive(topic, bytes(msg.payload), clock.now(), correlation)
            if self.auto_ack:
                for alert_id in ids:
                    self.ack(alert_id)
        except Exception:  # one bad message, or a failing hook, must not stop the network thread
            log.exception("handling a message on %r failed", topic)

    def _on_publish(
        self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any
    ) -> None:
        with self._lock:
            answered = self._waiting.pop(mid, None)
            if answered is None:
                self._early[mid] = reason
                return
        answered(reason)


class AckNotDelivered(RuntimeError):
    """The one-shot ack did not reach the broker; the message says why."""


def send_ack(
    host: str, port: int, node: str, alert_id: str, *, operator: str = "hub-console",
    tls: TlsSection | None = None, client_id: str | None = None, timeout_s: float = 10.0,
) -> None:
    """Publish one ack and return once the broker has it (PUBACK). Raises ValidationError
    for a bad node or alert id, AckNotDelivered if the broker cannot be reached or refuses."""
    topic = topics.NodeTopics(_NODE_ID.validate_python(node)).ack
    payload = Ack(alert_id=alert_id, by=operator, time=clock.now()).to_bytes()
    connected, answered = threading.Event(), threading.Event()
    answers: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        answers.append(reason)
        connected.set()

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, reason: ReasonCode, _p: Any) -> None:
        answers.append(reason)
        answered.set()

    c = make_client(client_id or f"hub-ack-{secrets.token_hex(4)}", tls)
    c.on_connect, c.on_publish = on_connect, on_publish
    where = f"{host}:{port}"
    try:
        c.connect(host, port, keepalive=KEEPALIVE_S)
    except (OSError, ssl.SSLError) as e:
        raise AckNotDelivered(f"cannot connect to {where}: {e}") from e
    c.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise AckNotDelivered(f"no answer from {where} within {timeout_s} s")
        if answers[0].is_failure:
            raise AckNotDelivered(f"{where} refused the connection: {answers[0]}")
        c.publish(topic, payload, qos=1)
        if not answered.wait(timeout_s):
            raise AckNotDelivered(f"{where} did not acknowledge the ack within {timeout_s} s")
        if answers[1].is_failure:
            raise AckNotDelivered(f"{where} refused the ack on {topic}: {answers[1]}")
    finally:
        c.disconnect()
        c.loop_stop()
