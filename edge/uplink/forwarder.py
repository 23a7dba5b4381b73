"""Events and telemetry on their way to the hub: written to the backlog (backlog.py) and
handed to the uplink by the forwarder thread in priority order, behind any waiting alert;
sent live when the backlog cannot be opened or written (numbered on from the backlog's
numbers; a heartbeat that can neither be stored nor sent now is dropped, not queued).

Each stored message is handed to the uplink once: one the broker took stays out of the
sending order even when the card refuses to delete it (the delete is tried again every
DELETE_RETRY_S), so a full card cannot make the node send it again and again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drivers.fullcard import SeqReserve
from edge import clock
from edge.call.alarm import Link
from edge.config.model import BacklogSection
from edge.counters import Counters
from edge.uplink.backlog import RESERVE, Backlog, BacklogError, Priority, Queued

log = logging.getLogger(__name__)

WINDOW = 16  # messages handed to the uplink and not yet acknowledged, at most
DELETE_RETRY_S = 2.0  # how often the rows of sent messages the card kept are deleted again


class Outgoing:
    """Where the node puts an event or a heartbeat for the hub."""

    def __init__(self, path: Path, section: BacklogSection, link: Link,
                 alerts_waiting: Callable[[], bool], counters: Counters) -> None:
        self.link, self.counters = link, counters
        self.backlog: Backlog | None = None
        try:
            self.backlog = Backlog(path, max_messages=section.max_messages,
                                   telemetry_keep_s=section.telemetry_keep_s)
        except BacklogError as e:  # events and telemetry then go out live, not stored
            log.error("%s: events and telemetry are not stored across outages", e)
        self.forwarder = (Forwarder(self.backlog, link, alerts_waiting, counters)
                          if self.backlog is not None else None)
        self._live_lock = threading.Lock()
        # Numbers for live messages when there is no backlog to number them: from the card.
        self._reserve = (SeqReserve(path.with_suffix(".seq"), len(Priority), ahead=RESERVE)
                         if self.backlog is None else None)
        self._live_seq = {p: self._reserve.values[p - 1] if self._reserve else 0
                          for p in Priority}

    def send(self, priority: Priority, topic: str, build: Callable[[int], bytes]) -> None:
        """Store a message for the forwarder (`build` makes it from its sequence number);
        live if the store is failing."""
        if self.backlog is not None and self.forwarder is not None:
            try:
                self.backlog.put(priority, topic, build)
                self.forwarder.wake()
                return
            except BacklogError as e:
                self.counters.inc("backlog_errors")
                log.error("%s: sending live", e)
        if priority == Priority.TELEMETRY and not self.link.connected:
            self.counters.inc("telemetry_dropped")  # not piled up in memory for a burst later
            return
        self.link.publish(topic, build(self._live_number(priority)), qos=1)

    def _live_number(self, priority: Priority) -> int:
        if self.backlog is not None:
            return self.backlog.live_seq(priority)
        with self._live_lock:
            seq = self._live_seq[priority] = self._live_seq[priority] + 1
            if self._reserve is not None and not self._reserve.cover(priority - 1, seq):
                log.error("%s: %s seq %d may be used again after a restart",
                          self._reserve.error, priority.name.lower(), seq)
        return seq

    def counts(self) -> dict[Priority, int]:
        return self.backlog.counts() if self.backlog is not None else {}

    @property
    def thinned(self) -> int:
        return self.backlog.thinned if self.backlog is not None else 0

    def start(self) -> None:
        if self.forwarder is not None:
            self.forwarder.start()

    def wake(self) -> None:
        if self.forwarder is not None:
            self.forwarder.wake()

    def alive(self) -> bool:
        return self.forwarder is None or self.forwarder.alive()

    def stop(self) -> None:
        """Stop forwarding (before the uplink stops; the store stays open for its acks)."""
        if self.forwarder is not None:
            self.forwarder.stop()

    def close(self) -> None:
        """Close the store, after the uplink has stopped."""
        if self.backlog is not None:
            self.backlog.close()
        if self._reserve is not None:  # exactly what was given: no gap after a clean restart
            for p in Priority:
                self._reserve.settle(p - 1, self._live_seq[p])


class Forwarder:
    """Hands stored messages to the uplink in priority order, WINDOW at a time."""

    def __init__(self, backlog: Backlog, link: Link, alerts_waiting: Callable[[], bool],
                 counters: Counters) -> None:
        self.backlog, self.link, self.counters = backlog, link, counters
        self._alerts_waiting = alerts_waiting
        self._wake = threading.Condition()
        self._stop = False
        self._in_flight: set[int] = set()
        self._thread: threading.Thread | None = None
        self._delete_at = 0.0  # monotonic: when to delete sent rows the card kept, again

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._stop:
                    self._wake.wait(timeout=0.5)
                stopping = self._stop
            if stopping:
                return
            try:
                self._send_some()
            except BacklogError as e:
                self.counters.inc("backlog_errors")
                log.error("%s", e)
                time.sleep(1.0)

    def _send_some(self) -> None:
        self.backlog.save_sent()  # here, not on the network thread that saw the PUBACK
        if self.backlog.undeleted and clock.monotonic() >= self._delete_at:
            self._delete_at = clock.monotonic() + DELETE_RETRY_S
            if gone := self.backlog.retry_deletes():
                log.info("%d sent messages deleted from the backlog at last", gone)
        if not self.link.connected or self._alerts_waiting():
            return
        with self._wake:
            room = WINDOW - len(self._in_flight)
            skip = set(self._in_flight)
        if room <= 0:
            return
        for msg in self.backlog.next(room, skip):
            if self._alerts_waiting():
                return  # an alert was raised meanwhile: it goes first
            with self._wake:
                self._in_flight.add(msg.rowid)
            self.link.publish(msg.topic, msg.payload, qos=1, on_done=self._on_done(msg))

    def _on_done(self, msg: Queued) -> Callable[[bool, str], None]:
        return lambda ok, why: self._done(msg, ok, why)

    def _done(self, msg: Queued, ok: bool, why: str) -> None:
        """On the uplink's network thread: the broker has answered."""
        if not ok:  # refused (e.g. by the broker's ACL): re-sending would not help
            self.counters.inc(f"{msg.priority.name.lower()}_refused")
            log.error("broker refused a %s message on %s: %s", msg.priority.name.lower(),
                      msg.topic, why)
        try:
            self.backlog.done(msg.rowid, msg.priority)
        except BacklogError as e:  # kept out of the sending order; deleted later
            self.counters.inc("backlog_errors")
            log.error("%s: message sent; its row is deleted when the card allows", e)
        with self._wake:
            self._in_flight.discard(msg.rowid)
            self._wake.notify()
