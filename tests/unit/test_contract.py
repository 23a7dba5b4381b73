"""The published contract documents match the models they are generated from."""

from __future__ import annotations

from pathlib import Path

import yaml

from contract import asyncapi, topics
from contract.commands import COMMANDS
from contract.payloads import Ack, Alert

ROOT = Path(__file__).resolve().parents[2]


def test_the_asyncapi_document_in_docs_is_current() -> None:
    published = yaml.safe_load((ROOT / "docs" / "mqtt-api.asyncapi.yaml").read_text())
    assert published == asyncapi.document(), "run `make contract`"


def test_every_channel_has_a_schema_and_an_operation() -> None:
    doc = asyncapi.document()
    assert doc["asyncapi"] == "3.0.0"
    leaves = [leaf for leaf in (*topics.NODE_TO_HUB, *topics.HUB_TO_NODE) if leaf != "cmd"]
    leaves += [f"cmd/{name}" for name in COMMANDS] + ["response/{requester}"]
    addresses = {c["address"]: key for key, c in doc["channels"].items()}
    assert len(addresses) == len(leaves)
    for leaf in leaves:
        key = addresses[f"poles/{{node}}/{leaf}"]
        ops = [o for o in doc["operations"].values() if o["channel"]["$ref"] == f"#/channels/{key}"]
        assert len(ops) == 1
    for name in ("Alert", "Ack", "Status", "Heartbeat", "Location", "Response", "ConfigSet",
                 "ClipRequest", "Selftest", "Reboot", "TelemetryInterval"):
        assert name in doc["components"]["schemas"]


def test_topics_parse_back() -> None:
    t = topics.NodeTopics("zhytomyr-0100")
    assert topics.parse(t.alert) == ("zhytomyr-0100", "alert")
    assert topics.parse("poles/x/y/z") is None
    assert topics.parse(t.cmd("config.set")) == ("zhytomyr-0100", "cmd/config.set")
    assert topics.parse(t.response + "/hub-7") == ("zhytomyr-0100", "response/hub-7")
    assert t.is_response_topic(t.response) and t.is_response_topic(t.response + "/hub-7")
    for foreign in ("poles/other/response", t.response + "/a/b", t.response + "/+",
                    t.response + "/", t.alert, t.response + "x"):
        assert not t.is_response_topic(foreign), foreign
    assert topics.parse("other/x/alert") is None
    assert "poles/+/alert" in topics.hub_subscriptions()


def test_payload_models_refuse_unknown_fields_and_bad_ids() -> None:
    ok = Ack.model_validate({"alert_id": "01890a5d-ac96-774b-bcce-b302099a8057",
                             "time": "2026-11-21T12:00:00Z"})
    assert ok.by == "hub"
    for bad in ({"alert_id": "nope", "time": "2026-11-21T12:00:00Z"},
                {"alert_id": ok.alert_id, "time": "2026-11-21T12:00:00"},  # no timezone
                {"alert_id": ok.alert_id, "time": "2026-11-21T12:00:00Z", "extra": 1}):
        try:
            Ack.model_validate(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
    assert "seq" in Alert.model_fields
