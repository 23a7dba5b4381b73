"""`cmd/selftest`: each part of the node checked and reported by name, for the hub and for
a technician at the pole."""

from __future__ import annotations

import shutil

from contract.commands import Check
from edge import clock
from edge.call.outbox import OutboxError
from edge.health.certificate import WARN_DAYS
from edge.parts import Parts

MIN_FREE_SHARE = 0.05  # the data partition with less free space than this fails the check


def selftest(p: Parts, unhealthy: str) -> list[Check]:
    """Every check, in a fixed order; `unhealthy` is the health watch's current failure."""
    checks = [Check(name="uplink", ok=p.uplink.connected,
                    detail=f"{p.cfg.hub.host}:{p.cfg.hub.port}")]
    try:
        p.outbox.probe()
        checks.append(Check(name="outbox", ok=True, detail="writable"))
    except OutboxError as e:
        checks.append(Check(name="outbox", ok=False, detail=str(e)))
    try:
        du = shutil.disk_usage(p.cfg.data_dir)
        share = du.free / du.total if du.total else 0.0
        checks.append(Check(name="data_disk", ok=share >= MIN_FREE_SHARE,
                            detail=f"{du.free / 1e9:.1f} GB free of {du.total / 1e9:.1f} GB"))
    except OSError as e:
        checks.append(Check(name="data_disk", ok=False, detail=str(e)))
    synced = clock.clock_synced()
    checks.append(Check(name="clock", ok=synced,
                        detail="synchronised" if synced else "not synchronised"))
    cert = p.certificate.current()
    if cert is not None:
        checks.append(Check(name="certificate", ok=cert.days_left > WARN_DAYS,
                            detail=f"{cert.subject}, {cert.days_left:.0f} days left"))
    checks += _vision(p)
    checks.append(Check(name="health", ok=not unhealthy, detail=unhealthy or "ok"))
    return checks


def _vision(p: Parts) -> list[Check]:
    if p.vision is None:
        return []
    alive = p.vision.alive()
    checks = [Check(name="vision", ok=alive, detail="running" if alive else "supervisor died")]
    for name, cam in p.vision.stats().items():
        checks.append(Check(name=f"camera.{name}", ok=cam.online,
                            detail=f"{cam.capture_fps:.1f} fps" if cam.online
                            else cam.reason or "offline"))
        rec = cam.recording
        if rec is not None:
            checks.append(Check(name=f"recording.{name}", ok=rec.state != "failed",
                                detail=rec.reason or rec.state))
    return checks
