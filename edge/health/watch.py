"""The node's health, watched from the main loop: whether its threads and its outbox work
(`check`: no watchdog ping while they do not, so systemd restarts the node) and the verdict
a crew reads in the status (`sample`: the platform's readings, the cabinet's devices, the
cameras and the certificate)."""

from __future__ import annotations

import logging

from contract.pole import Health
from drivers.platform import Platform, PlatformReader
from edge import clock
from edge.call.outbox import OutboxError
from edge.health.assess import assess
from edge.parts import Parts

log = logging.getLogger(__name__)

LOOP_STALL_S = 5.0  # the uplink's network loop silent this long counts as unhealthy
CAMERA_START_S = 30.0  # a camera without frames this soon after start is still opening


class HealthWatch:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.reader = PlatformReader(parts.cfg.data_dir)
        self.platform: Platform | None = None
        self.health = Health(state="ok")
        self.unhealthy = ""  # why the watchdog is not pinged; empty while healthy

    def check(self) -> bool:
        """Whether every thread runs and the outbox takes writes; logged when it changes."""
        reason = self._failure()
        if reason != self.unhealthy:
            if reason:
                log.error("unhealthy, withholding watchdog pings: %s", reason)
            else:
                log.info("healthy again")
        self.unhealthy = reason
        return not reason

    def _failure(self) -> str:
        p = self.parts
        if not p.uplink.alive():
            return "uplink thread died"
        if clock.monotonic() - p.uplink.loop_beat > LOOP_STALL_S:
            return "uplink loop stalled"
        if p.vision is not None and not p.vision.alive():
            return "vision supervisor thread died"
        if not p.outgoing.alive():
            return "forwarder thread died"
        if p.cabinet.dead():
            return p.cabinet.dead()
        try:
            p.outbox.probe()
        except OutboxError as e:
            return str(e)
        return ""

    def sample(self) -> bool:
        """Read the platform, run the fan and heater, and judge; True if the verdict changed."""
        self.platform = self.reader.read()
        self.parts.cabinet.regulate(self.platform.soc_temp_c)
        failures = [self.unhealthy] if self.unhealthy else []
        health = assess(self.parts.cfg.health, self.platform, clock.sync_state(),
                        failures=failures, problems=self._problems())
        if health == self.health:
            return False
        log.log(logging.INFO if health.state == "ok" else logging.WARNING, "health %s%s",
                health.state, f": {'; '.join(health.reasons)}" if health.reasons else "")
        self.health = health
        return True

    def _problems(self) -> list[str]:
        p = self.parts
        out = p.cabinet.problems()
        if p.vision is not None:
            starting = clock.monotonic() - p.started < CAMERA_START_S
            for name, cam in p.vision.stats().items():
                if not cam.online and not starting:
                    out.append(f"camera {name} offline")
                rec = cam.recording
                if rec is not None and rec.state == "failed":
                    out.append(f"recording {name} failed")  # why: in telemetry
        cert = p.certificate.current()
        if cert is not None and cert.expiring:
            out.append(f"certificate ends {cert.not_after.date()}")
        return out
