"""The alarm path: a press or a cabinet input becomes an alert that reaches the hub.

The call button's callbacks (`on_press`, `on_stuck`, ...) and the cabinet's inputs call in
here directly, in the thread that saw the GPIO edge: `raise_alert()` commits the alert to
the outbox and hands it to the uplink at once, with no queue in between; only then do the
followers run (relays, the PTZ head, pinning footage). Everything that
comes back (PUBACKs, the hub's acks) arrives on other threads and is queued for the
main loop, which alone updates delivery state and drives the call LED:

  pending call, link up, younger than ack_timeout_s  → fast blink ("calling")
  pending call, link down or older                    → double blink ("no link"; re-sending)
  call acknowledged within ack_display_s              → steady ("help is coming")
  otherwise                                           → off
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import ValidationError

from contract.ids import uuid7
from contract.payloads import Ack, Alert, AlertKind
from contract.topics import NodeTopics
from edge import clock
from edge.call.outbox import Outbox, OutboxError
from edge.config.model import NodeConfig
from edge.counters import Counters

log = logging.getLogger(__name__)

T = TypeVar("T")
RESEND_MAX_S = 600.0  # an unacknowledged alert is re-sent at most this far apart


class Indicator(Protocol):
    """The call button's LED, as the alarm path needs it."""

    def off(self) -> None: ...
    def on(self) -> None: ...
    def blink(self, on_s: float, off_s: float) -> None: ...
    def pattern(self, steps: Sequence[tuple[bool, float]]) -> None: ...


class Link(Protocol):
    """The uplink, as the alarm path needs it."""

    @property
    def connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False,
        on_done: Callable[[bool, str], None] | None = None,
    ) -> None: ...


NO_LINK_PATTERN = ((True, 0.15), (False, 0.15), (True, 0.15), (False, 0.9))


@dataclass(frozen=True)
class _Delivered:
    seq: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class _Acked:
    alert_id: str


# Something done after an alert is on its way: (what it is, for the log; the action).
Follower = tuple[str, Callable[[Alert, str], None]]


class AlarmPath:
    def __init__(
        self, cfg: NodeConfig, outbox: Outbox, link: Link, led: Indicator, counters: Counters
    ) -> None:
        self.cfg = cfg
        self.topics = NodeTopics(cfg.node.id)
        self.outbox = outbox
        self.link = link
        self.led = led
        self.counters = counters
        self.events: queue.SimpleQueue[_Delivered | _Acked] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()  # handed to paho, PUBACK not yet seen
        # Alerts wait here while the link is down and leave in seq order once it is up, so
        # that a press during a reconnect cannot overtake the calls queued before it.
        self._send_lock = threading.Lock()
        self._held: dict[int, bytes] = {}
        self._unsaved: dict[int, Alert] = {}  # raised while the outbox could not be written
        self._unsaved_acks: dict[str, float] = {}  # hub acks for those, by alert id
        self._resend_at: dict[int, tuple[float, float]] = {}  # seq → (due, interval), unacked
        self._followers: list[Follower] = []

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
        self._send(alert.seq, alert.to_bytes())
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
        try:
            ack = Ack.model_validate_json(payload)
        except ValidationError as e:
            self.counters.inc("malformed_acks")
            log.warning("malformed ack on %s ignored (%d bytes): %s", topic, len(payload),
                        e.errors(include_url=False)[0]["msg"])
            return
        self.events.put(_Acked(ack.alert_id))

    # --- main loop ---

    def resume(self) -> None:
        """After a start: send every alert the broker never accepted, oldest first."""
        for row in self.outbox.undelivered():
            self._send(row.seq, row.payload)
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
                return

    def tick(self) -> None:
        """Periodic work: save alerts the disk refused, re-send, show the LED state."""
        self._flush()  # held by a press that raced the link coming up
        self._save_unsaved()
        self._resend_unacked()
        self.show_state()

    def show_state(self) -> None:
        oldest_unacked, last_ack = self.outbox.call_state()
        with self._lock:
            unsaved_calls = [a for a in self._unsaved.values()
                             if a.kind == AlertKind.CALL and a.id not in self._unsaved_acks]
            unsaved_ack = max(self._unsaved_acks.values(), default=None)
        if unsaved_ack is not None:
            last_ack = unsaved_ack if last_ack is None else max(unsaved_ack, last_ack)
        if unsaved_calls:
            first = min(a.time.timestamp() for a in unsaved_calls)
            oldest_unacked = first if oldest_unacked is None else min(first, oldest_unacked)
        now = time.time()
        t = self.cfg.timings
        if oldest_unacked is not None:
            if self.link.connected and now - oldest_unacked < t.ack_timeout_s:
                self.led.blink(0.25, 0.25)
            else:
                self.led.pattern(NO_LINK_PATTERN)
        elif last_ack is not None and now - last_ack < t.ack_display_s:
            self.led.on()
        else:
            self.led.off()

    # --- internals ---

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
        with self._lock:
            saved = ev.seq not in self._unsaved
            self._resend_at.setdefault(
                ev.seq, (clock.monotonic() + self.cfg.timings.ack_retry_s,
                         self.cfg.timings.ack_retry_s))
        if saved:
            self._try(lambda: self.outbox.mark_delivered(ev.seq))

    def _handle_acked(self, ev: _Acked) -> None:
        with self._lock:
            unsaved = ev.alert_id in {a.id for a in self._unsaved.values()}
            if unsaved:  # written with the alert once the disk takes it
                self._unsaved_acks.setdefault(ev.alert_id, time.time())
        if unsaved:
            self.counters.inc("alerts_acked")
            self.show_state()
            return
        known = self._try(lambda: self.outbox.mark_acked(ev.alert_id))
        if known is False:
            self.counters.inc("unknown_acks")
            log.warning("hub acknowledged alert %s, which this node did not raise", ev.alert_id)
            return
        row = self.outbox.get(ev.alert_id)
        if row is not None:
            with self._lock:
                self._resend_at.pop(row.seq, None)
        self.counters.inc("alerts_acked")
        log.info("hub acknowledged alert %s", ev.alert_id)
        self.show_state()

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
        for row in self.outbox.unacked():
            with self._lock:
                due, interval = self._resend_at.get(row.seq, (now, self.cfg.timings.ack_retry_s))
                if due > now:
                    continue
                self._resend_at[row.seq] = (now + interval, min(interval * 2, RESEND_MAX_S))
            self.counters.inc("alerts_resent")
            log.info("alert seq=%d not acknowledged by the hub; sending again", row.seq)
            self._send(row.seq, row.payload)

    def _try(self, write: Callable[[], T]) -> T | None:
        try:
            return write()
        except OutboxError as e:
            self.counters.inc("outbox_errors")
            log.error("%s", e)
            return None
