"""The alarm path: a press or a cabinet input becomes an alert that reaches the hub.

The call button's callbacks (`on_press`, `on_stuck`, ...) and the cabinet's inputs call in
here directly, in the thread that saw the GPIO edge: `raise_alert()` commits the alert to
the outbox and hands it to the uplink at once, with no queue in between; only then do the
followers run (relays, the PTZ head, pinning footage). Everything that
comes back (PUBACKs, the hub's acks) arrives on other threads and is queued for the
main loop, which alone updates delivery state and drives the call LED (light.py).

What the LED shows and when an alert is sent again are kept in memory on the monotonic
clock, so neither a step of the wall clock nor a disk that refuses writes can change them;
the outbox follows, and a write it refused is tried again until it is taken. The hub's
acks are checked on the network thread against the alerts still open, so a flood of acks
(malformed, unknown, repeated) costs the main loop nothing and is logged once per interval.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from pydantic import ValidationError

from contract.ids import uuid7
from contract.payloads import Ack, Alert, AlertKind
from contract.topics import NodeTopics
from edge import clock
from edge.budget import QuietLog
from edge.call.light import Indicator, show_call_state
from edge.call.outbox import Outbox, OutboxError
from edge.config.model import NodeConfig
from edge.counters import Counters

log = logging.getLogger(__name__)

RESEND_MAX_S = 600.0  # an unacknowledged alert is re-sent at most this far apart
MAX_ACK_BYTES = 4096  # an ack is about 200 bytes; anything far bigger is refused unread
RECENT_ACKS = 1000  # ids of alerts acked lately: a repeated ack is not "unknown"


class Link(Protocol):
    """The uplink, as the alarm path needs it."""

    @property
    def connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
        on_done: Callable[[bool, str], None] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class _Delivered:
    seq: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class _Acked:
    alert_id: str


@dataclass
class _Open:
    """An alert the hub has not acknowledged yet, as the main loop tracks it."""

    seq: int
    kind: str
    payload: bytes
    raised: float  # monotonic; for an alert from before this start, the start
    delivered: bool = False


# Something done after an alert is on its way: (what it is, for the log; the action).
Follower = tuple[str, Callable[[Alert, str], None]]


class AlarmPath:
    def __init__(
        self, cfg: NodeConfig, outbox: Outbox, link: Link, led: Indicator, counters: Counters
    ) -> None:
        self.cfg = cfg
        self.topics = NodeTopics(cfg.node.id)
        self.outbox, self.link, self.led, self.counters = outbox, link, led, counters
        self.events: queue.SimpleQueue[_Delivered | _Acked] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()  # handed to paho, PUBACK not yet seen
        # Alerts wait here while the link is down and leave in seq order once it is up, so
        # that a press during a reconnect cannot overtake the calls queued before it.
        self._send_lock = threading.Lock()
        self._held: dict[int, bytes] = {}
        self._open: dict[str, _Open] = {}  # by alert id
        self._ack_queued: set[str] = set()  # acks on their way to the main loop
        self._recent_acks: deque[str] = deque(maxlen=RECENT_ACKS)
        self._last_call_ack: float | None = None  # monotonic
        self._unsaved: dict[int, Alert] = {}  # raised while the outbox could not be written
        self._unsaved_acks: dict[str, float] = {}  # hub acks for those: unix time
        self._unwritten_delivered: set[int] = set()  # PUBACKs the outbox refused to record
        self._unwritten_acks: set[str] = set()  # hub acks the outbox refused to record
        self._resend_at: dict[int, tuple[float, float]] = {}  # seq → (due, interval), unacked
        self._followers: list[Follower] = []
        self._quiet = QuietLog(log)
        self._load()

    def follow(self, what: str, action: Callable[[Alert, str], None]) -> None:
        """Run `action(alert, source)` after each alert is on its way (not for an input's
        restored or flapping news); `what` names it when it fails."""
        self._followers.append((what, action))

    # --- GPIO threads ---

    def on_press(self) -> None:
        self.counters.inc("presses")
        self.alert(AlertKind.CALL, "call_button")

    def on_long_press(self) -> None:
        self.counters.inc("long_presses")

    def on_stuck(self) -> None:
        log.error("call button held for %.0f s: jammed or taped down",
                  self.cfg.timings.stuck_after_s)
        self.alert(AlertKind.BUTTON_STUCK, "call_button")

    def on_release(self, held_s: float) -> None:
        if held_s >= self.cfg.timings.stuck_after_s:
            log.warning("call button released after %.0f s stuck", held_s)

    def alert(self, kind: AlertKind, source: str) -> None:
        """Raise an alert, then run the followers; a failing follower never stops the alert."""
        alert = self.raise_alert(kind, source)
        if kind in (AlertKind.INPUT_RESTORED, AlertKind.INPUT_FLAPPING):
            return  # news for the hub; no lights, no PTZ, no footage pinned
        for what, action in self._followers:
            try:
                action(alert, source)
            except Exception:
                log.exception("alert %s: %s failed", alert.id, what)

    def raise_alert(self, kind: AlertKind, source: str) -> Alert:
        """Record an alert durably and send it. Never raises: an alert that cannot be
        written to disk is still sent, kept in memory and written when the disk allows."""
        node = self.cfg.node
        sync = clock.sync_state()
        alert = Alert(
            id=uuid7(), seq=self.outbox.next_seq(), node=node.id, kind=kind, source=source,
            time=clock.now(), clock_synced=sync.synced, clock_source=sync.source,
            clock_offset_s=sync.offset_s, site=node.site, location=node.location,
        )
        payload = alert.to_bytes()
        with self._lock:
            self._open[alert.id] = _Open(alert.seq, kind, payload, clock.monotonic())
        try:
            self.outbox.add(alert, self.topics.alert)
        except OutboxError as e:
            self.counters.inc("outbox_errors")
            log.error("alert %s (seq %d) not on disk, sending from memory: %s",
                      alert.id, alert.seq, e)
            with self._lock:
                self._unsaved[alert.seq] = alert
        self.counters.inc(f"alerts_{kind}")
        log.info("alert %s seq=%d kind=%s source=%s", alert.id, alert.seq, kind, source)
        self._send(alert.seq, payload)
        return alert

    def waiting(self) -> bool:
        """Whether an alert is waiting for the link or for the broker's acceptance."""
        with self._lock:
            return bool(self._in_flight or self._held)

    def on_link(self, up: bool) -> None:
        """From the uplink's network thread: the link is up (and paho has re-sent what it
        held from the lost connection), or it is down."""
        if up:
            self._flush()

    # --- network thread ---

    def on_ack_message(self, topic: str, payload: bytes) -> None:
        """Check an ack at once; only an ack for an open alert, once, goes to the main loop."""
        if len(payload) > MAX_ACK_BYTES:
            self._malformed_ack(topic, payload, f"more than {MAX_ACK_BYTES} bytes")
            return
        try:
            ack = Ack.model_validate_json(payload)
        except ValidationError as e:
            self._malformed_ack(topic, payload, e.errors(include_url=False)[0]["msg"])
            return
        with self._lock:
            known = ack.alert_id in self._open
            first = known and ack.alert_id not in self._ack_queued
            if first:
                self._ack_queued.add(ack.alert_id)
            repeated = not known and ack.alert_id in self._recent_acks
        if first:
            self.events.put(_Acked(ack.alert_id))
        elif known or repeated:
            self.counters.inc("repeated_acks")  # the hub answers every copy it gets
        else:
            self.counters.inc("unknown_acks")
            self._quiet.warning("unknown ack", "hub acknowledged alert %s, which this node "
                                "did not raise", ack.alert_id)

    def _malformed_ack(self, topic: str, payload: bytes, why: str) -> None:
        self.counters.inc("malformed_acks")
        self._quiet.warning("malformed ack", "malformed ack on %s ignored (%d bytes): %s",
                            topic, len(payload), why)

    # --- main loop ---

    def resume(self) -> None:
        """After a start: send every alert the broker never accepted, oldest first."""
        with self._lock:
            waiting = sorted((o.seq, o.payload) for o in self._open.values() if not o.delivered)
        for seq, payload in waiting:
            self._send(seq, payload)
        pending, unacked = self.outbox.counts()
        if pending or unacked:
            log.info("outbox holds %d undelivered and %d unacknowledged alerts", pending, unacked)

    def handle(self, event: _Delivered | _Acked) -> None:
        if isinstance(event, _Delivered):
            self._handle_delivered(event)
        else:
            self._handle_acked(event)

    def drain(self) -> None:
        """At shutdown: record what already came back, before the outbox closes."""
        while True:
            try:
                self.handle(self.events.get_nowait())
            except queue.Empty:
                break
        self._retry_writes()

    def tick(self) -> None:
        """Periodic work: save what the disk refused, re-send, show the LED state."""
        self._flush()  # held by a press that raced the link coming up
        self._save_unsaved()
        self._retry_writes()
        self._resend_unacked()
        self.show_state()

    def show_state(self) -> None:
        now = clock.monotonic()
        with self._lock:
            oldest = min((o.raised for o in self._open.values() if o.kind == AlertKind.CALL),
                         default=None)
            last_ack = self._last_call_ack
        show_call_state(self.led, self.cfg.timings, connected=self.link.connected,
                        oldest_call_s=None if oldest is None else now - oldest,
                        last_ack_s=None if last_ack is None else now - last_ack)

    # --- internals ---

    def _load(self) -> None:
        """What the outbox still holds open from before this start."""
        now = clock.monotonic()
        for row in [*self.outbox.undelivered(), *self.outbox.unacked()]:
            self._open[row.id] = _Open(row.seq, row.kind, row.payload, now,
                                       delivered=row.delivered_at is not None)

    def _send(self, seq: int, payload: bytes) -> None:
        with self._lock:
            if seq in self._in_flight:
                return  # paho already holds it and re-sends it on reconnect
            self._held[seq] = payload
        self._flush()

    def _flush(self) -> None:
        """Hand held alerts to the link, oldest first, if it is up."""
        with self._send_lock:
            if not self.link.connected:
                return
            with self._lock:
                ready = sorted(self._held.items())
                self._held.clear()
                self._in_flight.update(seq for seq, _ in ready)
            for seq, payload in ready:
                self.link.publish(self.topics.alert, payload, qos=1,
                                  on_done=self._on_done(seq))

    def _on_done(self, seq: int) -> Callable[[bool, str], None]:
        def done(ok: bool, reason: str) -> None:
            self.events.put(_Delivered(seq, ok, reason))

        return done

    def _handle_delivered(self, ev: _Delivered) -> None:
        with self._lock:
            self._in_flight.discard(ev.seq)
        if not ev.ok:
            # The broker refused it (e.g. not authorised): it stays pending and is re-sent.
            self.counters.inc("publish_refused")
            log.error("broker refused alert seq=%d: %s", ev.seq, ev.reason)
            return
        self.counters.inc("alerts_delivered")
        retry = self.cfg.timings.ack_retry_s
        with self._lock:
            for o in self._open.values():
                if o.seq == ev.seq:
                    o.delivered = True
            saved = ev.seq not in self._unsaved
            self._resend_at.setdefault(ev.seq, (clock.monotonic() + retry, retry))
            if saved:
                self._unwritten_delivered.add(ev.seq)
        self._retry_writes()

    def _handle_acked(self, ev: _Acked) -> None:
        with self._lock:
            self._ack_queued.discard(ev.alert_id)
            entry = self._open.pop(ev.alert_id, None)
            if entry is None:
                return
            self._recent_acks.append(ev.alert_id)
            self._resend_at.pop(entry.seq, None)
            if entry.kind == AlertKind.CALL:
                self._last_call_ack = clock.monotonic()
            if entry.seq in self._unsaved:  # written with the alert once the disk takes it
                self._unsaved_acks.setdefault(ev.alert_id, time.time())
            else:
                self._unwritten_acks.add(ev.alert_id)
        self.counters.inc("alerts_acked")
        log.info("hub acknowledged alert %s", ev.alert_id)
        self._retry_writes()
        self.show_state()

    def _retry_writes(self) -> None:
        """Record in the outbox the PUBACKs and acks it has not taken yet, oldest first; on
        the first refusal, stop until the next tick (counted and logged once a while)."""
        with self._lock:
            delivered = sorted(self._unwritten_delivered)
            acked = list(self._unwritten_acks)
        for seq in delivered:
            if not self._try(partial(self.outbox.mark_delivered, seq)):
                return
            with self._lock:
                self._unwritten_delivered.discard(seq)
        for alert_id in acked:
            if not self._try(partial(self.outbox.mark_acked, alert_id)):
                return
            with self._lock:
                self._unwritten_acks.discard(alert_id)

    def _save_unsaved(self) -> None:
        with self._lock:
            waiting = list(self._unsaved.values())
        for alert in waiting:
            with self._lock:
                acked_at = self._unsaved_acks.get(alert.id)
                delivered = (alert.seq not in self._in_flight and alert.seq not in self._held) \
                    or acked_at is not None
            try:
                self.outbox.add(alert, self.topics.alert, acked_at=acked_at,
                                delivered_at=time.time() if delivered else None)
            except OutboxError:
                return  # still failing; counted and logged when raised
            with self._lock:
                self._unsaved.pop(alert.seq, None)
                self._unsaved_acks.pop(alert.id, None)
            log.info("alert %s (seq %d) now on disk", alert.id, alert.seq)

    def _resend_unacked(self) -> None:
        # When is on the monotonic clock alone: a step of the wall clock (NTP or GPS after a
        # cold boot) must not hold a re-send back. An alert delivered before this process
        # started has no time here and goes again at once; the hub dedupes by id.
        now = clock.monotonic()
        with self._lock:
            due = []
            for o in sorted(self._open.values(), key=lambda o: o.seq):
                if not o.delivered:
                    continue
                at, interval = self._resend_at.get(o.seq, (now, self.cfg.timings.ack_retry_s))
                if at > now:
                    continue
                self._resend_at[o.seq] = (now + interval, min(interval * 2, RESEND_MAX_S))
                due.append(o)
        for o in due:
            self.counters.inc("alerts_resent")
            log.info("alert seq=%d not acknowledged by the hub; sending again", o.seq)
            self._send(o.seq, o.payload)

    def _try(self, write: Callable[[], object]) -> bool:
        try:
            write()
        except OutboxError as e:
            self.counters.inc("outbox_errors")
            self._quiet.error("outbox", "%s (tried again each tick)", e)
            return False
        return True
