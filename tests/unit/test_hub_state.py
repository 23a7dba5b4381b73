"""What the hub knows, from the messages it receives: alerts once however often they come,
acks for every copy, gaps in a pole's sequence, garbage counted but never fatal, and the
objects a pole's cameras tracked, told once per change however often a message arrives;
each pole's health verdict and the hardware in its last heartbeat."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from contract.ids import uuid7
from contract.payloads import (
    Ack,
    Alert,
    AlertKind,
    CameraStats,
    Event,
    EventPhase,
    Heartbeat,
    LinkStats,
    Location,
    OutboxStats,
    Status,
)
from contract.pole import InputStats, OutputStats, PtzStats, SensorStats
from contract.topics import NodeTopics
from hub import objects as hub_objects
from hub import state as hub_state
from hub.state import GARBAGE_KEPT, HubEvent, HubState, duration, percentile

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLE = NodeTopics("pole-1")


def make_alert(seq: int, node: str = "pole-1", *, raised: datetime = T0) -> Alert:
    return Alert(
        id=uuid7(), seq=seq, node=node, kind=AlertKind.CALL, source="call_button", time=raised,
        clock_synced=True, site="Main St 1", location=Location(lat=52.5, lon=13.4),
    )


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_a_new_alert_asks_for_an_ack_and_is_pending_until_acked() -> None:
    s = HubState()
    a = make_alert(1)
    assert s.receive(POLE.alert, a.to_bytes(), at(40)) == [a.id]
    rec = s.alert(a.id)
    assert rec is not None
    assert (rec.node, rec.seq, rec.kind, rec.source) == ("pole-1", 1, "call", "call_button")
    assert rec.latency_ms == pytest.approx(40)
    assert [p.alert_id for p in s.pending()] == [a.id]

    assert s.mark_acked(a.id, at(55))
    rec = s.alert(a.id)
    assert rec is not None and rec.acked_at == at(55)
    assert rec.ack_latency_ms == pytest.approx(15)
    assert s.pending() == []


def test_a_call_received_twice_is_one_alert_and_both_copies_are_acked() -> None:
    s = HubState()
    a = make_alert(1)
    assert s.receive(POLE.alert, a.to_bytes(), at(10)) == [a.id]
    assert s.receive(POLE.alert, a.to_bytes(), at(900)) == [a.id]
    rec = s.alert(a.id)
    assert rec is not None and rec.copies == 2 and rec.duplicates == 1
    assert rec.received_at == at(10)  # latency is measured on the first copy
    summary = s.summary()
    assert (summary["alerts_unique"], summary["copies"], summary["duplicates"]) == (1, 2, 1)


def test_a_duplicate_of_an_acked_alert_is_acked_again_because_our_ack_may_have_been_lost() -> None:
    s = HubState()
    a = make_alert(1)
    s.receive(POLE.alert, a.to_bytes(), at(10))
    s.mark_acked(a.id, at(20))
    assert s.receive(POLE.alert, a.to_bytes(), at(30_000)) == [a.id]
    s.mark_acked(a.id, at(30_010))
    rec = s.alert(a.id)
    assert rec is not None and rec.acked_at == at(20)  # the first ack time is kept
    assert s.summary()["acked"] == 1


def test_unknown_alert_cannot_be_marked_acked() -> None:
    assert not HubState().mark_acked(uuid7(), T0)


def test_missing_sequence_numbers_are_counted_until_they_arrive() -> None:
    s = HubState()
    for seq in (1, 2, 5):
        s.receive(POLE.alert, make_alert(seq).to_bytes(), T0)
    assert s.nodes()[0].seq_missing == 2  # 3 and 4
    s.receive(POLE.alert, make_alert(3).to_bytes(), T0)
    assert s.nodes()[0].seq_missing == 1
    s.receive(POLE.alert, make_alert(4).to_bytes(), T0)
    assert s.summary()["seq_missing"] == 0


def test_a_console_that_joins_late_does_not_count_earlier_alerts_as_lost() -> None:
    s = HubState()
    for seq in (41, 42):
        s.receive(POLE.alert, make_alert(seq).to_bytes(), T0)
    assert s.nodes()[0].seq_missing == 0


def test_gaps_are_counted_per_node() -> None:
    s = HubState()
    s.receive(POLE.alert, make_alert(1).to_bytes(), T0)
    s.receive(NodeTopics("pole-2").alert, make_alert(7, node="pole-2").to_bytes(), T0)
    s.receive(POLE.alert, make_alert(3).to_bytes(), T0)
    assert {n.node_id: n.seq_missing for n in s.nodes()} == {"pole-1": 1, "pole-2": 0}


GARBAGE = [
    (POLE.alert, b"not json", "json"),
    (POLE.alert, b"\xff\xfe\x00", "json"),
    (POLE.alert, b"", "json"),
    (POLE.alert, b"[" * 100_000, "json"),
    (POLE.alert, b"[1, 2]", "schema"),
    (POLE.alert, b'{"v": 1}', "schema"),
    (POLE.alert, b'{"v": 2, "id": "x"}', "schema"),
    (POLE.status, b"null", "schema"),
    (POLE.telemetry, b'{"node": "pole-1"}', "schema"),
    ("poles/x/y/z", b"{}", "topic"),
    ("poles//alert", b"{}", "topic"),
    ("poles/pole-1", b"{}", "topic"),
    ("elsewhere/pole-1/alert", b"{}", "topic"),
]


def test_garbage_of_every_kind_is_counted_by_reason_and_never_raises() -> None:
    s = HubState()
    for topic, payload, _ in GARBAGE:
        assert s.receive(topic, payload, T0) == []
    counts, recent = s.garbage()
    expected: dict[str, int] = {}
    for _, _, reason in GARBAGE:
        expected[reason] = expected.get(reason, 0) + 1
    assert counts == expected
    assert len(recent) == GARBAGE_KEPT
    assert recent[-1].topic == "elsewhere/pole-1/alert" and recent[-1].reason == "topic"
    assert s.summary()["malformed"] == len(GARBAGE)
    assert s.nodes() == [] and s.alerts() == []


def test_an_alert_on_another_poles_topic_is_garbage() -> None:
    s = HubState()
    assert s.receive(NodeTopics("pole-2").alert, make_alert(1).to_bytes(), T0) == []
    counts, recent = s.garbage()
    assert counts == {"node_mismatch": 1}
    assert "pole-1" in recent[0].error


def test_huge_topics_and_errors_are_cut_for_display() -> None:
    s = HubState()
    s.receive("x" * 70_000, b"{}", T0)
    _, recent = s.garbage()
    assert len(recent[0].topic) <= 300


def test_the_hubs_own_acks_and_unknown_leaves_are_ignored_not_garbage() -> None:
    s = HubState()
    ack = Ack(alert_id=uuid7(), time=T0)
    assert s.receive(POLE.ack, ack.to_bytes(), T0) == []
    assert s.receive("poles/pole-1/video", b"\x00binary", T0) == []
    assert s.garbage() == ({}, [])
    assert s.summary()["ignored"] == 2


def test_status_and_heartbeat_describe_the_node() -> None:
    s = HubState()
    status = Status(node="pole-1", state="online", time=T0, boot="b1", version="1.2.0",
                    site="Main St 1")
    s.receive(POLE.status, status.to_bytes(), at(5))
    hb = Heartbeat(
        node="pole-1", time=T0, uptime_s=12.5, outbox=OutboxStats(pending=2, unacked=1),
        link=LinkStats(connects=3, disconnects=2, connected_since=T0),
        inputs={"door": InputStats(active=False, changes=0)},
        counters={"presses": 1},
    )
    s.receive(POLE.telemetry, hb.to_bytes(), at(7))
    (node,) = s.nodes()
    assert (node.state, node.version, node.site, node.since) == ("online", "1.2.0", "Main St 1", T0)
    assert node.heartbeat_at == at(7)
    assert (node.outbox_pending, node.outbox_unacked, node.link_connects) == (2, 1, 3)
    assert s.summary()["nodes_online"] == 1

    gone = status.model_copy(update={"state": "offline", "reason": "connection lost"})
    s.receive(POLE.status, gone.to_bytes(), at(9))
    assert s.nodes()[0].reason == "connection lost"
    assert s.summary()["nodes_online"] == 0


def test_events_report_what_happened_in_order() -> None:
    seen: list[HubEvent] = []
    s = HubState(on_event=seen.append)
    a = make_alert(1)
    s.receive(POLE.alert, a.to_bytes(), T0)
    s.receive(POLE.alert, a.to_bytes(), T0)
    s.mark_acked(a.id, T0)
    s.receive(POLE.alert, b"{", T0)
    assert [e.kind for e in seen] == ["alert", "duplicate", "acked", "garbage"]
    assert seen[0].alert_id == a.id


def test_alerts_are_listed_newest_first() -> None:
    s = HubState()
    ids = []
    for seq in (1, 2, 3):
        a = make_alert(seq)
        ids.append(a.id)
        s.receive(POLE.alert, a.to_bytes(), at(seq))
    assert [a.alert_id for a in s.alerts()] == ids[::-1]
    assert [a.alert_id for a in s.alerts(limit=2)] == ids[:0:-1]


def test_summary_latency_percentiles() -> None:
    s = HubState()
    for i in range(1, 11):  # latencies 10, 20, ... 100 ms
        a = make_alert(i)
        s.receive(POLE.alert, a.to_bytes(), at(10 * i))
        s.mark_acked(a.id, at(10 * i + 5))
    summary = s.summary()
    assert summary["latency_p50_ms"] == pytest.approx(55.0)
    assert summary["latency_p99_ms"] == pytest.approx(99.1)
    assert summary["latency_max_ms"] == pytest.approx(100.0)
    assert summary["ack_latency_max_ms"] == pytest.approx(5.0)
    assert summary["pending"] == 0 and summary["acked"] == 10


def test_summary_without_alerts_has_no_latencies() -> None:
    summary = HubState().summary()
    assert summary["latency_p50_ms"] is None and summary["alerts_unique"] == 0


def test_percentile() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_many_threads_receiving_at_once_lose_no_count() -> None:
    s = HubState()
    alerts = [make_alert(i) for i in range(1, 51)]

    def feed() -> None:
        for a in alerts:
            s.receive(POLE.alert, a.to_bytes(), T0)
            s.receive(POLE.alert, b"junk", T0)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = s.summary()
    assert (summary["alerts_unique"], summary["copies"], summary["malformed"]) == (50, 200, 200)


# --- vision: tracked objects and camera stats ---


def make_event(
    event_id: str, phase: str, seconds: float, *, node: str = "pole-1", track: int = 12,
    label: str = "person", zones: tuple[str, ...] = (), entered: tuple[str, ...] = (),
    left: tuple[str, ...] = (), loitering: tuple[str, ...] = (), stationary: bool = False,
    snapshot: str | None = None,
) -> Event:
    """One message of an object first seen at T0, sent `seconds` later."""
    return Event(
        id=event_id, seq=1, node=node, camera="street", phase=EventPhase(phase), track=track,
        label=label, score=0.81, box=(0.1, 0.2, 0.3, 0.6), zones=list(zones),
        entered=list(entered), left=list(left), dwell_s=dict.fromkeys(zones, seconds),
        loitering=list(loitering), stationary=stationary, started=T0,
        time=T0 + timedelta(seconds=seconds), snapshot=snapshot,
    )


def send(s: HubState, ev: Event) -> list[str]:
    return s.receive(NodeTopics(ev.node).event, ev.to_bytes(), ev.time + timedelta(seconds=0.2))


def make_camera(online: bool = True, restarts: int = 0) -> CameraStats:
    return CameraStats(
        online=online, reason="" if online else "no frames", capture_fps=15.0,
        processed_fps=5.0, skipped_frames=300, inferences_per_frame=1.2, inference_ms=38.0,
        events_per_min=2.0, restarts={"camera": restarts, "detection": 0},
    )


def make_heartbeat(cameras: dict[str, CameraStats], node: str = "pole-1") -> Heartbeat:
    return Heartbeat(
        node=node, time=T0, uptime_s=60, outbox=OutboxStats(pending=0, unacked=0),
        link=LinkStats(connects=1, disconnects=0, connected_since=T0), inputs={},
        counters={}, cameras=cameras,
    )


def test_a_person_loitering_at_the_school_gate_is_one_object_told_in_a_few_lines() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    eid = uuid7()
    assert send(s, make_event(eid, "new", 0)) == []  # events are never acked
    send(s, make_event(eid, "update", 4, zones=("school_gate",), entered=("school_gate",)))
    send(s, make_event(eid, "update", 34, zones=("school_gate",)))  # periodic: nothing new
    send(s, make_event(eid, "update", 64, zones=("school_gate",), loitering=("school_gate",)))
    send(s, make_event(eid, "update", 70, zones=("school_gate",), loitering=("school_gate",),
                       stationary=True))
    send(s, make_event(eid, "end", 95, left=("school_gate",), loitering=("school_gate",),
                       snapshot=f"street/{eid}.jpg"))

    assert [(e.kind, e.text) for e in lines] == [
        ("object_new", "pole-1 street: person #12 appeared"),
        ("object_upd", "pole-1 street: person #12 entered school_gate"),
        ("object_upd", "pole-1 street: person #12 loitering in school_gate"),
        ("object_upd", "pole-1 street: person #12 stationary"),
        ("object_end", "pole-1 street: person #12 gone after 1m35s"),
    ]
    assert all(e.node == "pole-1" for e in lines)
    rec = s.object(eid)
    assert rec is not None
    assert (rec.node, rec.camera, rec.label, rec.track) == ("pole-1", "street", "person", 12)
    assert (rec.first_phase, rec.last_phase, rec.open) == ("new", "end", False)
    assert rec.zones == () and rec.zones_seen == ("school_gate",)
    assert rec.loitered == ("school_gate",) and rec.stationary is False
    assert (rec.started, rec.last_time) == (T0, T0 + timedelta(seconds=95))
    assert rec.seen_s == 95
    assert rec.snapshot == f"street/{eid}.jpg"
    assert (rec.messages, rec.duplicates) == (6, 0)
    assert rec.received_at == T0 + timedelta(seconds=0.2)  # the hub's clock, first message


def test_a_new_object_in_a_zone_says_where_it_appeared_and_all_changes_fit_one_line() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    eid = uuid7()
    send(s, make_event(eid, "new", 0, track=3, label="car", zones=("road", "crossing")))
    send(s, make_event(eid, "update", 2, track=3, label="car", zones=("bus_stop",),
                       entered=("bus_stop",), left=("road", "crossing"),
                       loitering=("bus_stop",), stationary=True))
    assert [e.text for e in lines] == [
        "pole-1 street: car #3 appeared in road, crossing",
        "pole-1 street: car #3 entered bus_stop; left road, crossing; "
        "loitering in bus_stop; stationary",
    ]
    rec = s.object(eid)
    assert rec is not None and rec.zones_seen == ("road", "crossing", "bus_stop")


def test_a_redelivered_event_is_counted_not_applied_twice() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    eid = uuid7()
    new = make_event(eid, "new", 0, zones=("school_gate",))
    entered = make_event(eid, "update", 5, zones=("school_gate", "road"), entered=("road",))
    for ev in (new, new, entered, new, entered):  # QoS 1 may resend after a reconnect
        send(s, ev)
    assert [e.kind for e in lines] == ["object_new", "object_upd"]
    rec = s.object(eid)
    assert rec is not None and (rec.messages, rec.duplicates) == (5, 3)
    assert rec.last_phase == "update" and rec.zones == ("school_gate", "road")
    summary = s.summary()
    assert (summary["events_received"], summary["event_duplicates"]) == (5, 3)
    assert (summary["objects_seen"], summary["objects_open"]) == (1, 1)


def test_a_late_update_does_not_reopen_an_object_that_ended() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    eid = uuid7()
    send(s, make_event(eid, "new", 0))
    send(s, make_event(eid, "end", 30))
    send(s, make_event(eid, "update", 10, zones=("road",), entered=("road",), stationary=True))
    rec = s.object(eid)
    assert rec is not None
    assert (rec.last_phase, rec.open, rec.stationary) == ("end", False, False)
    assert rec.last_time == T0 + timedelta(seconds=30)
    assert rec.zones_seen == ("road",)  # where it went still counts
    assert rec.messages == 3 and rec.duplicates == 0
    assert [e.kind for e in lines] == ["object_new", "object_end"]


def test_a_console_that_joins_late_keeps_an_object_first_heard_mid_story() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    eid = uuid7()
    send(s, make_event(eid, "update", 40, zones=("road",), loitering=("road",)))
    rec = s.object(eid)
    assert rec is not None and (rec.first_phase, rec.open, rec.loitered) == (
        "update", True, ("road",))
    assert [e.text for e in lines] == ["pole-1 street: person #12 loitering in road"]
    send(s, make_event(eid, "end", 50))
    assert lines[-1].text == "pole-1 street: person #12 gone after 50s"  # from when it started


def test_summary_counts_objects_by_label_open_and_loitering() -> None:
    s = HubState()
    people = [uuid7() for _ in range(3)]
    car = uuid7()
    for i, eid in enumerate(people):
        send(s, make_event(eid, "new", i, track=i))
    send(s, make_event(car, "new", 0, track=9, label="car"))
    send(s, make_event(people[0], "update", 70, loitering=("school_gate",),
                       zones=("school_gate",)))
    send(s, make_event(people[0], "end", 80))  # ended: it still loitered
    send(s, make_event(people[1], "end", 5))
    summary = s.summary()
    assert summary["events_received"] == 7 and summary["event_duplicates"] == 0
    assert summary["objects_seen"] == 4
    assert summary["objects_open"] == 2
    assert summary["objects_by_label"] == {"car": 1, "person": 3}
    assert summary["loitering"] == 1
    assert summary["objects_forgotten"] == 0


def test_summary_without_events_or_cameras_counts_zero() -> None:
    summary = HubState().summary()
    assert (summary["events_received"], summary["objects_seen"], summary["loitering"]) == (0, 0, 0)
    assert summary["objects_by_label"] == {}
    assert (summary["cameras_online"], summary["cameras_offline"]) == (0, 0)
    assert summary["cameras_by_node"] == {}


def test_objects_are_listed_newest_first_across_nodes() -> None:
    s = HubState()
    order = [("pole-1", uuid7()), ("pole-2", uuid7()), ("pole-1", uuid7()), ("pole-2", uuid7())]
    for i, (node, eid) in enumerate(order):
        send(s, make_event(eid, "new", i, node=node, track=i))
    newest = [eid for _, eid in reversed(order)]
    assert [o.event_id for o in s.objects()] == newest
    assert [o.event_id for o in s.objects(limit=3)] == newest[:3]
    assert [o.event_id for o in s.objects(node="pole-2")] == [order[3][1], order[1][1]]
    assert s.objects(node="pole-9") == []
    assert s.object(uuid7()) is None


def test_readers_get_copies_of_objects_and_cameras() -> None:
    s = HubState()
    eid = uuid7()
    send(s, make_event(eid, "new", 0))
    s.receive(POLE.telemetry, make_heartbeat({"street": make_camera()}).to_bytes(), T0)
    copy = s.objects()[0]
    copy.last_phase = "end"
    s.nodes()[0].cameras.clear()
    rec = s.object(eid)
    assert rec is not None and rec.open
    assert list(s.nodes()[0].cameras) == ["street"]


def test_objects_are_bounded_per_node_so_a_busy_street_cannot_push_out_a_quiet_pole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_objects, "MAX_OBJECTS", 3)
    s = HubState()
    quiet = uuid7()
    send(s, make_event(quiet, "new", 0, node="pole-2"))
    busy = [uuid7() for _ in range(5)]
    for i, eid in enumerate(busy):
        send(s, make_event(eid, "new", i, track=i))
    assert [o.event_id for o in s.objects(node="pole-1")] == busy[:1:-1]  # the last three
    assert s.object(busy[0]) is None and s.object(quiet) is not None
    summary = s.summary()
    assert (summary["objects_seen"], summary["objects_forgotten"]) == (4, 2)
    assert summary["events_received"] == 6


def test_a_forgotten_object_heard_again_is_kept_again_without_raising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_objects, "MAX_OBJECTS", 1)
    s = HubState()
    first, second = uuid7(), uuid7()
    send(s, make_event(first, "new", 0))
    send(s, make_event(second, "new", 1))
    send(s, make_event(first, "end", 9))
    rec = s.object(first)
    assert rec is not None and (rec.first_phase, rec.last_phase, rec.messages) == ("end", "end", 1)
    assert s.summary()["objects_forgotten"] == 2


EVENT_GARBAGE = [
    (b"{not json", "json"),
    (b'{"v": 1, "id": "x"}', "schema"),
    (make_event(uuid7(), "new", 0).to_bytes().replace(b'"new"', b'"born"'), "schema"),
    (make_event(uuid7(), "new", 0).to_bytes().replace(b'"score":0.81', b'"score":7'), "schema"),
    (make_event(uuid7(), "new", 0).to_bytes().replace(b'"v":1,', b'"v":1,"colour":"red",'),
     "schema"),
    (make_event(uuid7(), "new", 0, node="pole-2").to_bytes(), "node_mismatch"),
]


def test_malformed_events_are_garbage_and_make_no_object() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    for payload, _ in EVENT_GARBAGE:
        assert s.receive(POLE.event, payload, T0) == []
    counts, _ = s.garbage()
    assert counts == {"json": 1, "schema": 4, "node_mismatch": 1}
    assert s.objects() == []
    assert {e.kind for e in lines} == {"garbage"}
    summary = s.summary()
    assert (summary["events_received"], summary["objects_seen"]) == (0, 0)
    assert summary["ignored"] == 0  # event is a leaf the hub reads now


def test_a_hostile_node_cannot_make_a_huge_log_line() -> None:
    lines: list[HubEvent] = []
    s = HubState(on_event=lines.append)
    send(s, make_event(uuid7(), "new", 0, zones=tuple(f"zone-{i}" for i in range(10_000))))
    assert len(lines[0].text) <= hub_state.TEXT_LIMIT


def test_heartbeats_keep_each_cameras_latest_stats() -> None:
    s = HubState()
    s.receive(POLE.telemetry, make_heartbeat(
        {"street": make_camera(), "gate": make_camera(online=False, restarts=2)}).to_bytes(), T0)
    s.receive(NodeTopics("pole-2").telemetry,
              make_heartbeat({"yard": make_camera()}, node="pole-2").to_bytes(), T0)
    by_node = {n.node_id: n.cameras for n in s.nodes()}
    assert by_node["pole-1"]["gate"] == make_camera(online=False, restarts=2)
    assert by_node["pole-1"]["street"].processed_fps == 5.0
    summary = s.summary()
    assert (summary["cameras_online"], summary["cameras_offline"]) == (2, 1)
    assert summary["cameras_by_node"] == {
        "pole-1": {"online": 1, "offline": 1}, "pole-2": {"online": 1, "offline": 0}}

    # the gate camera came back and the street camera was removed from the pole's config
    s.receive(POLE.telemetry, make_heartbeat({"gate": make_camera()}).to_bytes(), T0)
    assert s.nodes()[0].cameras == {"gate": make_camera()}
    assert s.summary()["cameras_by_node"]["pole-1"] == {"online": 1, "offline": 0}


def test_a_heartbeat_from_an_alarm_only_pole_has_no_cameras() -> None:
    s = HubState()
    s.receive(POLE.telemetry, make_heartbeat({}).to_bytes(), T0)
    assert s.nodes()[0].cameras == {}
    assert s.summary()["cameras_by_node"] == {}


def test_duration_reads_like_a_person_would_say_it() -> None:
    assert [duration(x) for x in (-3, 0, 59.9, 60, 95, 3599, 3600, 3720)] == [
        "0s", "0s", "59s", "1m00s", "1m35s", "59m59s", "1h00m", "1h02m"]


def pole_heartbeat(*, on_battery: bool = False,
                   ptz_mode: Literal["patrol", "alert"] = "patrol") -> Heartbeat:
    return Heartbeat(
        node="pole-1", time=T0, uptime_s=60, outbox=OutboxStats(pending=0, unacked=0),
        link=LinkStats(connects=1, disconnects=0, connected_since=T0), counters={},
        inputs={"door": InputStats(active=False, changes=1),
                "ups_on_battery": InputStats(active=on_battery, changes=int(on_battery))},
        outputs={"floodlight": OutputStats(on=True, activations=1, off_in_s=5.0)},
        ptz=PtzStats(mode=ptz_mode, preset=10 if ptz_mode == "alert" else 2, frames_sent=9,
                     errors=0),
        sensors={"cabinet_temperature": SensorStats(value=21.5, unit="°C", ok=True)},
    )


def test_the_hub_keeps_the_hardware_of_each_poles_last_heartbeat() -> None:
    s = HubState()
    s.receive(POLE.telemetry, pole_heartbeat().to_bytes(), T0)
    hw = s.nodes()[0].hardware
    assert hw is not None
    assert hw.inputs["door"] == InputStats(active=False, changes=1)
    assert hw.outputs["floodlight"].off_in_s == 5.0
    assert hw.ptz is not None and (hw.ptz.mode, hw.ptz.preset) == ("patrol", 2)
    assert hw.sensors["cabinet_temperature"].value == 21.5 and hw.gps is None

    # a call turned the head and the mains failed: the next heartbeat replaces it all
    s.receive(POLE.telemetry, pole_heartbeat(on_battery=True, ptz_mode="alert").to_bytes(), T0)
    hw = s.nodes()[0].hardware
    assert hw is not None and hw.inputs["ups_on_battery"].active
    assert hw.ptz is not None and (hw.ptz.mode, hw.ptz.preset) == ("alert", 10)

    # readers get copies: changing one changes nothing at the hub
    hw.inputs.clear()
    again = s.nodes()[0].hardware
    assert again is not None and again.inputs


def test_an_alarm_only_pole_has_no_hardware_to_show() -> None:
    s = HubState()
    s.receive(POLE.telemetry, make_heartbeat({}).to_bytes(), T0)
    assert s.nodes()[0].hardware is None


def test_a_change_of_health_is_told_as_one_health_line_and_kept_with_its_reasons() -> None:
    seen: list[HubEvent] = []
    s = HubState(on_event=seen.append)
    status = Status(node="pole-1", state="online", time=T0, boot="b1", version="1.2.0",
                    site="Main St 1", health="degraded", reasons=["clock not synchronised"])
    s.receive(POLE.status, status.to_bytes(), at(1))
    on_battery = status.model_copy(update={"reasons": ["on battery (ups_on_battery)"]})
    s.receive(POLE.status, on_battery.to_bytes(), at(2))
    node = s.nodes()[0]
    assert (node.health, node.reasons) == ("degraded", ("on battery (ups_on_battery)",))
    s.receive(POLE.status, status.model_copy(update={"health": "ok", "reasons": []}).to_bytes(),
              at(3))
    s.receive(POLE.status, status.model_copy(update={"state": "offline",
                                                     "reason": "shutdown"}).to_bytes(), at(4))

    assert [(e.kind, e.text) for e in seen] == [
        ("status", "pole-1 online, degraded: clock not synchronised, 1.2.0 at Main St 1"),
        ("health", "pole-1 degraded: on battery (ups_on_battery)"),
        ("health", "pole-1 ok"),
        ("status", "pole-1 offline (shutdown), 1.2.0 at Main St 1"),
    ]
    assert all(e.node == "pole-1" for e in seen)
