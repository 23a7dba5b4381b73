"""Events and telemetry on their way to the hub: written to the backlog (backlog.py) and
handed to the uplink by the forwarder thread in priority order, behind any waiting alert;
sent live when the backlog cannot be opened or written."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge.call.alarm import Link
from edge.config.model import BacklogSection
from edge.counters import Counters
from edge.uplink.backlog import Backlog, BacklogError, Priority, Queued

log = logging.getLogger(__name__)

WINDOW = 16  # messages handed to the uplink and not yet acknowledged, at most


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
        self._live_seq: dict[Priority, int] = {}

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
        with self._live_lock:
            self._live_seq[priority] = self._live_seq.get(priority, 0) + 1
            seq = self._live_seq[priority]
        self.link.publish(topic, build(seq), qos=1)

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
        except BacklogError as e:  # sent again later: the hub dedupes
            log.error("%s", e)
        with self._wake:
            self._in_flight.discard(msg.rowid)
            self._wake.notify()
