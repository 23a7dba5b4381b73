"""Event lifecycle: one `new` and one `end` per confirmed track of a reported label, and
`update`s only when something a dispatcher acts on changes (or the heartbeat is due)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from edge.detectors.base import Box, Detection
from edge.vision.events import EventLifecycle, VisionEvent
from edge.vision.tracker import Tracker
from edge.vision.zones import Zone, ZoneMap

FRAME = (1000, 500)
CROSSING = Zone("crossing", [(0.4, 0.5), (0.6, 0.5), (0.6, 1.0), (0.4, 1.0)], loiter_s=3.0)
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def wall(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


class Street:
    """Tracker, zones and lifecycle driven by scripted detections, as the pipeline does."""

    def __init__(self, update_interval_s: float | None = None, labels: tuple[str, ...] = (
            "person", "car")) -> None:
        self.tracker = Tracker(FRAME)
        self.zones = ZoneMap([CROSSING], FRAME)
        self.lifecycle = EventLifecycle("street", FRAME, wall, labels=labels,
                                        update_interval_s=update_interval_s)
        self.events: list[VisionEvent] = []

    def run(self, seconds: float, detections: Callable[[float], list[Detection]],
            start: float = 0.0) -> None:
        for frame in range(round(seconds * 10)):
            t = start + frame / 10
            self.tracker.predict(t)
            removed = self.tracker.update(detections(t), t)
            for track in removed:
                self.zones.forget(track.id)
            live = self.tracker.tracks
            statuses = self.zones.update(((tr.id, tr.box) for tr in live), t)
            self.events += self.lifecycle.update(live, statuses, removed, t)

    def phases(self) -> list[str]:
        return [e.phase for e in self.events]


def walker_box(t: float, speed: float = 100.0) -> Box:
    x = 250 + speed * t  # feet cross the zone (x 400..600) between t=1.5 and t=3.5
    return (x - 20, 300.0, x + 20, 400.0)


def walking(t: float) -> list[Detection]:
    return [Detection("person", 1, 0.8, walker_box(t))] if t < 6.0 else []


def test_a_person_crossing_a_zone_gives_new_enter_leave_end_under_one_id() -> None:
    street = Street()
    street.run(8.0, walking)
    assert street.phases() == ["new", "update", "update", "end"]
    new, entered, left, end = street.events
    assert len({e.event_id for e in street.events}) == 1
    assert {e.track_id for e in street.events} == {new.track_id}
    assert entered.entered == ("crossing",) and entered.zones == ("crossing",)
    assert left.left == ("crossing",) and left.zones == ()
    assert new.started_at == wall(0.0) and end.time > left.time
    x1, _, x2, _ = new.box
    assert 0 <= x1 < x2 <= 1  # normalised
    assert all(e.label == "person" and e.camera == "street" for e in street.events)


def test_nothing_is_said_about_a_one_frame_false_alarm_or_an_unreported_label() -> None:
    street = Street()
    street.run(1.0, lambda t: [Detection("person", 1, 0.6, (10, 10, 40, 90))] if t == 0 else [])
    street.run(3.0, lambda t: [Detection("dog", 18, 0.9, (500, 300, 560, 350))], start=1.0)
    assert street.events == []


def test_standing_in_a_zone_gives_one_update_for_loitering_and_stillness_then_nothing() -> None:
    street = Street()
    street.run(12.0, lambda t: [Detection("person", 1, 0.9, (480.0, 300.0, 520.0, 400.0))])
    # Both change on the same frame (3 s unmoved, 3 s in the zone): one update says both.
    new, both = street.events
    assert street.phases() == ["new", "update"]
    assert new.entered == ("crossing",)  # entered on its first frame, before confirmation
    assert not new.stationary and new.loitering == ()
    assert both.stationary and both.loitering == ("crossing",) and both.entered == ()
    assert (both.time - T0).total_seconds() == 3.0 and both.dwell_s["crossing"] == 3.0


def test_the_heartbeat_is_at_most_one_update_per_interval() -> None:
    street = Street(update_interval_s=5.0)
    still = (100.0, 100.0, 140.0, 200.0)  # outside the zone: nothing changes but stationary
    street.run(21.0, lambda t: [Detection("person", 1, 0.9, still)])
    times = [(e.time - T0).total_seconds() for e in street.events]
    # Confirmed at 0.1 s, stationary at 3 s (a change), then one heartbeat per 5 s of quiet.
    assert street.phases() == ["new", "update", "update", "update", "update"]
    assert times == [0.1, 3.0, 8.0, 13.0, 18.0]


def test_close_ends_every_open_event_once() -> None:
    street = Street()
    two = [Detection("person", 1, 0.8, (100.0, 100.0, 140.0, 200.0)),
           Detection("car", 3, 0.8, (600.0, 300.0, 800.0, 400.0))]
    street.run(1.0, lambda t: two)
    ended = street.lifecycle.close(street.tracker.tracks, 1.0)
    assert sorted(e.label for e in ended) == ["car", "person"]
    assert {e.phase for e in ended} == {"end"}
    assert {e.event_id for e in ended} == {e.event_id for e in street.events}
    assert street.lifecycle.close(street.tracker.tracks, 1.1) == []
