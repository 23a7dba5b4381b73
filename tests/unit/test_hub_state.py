"""What the hub knows, from the messages it receives: alerts once however often they come,
acks for every copy, gaps in a pole's sequence, and garbage counted but never fatal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from edge.contract.payloads import (
    Ack,
    Alert,
    AlertKind,
    Heartbeat,
    LinkStats,
    Location,
    OutboxStats,
    Status,
)
from edge.contract.topics import NodeTopics
from edge.hub.state import GARBAGE_KEPT, HubEvent, HubState, percentile
from edge.ids import uuid7

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
        link=LinkStats(connects=3, disconnects=2, connected_since=T0), inputs={"door": False},
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
