"""The hub's book of clip requests, fed the poles' real Response JSON: accepted then done (or
failed, rejected) per request id, answers matched by id or by the echoed correlation data,
redelivered and late answers changing nothing, strangers' answers and garbage counted; and,
through a real broker, the request a pole receives: on its command topic, with a response
topic under its own and the request id as correlation data."""

from __future__ import annotations

import io
import queue
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console

from contract.commands import ClipRequest, Response
from contract.topics import NodeTopics
from devkit.localbroker import LocalBroker
from hub import view
from hub.client import HubConsole
from hub.state import HubEvent, HubState
from tests.support.waiting import wait_for

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLE = NodeTopics("pole-1")
URL = "http://127.0.0.1:8000/pole-1-street-call1.mp4"


def request(request_id: str = "req-1", camera: str = "street") -> ClipRequest:
    return ClipRequest(id=request_id, issued=T0, camera=camera, start=T0,
                       end=T0 + timedelta(seconds=12), upload_url=URL)


def clip_json() -> dict[str, Any]:
    return {"bytes": 1_400_000, "sha256": "ab12" * 16, "start": "2025-03-01T11:59:59.900Z",
            "end": "2025-03-01T12:00:12.000Z", "gaps": [], "uploaded_to": URL,
            "manifest": {"node": "pole-1", "camera": "street", "segments": []}}


def answer(status: str, request_id: str = "req-1", **more: Any) -> bytes:
    """A pole's response, as the JSON bytes that arrive on its response topic."""
    return Response.model_validate(
        {"id": request_id, "command": "clip.request", "status": status, **more}).to_bytes()


def state_with_request(events: list[HubEvent] | None = None) -> HubState:
    s = HubState(on_event=events.append if events is not None else None)
    s.clips.requested("pole-1", request(), T0)
    return s


def test_a_request_is_accepted_then_done_with_its_clip() -> None:
    events: list[HubEvent] = []
    s = state_with_request(events)
    assert s.clips.get("req-1").status == "requested"  # type: ignore[union-attr]

    assert s.receive(POLE.response, answer("accepted"), T0 + timedelta(seconds=1)) == []
    assert s.clips.get("req-1").status == "accepted"  # type: ignore[union-attr]
    s.receive(POLE.response, answer("done", clip=clip_json()), T0 + timedelta(seconds=3))

    rec = s.clips.get("req-1")
    assert rec is not None and rec.status == "done" and rec.settled
    assert rec.result is not None and rec.result.bytes == 1_400_000
    assert rec.covered_s == 12.1
    assert rec.answered_at == T0 + timedelta(seconds=3) and rec.answers == 2
    assert rec.verified is None  # the hub has not checked the upload yet
    lines = [e.text for e in events if e.kind == "clip"]
    assert lines == ["pole-1 clip req-1 accepted: exporting camera street",
                     "pole-1 clip req-1 done: 12.1 s, 1.4 MB uploaded"]
    counts = s.summary()
    assert (counts["clips_requested"], counts["clips_done"], counts["clips_pending"]) == (1, 1, 0)
    assert counts["ignored"] == 0 and counts["malformed"] == 0


def test_a_failed_export_keeps_the_poles_reason() -> None:
    s = state_with_request()
    s.receive(POLE.response, answer("accepted"), T0)
    s.receive(POLE.response, answer("failed", error="no footage from camera 'street'"), T0)

    rec = s.clips.get("req-1")
    assert rec is not None and rec.status == "failed" and rec.settled
    assert rec.error == "no footage from camera 'street'" and rec.result is None
    assert s.summary()["clips_failed"] == 1


def test_a_rejection_without_an_id_is_matched_by_its_correlation_data() -> None:
    s = state_with_request()
    s.receive(POLE.response, answer("rejected", request_id="", error="not JSON"), T0,
              correlation=b"req-1")

    rec = s.clips.get("req-1")
    assert rec is not None and rec.status == "rejected" and rec.error == "not JSON"
    assert s.summary()["clip_answers_unmatched"] == 0


def test_a_redelivered_done_or_a_late_accepted_changes_nothing() -> None:
    events: list[HubEvent] = []
    s = state_with_request(events)
    s.receive(POLE.response, answer("done", clip=clip_json()), T0 + timedelta(seconds=3))
    s.receive(POLE.response, answer("done", clip=clip_json()), T0 + timedelta(seconds=9))
    s.receive(POLE.response, answer("accepted"), T0 + timedelta(seconds=9))

    rec = s.clips.get("req-1")
    assert rec is not None and rec.status == "done" and rec.answers == 3
    assert rec.answered_at == T0 + timedelta(seconds=3)
    assert len([e for e in events if e.kind == "clip"]) == 1


def test_answers_to_requests_this_console_did_not_make_are_counted_not_taken() -> None:
    events: list[HubEvent] = []
    s = state_with_request(events)
    s.receive(POLE.response, answer("done", request_id="someone-else", clip=clip_json()), T0)
    # another pole cannot answer for pole-1's request
    s.receive(NodeTopics("pole-2").response, answer("failed", error="?"), T0)

    assert s.clips.get("req-1").status == "requested"  # type: ignore[union-attr]
    assert s.summary()["clip_answers_unmatched"] == 2
    assert "a request this console did not make" in events[-1].text


def test_a_malformed_response_is_garbage_not_an_answer() -> None:
    s = state_with_request()
    s.receive(POLE.response, b"{not json", T0)
    s.receive(POLE.response, b'{"id": "req-1", "command": "clip.request", "status": "maybe"}', T0)

    counts, _ = s.garbage()
    assert counts == {"json": 1, "schema": 1}
    assert s.clips.get("req-1").status == "requested"  # type: ignore[union-attr]


def test_the_hubs_check_of_the_upload_is_kept_with_the_request() -> None:
    s = state_with_request()
    s.receive(POLE.response, answer("done", clip=clip_json()), T0)

    assert s.clips.checked("req-1", False, "the clip's video from segment x was altered") == (
        "pole-1 clip req-1 DID NOT VERIFY: the clip's video from segment x was altered")
    assert s.clips.get("req-1").problem.startswith("the clip's")  # type: ignore[union-attr]
    s.clips.checked("req-1", True)
    rec = s.clips.get("req-1")
    assert rec is not None and rec.verified is True and rec.problem == ""
    assert s.summary()["clips_verified"] == 1


def test_a_request_the_broker_refused_is_settled_as_not_sent() -> None:
    s = state_with_request()
    assert "not sent: the broker refused it" in s.clips.not_sent(
        "req-1", "the broker refused it: Not authorized", T0)
    rec = s.clips.get("req-1")
    assert rec is not None and rec.settled and rec.status == "not sent"
    assert s.summary()["clips_failed"] == 1


def test_the_console_shows_each_clip_with_its_status_size_and_verdict() -> None:
    s = state_with_request()
    s.clips.requested("pole-1", request("req-2", camera="gate"), T0)
    s.receive(POLE.response, answer("done", clip=clip_json()), T0)
    s.clips.checked("req-1", True)
    s.receive(POLE.response, answer("rejected", request_id="req-2",
                                    error="no camera 'gate' on this node"), T0)
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(
        view.render(s, [], now=T0, header="hub", notice=""))
    text = out.getvalue()

    assert "Clips" in text
    row1 = next(line for line in text.splitlines() if "req-1" in line)
    assert "street" in row1 and "12:00:00–12:00:12" in row1 and "done" in row1
    assert "1.4 MB, 12.1 s" in row1 and "yes" in row1
    row2 = next(line for line in text.splitlines() if "req-2" in line)
    assert "rejected no camera 'gate' on this node" in row2


def test_no_clips_section_before_the_first_request() -> None:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(
        view.render(HubState(), [], now=T0, header="hub", notice=""))
    assert "Clips" not in out.getvalue()


# --- on the wire ---


class PoleDesk:
    """A pole's command topic on a real broker: receives requests and answers them as the
    node's CommandDesk does, on the request's response topic with its correlation data."""

    def __init__(self, broker: LocalBroker) -> None:
        self.requests: queue.Queue[tuple[str, bytes, str, bytes]] = queue.Queue()
        self.client = broker.client("pole-1", client_id="pole-1")  # the pole's certificate
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_connect = lambda c, *_: c.subscribe(POLE.commands, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.put(True)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.get(timeout=10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        self.requests.put((msg.topic, bytes(msg.payload), getattr(props, "ResponseTopic", ""),
                           getattr(props, "CorrelationData", b"")))

    def answer(self, topic: str, payload: bytes, correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_clip_request_reaches_the_pole_and_its_answers_reach_the_console(
        broker: LocalBroker) -> None:
    pole = PoleDesk(broker)
    console = HubConsole(broker.host, broker.port, tls=broker.hub_tls)
    console.start()
    try:
        assert console.wait_ready(10)
        request_id = console.request_clip("pole-1", "street", T0, T0 + timedelta(seconds=12),
                                          URL, request_id="req-7")

        topic, payload, response_topic, correlation = pole.requests.get(timeout=10)
        assert topic == POLE.cmd("clip.request") and request_id == "req-7"
        sent = ClipRequest.model_validate_json(payload)
        assert (sent.id, sent.camera, sent.upload_url) == ("req-7", "street", URL)
        assert (sent.start, sent.end) == (T0, T0 + timedelta(seconds=12))
        assert response_topic == POLE.response and correlation == b"req-7"

        pole.answer(response_topic, answer("accepted", request_id="req-7"), correlation)
        pole.answer(response_topic, answer("done", request_id="req-7", clip=clip_json()),
                    correlation)
        rec = wait_for(lambda: (r := console.state.clips.get("req-7")) and r.settled and r,
                       what="the pole's done at the console")
        assert rec.status == "done" and rec.result.sha256 == "ab12" * 16
    finally:
        console.stop()
        pole.close()
