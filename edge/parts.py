"""The running node's parts, as the modules that report on them see them: the heartbeat, the
self-test and the health watch read from here; edge/node.py builds it once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.call.alarm import AlarmPath
from edge.call.outbox import Outbox
from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.health.certificate import CertificateWatch
from edge.pole.cabinet import Cabinet
from edge.uplink.client import Uplink
from edge.uplink.firmware import FirmwareDesk
from edge.uplink.forwarder import Outgoing

if TYPE_CHECKING:  # the vision side loads only on a node with cameras
    from edge.vision.supervisor import VisionSupervisor


@dataclass(frozen=True)
class Parts:
    cfg: NodeConfig
    counters: Counters
    outbox: Outbox
    alarm: AlarmPath
    uplink: Uplink
    outgoing: Outgoing
    cabinet: Cabinet
    firmware: FirmwareDesk
    certificate: CertificateWatch
    vision: VisionSupervisor | None
    started: float  # monotonic
