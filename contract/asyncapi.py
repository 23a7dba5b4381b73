"""Generates the AsyncAPI 3 document of the node's MQTT API from the payload models.

docs/mqtt-api.asyncapi.yaml is this function's output; a test fails when it is stale.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contract import __version__, commands, payloads, topics

# channel leaf → (payload model, node's action, QoS, retained, summary)
CHANNELS: dict[str, tuple[type[BaseModel], str, int, bool, str]] = {
    "status": (payloads.Status, "send", 1, True,
               "Online/offline; the broker sends the offline last will"),
    "alert": (payloads.Alert, "send", 1, False, "An alert from the durable outbox; dedupe by id"),
    "telemetry": (payloads.Heartbeat, "send", 1, False,
                  "Periodic heartbeat telemetry, store-and-forward (thinned in long outages)"),
    "event": (payloads.Event, "send", 1, False,
              "A tracked object from the vision pipeline: new, updates, end"),
    "response": (commands.Response, "send", 1, False,
                 "What became of a command: accepted, done (with its result), failed, "
                 "rejected, duplicate"),
    "response/{requester}": (commands.Response, "send", 1, False,
                             "The same, on the MQTT 5 response topic a command named (one "
                             "level under response/)"),
    "ack": (payloads.Ack, "receive", 1, False, "The hub acknowledges an alert"),
    **{f"cmd/{name}": (model, "receive", 1, False, (model.__doc__ or name).split("\n")[0])
       for name, model in commands.COMMANDS.items()},
}


def _key(leaf: str) -> str:
    """An AsyncAPI component key for a channel leaf (letters, digits, '.', '_', '-')."""
    return leaf.replace("/{requester}", "_to").replace("/", "_")


def document() -> dict[str, Any]:
    mode: Literal["validation"] = "validation"
    models = [(model, mode) for model, *_ in CHANNELS.values()]
    _, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = top["$defs"]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for leaf, (model, action, qos, retain, summary) in CHANNELS.items():
        name = model.__name__
        messages.setdefault(name, {
            "name": name,
            "title": name,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        })
        key = _key(leaf)
        parameters = {"node": {"description": "The node id (see NodeId)"}}
        if "{requester}" in leaf:
            parameters["requester"] = {"description": "Chosen by the requester"}
        channels[key] = {
            "address": f"{topics.ROOT}/{{node}}/{leaf}",
            "parameters": parameters,
            "messages": {key: {"$ref": f"#/components/messages/{name}"}},
        }
        verb = "publish" if action == "send" else "receive"
        operations[f"{verb}_{key}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
            "bindings": {"mqtt": {"qos": qos, "retain": retain, "bindingVersion": "0.2.0"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "safecity-edge node MQTT API",
            "version": __version__,
            "description": (
                "What a Safe City pole controller publishes to the city hub and what it "
                "receives. Generated from contract/payloads.py; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "hub": {
                "host": "hub.example:8883",
                "protocol": "mqtt",
                "protocolVersion": "5",
                "description": "The city hub's broker; mutual TLS, one certificate per node",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)
