"""The one topic builder. Every topic of a node lives under `poles/<node-id>/`.

node → hub: status (retained, last will), alert (QoS 1), telemetry (heartbeat, QoS 1),
            event (vision, QoS 1), response (to commands, QoS 1; or an MQTT 5 response
            topic under response/)
hub → node: ack (QoS 1), cmd/<name> (commands, QoS 1)
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "poles"

NODE_TO_HUB = ("status", "alert", "telemetry", "event", "response")
HUB_TO_NODE = ("ack", "cmd")


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

    def cmd(self, name: str) -> str:
        return self._t(f"cmd/{name}")

    @property
    def commands(self) -> str:
        """The subscription for every command to this node."""
        return self._t("cmd/+")

    @property
    def response(self) -> str:
        return self._t("response")

    def is_response_topic(self, topic: str) -> bool:
        """Whether a requester's MQTT 5 response topic is one this node may answer on:
        its response topic or one level under it (the broker's ACL allows no other)."""
        base = self.response
        if topic == base:
            return True
        rest = topic.removeprefix(base + "/")
        return rest != topic and bool(rest) and not any(c in rest for c in "/+#\0")


def hub_subscriptions() -> list[str]:
    """What the hub subscribes to, for every node at once."""
    return [f"{ROOT}/+/{leaf}" for leaf in NODE_TO_HUB] + [f"{ROOT}/+/response/+"]


def parse(topic: str) -> tuple[str, str] | None:
    """(node id, leaf) for a node topic, None for anything else. The leaf of a command is
    `cmd/<name>`, of an MQTT 5 response topic `response/<rest>`."""
    parts = topic.split("/", 2)
    if len(parts) != 3 or parts[0] != ROOT or not parts[1] or not parts[2]:
        return None
    leaf = parts[2]
    head, _, rest = leaf.partition("/")
    if rest and head not in ("cmd", "response"):
        return None
    return parts[1], leaf
