"""The per-pole record: NodeView, one pole as the hub sees it, kept up to date from the
pole's status (state, version, site, its own health verdict) and heartbeat (uptime, outbox,
link, its cameras' stats and, in PoleHardware, its inputs, relays, PTZ head, GPS and
sensors). Also the camera figures of the hub's summary. No locking: HubState holds its lock
around every change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from contract.payloads import CameraStats, Heartbeat, Status
from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from hub.events import HubEvent, cut


@dataclass(frozen=True)
class PoleHardware:
    """A pole's devices beyond the call button, as in its last heartbeat. Replaced whole by
    the next heartbeat, never changed in place."""

    inputs: dict[str, InputStats]
    outputs: dict[str, OutputStats]
    ptz: PtzStats | None
    gps: GpsStats | None
    sensors: dict[str, SensorStats]

    @classmethod
    def of(cls, hb: Heartbeat) -> PoleHardware | None:
        """None for a pole that reports no such device (an alarm-only pole)."""
        if not (hb.inputs or hb.outputs or hb.ptz or hb.gps or hb.sensors):
            return None
        return cls(dict(hb.inputs), dict(hb.outputs), hb.ptz, hb.gps, dict(hb.sensors))

    def copy(self) -> PoleHardware:
        return replace(self, inputs=dict(self.inputs), outputs=dict(self.outputs),
                       sensors=dict(self.sensors))


@dataclass
class NodeView:
    """One pole as the hub sees it."""

    node_id: str
    state: str = "unknown"  # "online" or "offline" once its status arrives
    reason: str = ""
    version: str = ""
    site: str = ""
    since: datetime | None = None  # the time in its last status
    boot: str = ""
    heartbeat_at: datetime | None = None  # when the hub received its last heartbeat
    uptime_s: float | None = None
    outbox_pending: int | None = None
    outbox_unacked: int | None = None
    link_connects: int | None = None
    link_disconnects: int | None = None
    seq_missing: int = 0  # seqs never seen between the lowest and highest seen
    cameras: dict[str, CameraStats] = field(default_factory=dict)  # as in its last heartbeat
    health: str = "ok"  # the node's own verdict, from its status: ok, degraded or failed
    reasons: tuple[str, ...] = ()  # why degraded or failed
    hardware: PoleHardware | None = None  # as in its last heartbeat

    def copy(self) -> NodeView:
        """A copy for readers: later messages change neither its cameras nor its hardware."""
        return replace(self, cameras=dict(self.cameras),
                       hardware=self.hardware.copy() if self.hardware else None)

    def take_status(self, msg: Status, at: datetime, events: list[HubEvent]) -> None:
        """Take the node's status (received at `at`); add the line it is worth to events."""
        was = (self.state, self.health, self.reasons)
        self.state, self.reason, self.since = msg.state, msg.reason, msg.time
        self.version, self.site, self.boot = msg.version, msg.site, msg.boot
        self.health, self.reasons = msg.health, tuple(msg.reasons)
        verdict = msg.health + (f": {'; '.join(msg.reasons)}" if msg.reasons else "")
        if was[0] == msg.state == "online" and was[1:] != (self.health, self.reasons):
            # the node republishes its status when its verdict changes: say only that
            events.append(HubEvent(at, "health", cut(f"{self.node_id} {verdict}"),
                                   self.node_id))
            return
        why = f" ({msg.reason})" if msg.reason else ""
        health = f", {verdict}" if msg.state == "online" and verdict != "ok" else ""
        events.append(HubEvent(
            at, "status", cut(f"{self.node_id} {msg.state}{why}{health}, {msg.version} at "
                              f"{msg.site}"), self.node_id,
        ))

    def take_heartbeat(self, msg: Heartbeat, at: datetime) -> None:
        """Take the node's heartbeat, received at `at`."""
        self.heartbeat_at = at
        self.uptime_s = msg.uptime_s
        self.outbox_pending, self.outbox_unacked = msg.outbox.pending, msg.outbox.unacked
        self.link_connects = msg.link.connects
        self.link_disconnects = msg.link.disconnects
        # replaced, not merged: a heartbeat lists every camera the pole runs now
        self.cameras = dict(msg.cameras)
        self.hardware = PoleHardware.of(msg)


def camera_figures(nodes: Iterable[NodeView]) -> dict[str, Any]:
    """The summary's camera figures, from each node's last heartbeat: cameras_online,
    cameras_offline, cameras_by_node {node: {"online": n, "offline": n}}."""
    by_node = {
        n.node_id: {"online": sum(c.online for c in n.cameras.values()),
                    "offline": sum(not c.online for c in n.cameras.values())}
        for n in sorted(nodes, key=lambda n: n.node_id) if n.cameras
    }
    return {
        "cameras_online": sum(c["online"] for c in by_node.values()),
        "cameras_offline": sum(c["offline"] for c in by_node.values()),
        "cameras_by_node": by_node,
    }
