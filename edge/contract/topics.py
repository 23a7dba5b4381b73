"""The one topic builder. Every topic of a node lives under `poles/<node-id>/`.

node → hub: status (retained, last will), alert (QoS 1), telemetry (heartbeat, QoS 0),
            event (vision, QoS 1), response (to commands, QoS 1)
hub → node: ack (QoS 1), command (QoS 1)
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "poles"

NODE_TO_HUB = ("status", "alert", "telemetry", "event", "response")
HUB_TO_NODE = ("ack", "command")


@dataclass(frozen=True)
class NodeTopics:
    """The topics of one node."""

    node_id: str

    def _t(self, leaf: str) -> str:
        return f"{ROOT}/{self.node_id}/{leaf}"

    @property
    def status(self) -> str:
        return self._t("status")

    @property
    def alert(self) -> str:
        return self._t("alert")

    @property
    def telemetry(self) -> str:
        return self._t("telemetry")

    @property
    def event(self) -> str:
        return self._t("event")

    @property
    def ack(self) -> str:
        return self._t("ack")

    @property
    def command(self) -> str:
        return self._t("command")

    @property
    def response(self) -> str:
        return self._t("response")

    def owns(self, topic: str) -> bool:
        """Whether `topic` lies under this node's own topics (where it may publish)."""
        return topic.startswith(self._t(""))


def hub_subscriptions() -> list[str]:
    """What the hub subscribes to, for every node at once."""
    return [f"{ROOT}/+/{leaf}" for leaf in NODE_TO_HUB]


def parse(topic: str) -> tuple[str, str] | None:
    """(node id, leaf) for a node topic, None for anything else."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT or not parts[1]:
        return None
    return parts[1], parts[2]
