"""The outbox on disk: what was committed survives, sequence numbers never repeat."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from contract.ids import uuid7
from contract.payloads import Alert, AlertKind, Location
from edge import clock
from edge.call.outbox import Outbox, OutboxError

TOPIC = "poles/test-0001/alert"


def make_alert(box: Outbox, kind: AlertKind = AlertKind.CALL) -> Alert:
    return Alert(
        id=uuid7(), seq=box.next_seq(), node="test-0001", kind=kind, source="call_button",
        time=clock.now(), clock_synced=False, site="Test", location=Location(lat=50, lon=30),
    )


def test_an_alert_added_is_there_after_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    alert = make_alert(box)
    box.add(alert, TOPIC)
    box.close()  # a kill -9 is exercised in the integration tests; here: a plain reopen
    box = Outbox(tmp_path / "o.sqlite")
    [row] = box.undelivered()
    assert row.id == alert.id and row.seq == alert.seq
    assert Alert.model_validate_json(row.payload) == alert


def test_sequence_numbers_continue_across_restarts_and_pruning(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = []
    for _ in range(3):
        a = make_alert(box)
        box.add(a, TOPIC)
        box.mark_delivered(a.seq)
        box.mark_acked(a.id)
        seqs.append(a.seq)
    assert box.prune(time.time() + 365 * 86400) == 3  # everything is past retention
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert box.next_seq() == seqs[-1] + 1 == 4


def test_delivery_and_ack_move_an_alert_through_its_states(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    a, b = make_alert(box), make_alert(box)
    box.add(a, TOPIC)
    box.add(b, TOPIC)
    assert box.counts() == (2, 0)
    box.mark_delivered(a.seq)
    assert [r.seq for r in box.undelivered()] == [b.seq]
    assert box.counts() == (1, 1)
    assert [r.seq for r in box.unacked()] == [a.seq]
    assert box.mark_acked(a.id) is True
    assert box.mark_acked(uuid7()) is False  # an ack for an alert this node never raised
    assert box.counts() == (1, 0)
    # an ack that overtakes the PUBACK also counts as delivery
    assert box.mark_acked(b.id) is True
    assert box.counts() == (0, 0)


def test_call_state_tracks_unacknowledged_calls_only(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert box.call_state() == (None, None)
    tamper = make_alert(box, AlertKind.INPUT)
    box.add(tamper, TOPIC)
    assert box.call_state() == (None, None)
    call = make_alert(box)
    box.add(call, TOPIC)
    oldest, last_ack = box.call_state()
    assert oldest == pytest.approx(call.time.timestamp()) and last_ack is None
    box.mark_acked(call.id)
    oldest, last_ack = box.call_state()
    assert oldest is None and last_ack is not None


def test_a_duplicate_id_is_refused_not_stored_twice(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    a = make_alert(box)
    box.add(a, TOPIC)
    with pytest.raises(OutboxError):
        box.add(a, TOPIC)
    assert box.counts() == (1, 0)


def test_a_locked_database_fails_the_probe_and_the_write_with_a_clear_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, busy_timeout_s=0.2)
    box.probe()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutboxError, match="not writable"):
            box.probe()
        with pytest.raises(OutboxError, match="cannot write outbox"):
            box.add(make_alert(box), TOPIC)
    finally:
        other.execute("ROLLBACK")
        other.close()
    box.probe()


def test_an_unopenable_outbox_says_where(tmp_path: Path) -> None:
    (tmp_path / "o.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(tmp_path / "o.sqlite")


def refusing(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock: the card refuses the outbox's writes."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def unsaved(box: Outbox, path: Path, n: int) -> list[Alert]:
    """n alerts raised while the outbox cannot be written: they leave from memory."""
    other = refusing(path)
    try:
        alerts = [make_alert(box) for _ in range(n)]
        for a in alerts:
            with pytest.raises(OutboxError):
                box.add(a, TOPIC)
    finally:
        other.execute("ROLLBACK")
        other.close()
    return alerts


def test_a_number_sent_from_memory_is_not_given_again_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, busy_timeout_s=0.05)
    box.add(make_alert(box), TOPIC)
    sent = unsaved(box, path, 2)
    # No close: the process died. The next start numbers past what left from memory.
    again = Outbox(path)
    assert again.next_seq() > max(a.seq for a in sent)


def test_a_clean_stop_with_alerts_unsaved_leaves_no_gap_and_no_reuse(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, busy_timeout_s=0.05)
    box.add(make_alert(box), TOPIC)
    sent = unsaved(box, path, 2)
    box.close()
    assert Outbox(path).next_seq() == sent[-1].seq + 1 == 4


def test_once_the_table_has_the_last_number_again_a_crash_leaves_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, busy_timeout_s=0.05)
    [a] = unsaved(box, path, 1)
    box.add(a, TOPIC)  # written once the disk allows, as the alarm path does
    assert Outbox(path).next_seq() == a.seq + 1 == 2
