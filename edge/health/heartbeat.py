"""What the node says about itself: the heartbeat on `poles/<node>/telemetry` (every
`timings.heartbeat_s`, or as the hub's `telemetry.interval` asks for a while) and the
retained status on `poles/<node>/status`."""

from __future__ import annotations

import logging

from contract.payloads import CertificateStats, Heartbeat, LinkStats, OutboxStats, Status
from edge import __version__, clock
from edge.health.assess import platform_stats
from edge.health.watch import HealthWatch
from edge.parts import Parts
from edge.uplink.backlog import Priority

log = logging.getLogger(__name__)


class Heartbeats:
    """When the next heartbeat is due, and what it says."""

    def __init__(self, parts: Parts, health: HealthWatch) -> None:
        self.parts, self.health = parts, health
        self.interval_s = parts.cfg.timings.heartbeat_s
        self._until: float | None = None  # a temporary interval ends then (monotonic)
        self._next = clock.monotonic()

    def set_interval(self, interval_s: float, for_s: float | None) -> None:
        """Heartbeats every interval_s from now on (for for_s, then as configured)."""
        self.interval_s = interval_s
        self._until = clock.monotonic() + for_s if for_s is not None else None
        self._next = clock.monotonic()
        log.info("heartbeat every %.0f s%s", interval_s,
                 f" for {for_s:.0f} s" if for_s is not None else "")

    def due(self, now: float) -> bool:
        if self._until is not None and now >= self._until:
            self.interval_s, self._until = self.parts.cfg.timings.heartbeat_s, None
            log.info("heartbeat back to every %.0f s", self.interval_s)
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    def build(self) -> Heartbeat:
        p = self.parts
        pending, unacked = p.outbox.counts()
        waiting = p.outgoing.counts()
        link = p.uplink.state
        cert = p.certificate.current()
        platform = self.health.platform
        return Heartbeat(
            node=p.cfg.node.id, time=clock.now(),
            uptime_s=round(clock.monotonic() - p.started, 1),
            outbox=OutboxStats(
                pending=pending, unacked=unacked, events=waiting.get(Priority.EVENT, 0),
                telemetry=waiting.get(Priority.TELEMETRY, 0), thinned=p.outgoing.thinned),
            link=LinkStats(connects=link.connects, disconnects=link.disconnects,
                           connected_since=link.connected_since,
                           refused_connects=link.refused_connects,
                           refused_publishes=link.refused_publishes,
                           refused_subscriptions=link.refused_subscriptions),
            inputs=p.cabinet.input_stats(),
            counters=p.counters.snapshot(),
            cameras=p.vision.stats() if p.vision else {},
            certificate=None if cert is None else CertificateStats(
                subject=cert.subject, not_after=cert.not_after, days_left=cert.days_left,
                expiring=cert.expiring),
            outputs=p.cabinet.output_stats(), ptz=p.cabinet.ptz_stats(),
            gps=p.cabinet.gps_stats(), sensors=p.cabinet.sensor_stats(),
            platform=(platform_stats(platform, clock.sync_state())
                      if platform is not None else None),
            health=self.health.health, firmware=p.firmware.stats(),
        )


def status(parts: Parts, health: HealthWatch, boot: str, state: str, reason: str = "") -> bytes:
    """The retained status: online (on every connect and when the verdict changes) or the
    offline last will."""
    cfg = parts.cfg
    return Status(
        node=cfg.node.id, state=state, time=clock.now(),  # type: ignore[arg-type]
        boot=boot, version=__version__, site=cfg.node.site, reason=reason,
        health=health.health.state, reasons=health.health.reasons,
    ).to_bytes()
