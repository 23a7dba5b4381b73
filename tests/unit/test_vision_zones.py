"""Zones: an object is in a zone where it stands (bottom-centre of its box); entering,
leaving, dwell and loitering follow from that, per track."""

from __future__ import annotations

import pytest

from edge.detectors.base import Box
from edge.vision.zones import Zone, ZoneMap

FRAME = (1000, 500)
CROSSING = Zone("crossing", [(0.4, 0.5), (0.6, 0.5), (0.6, 1.0), (0.4, 1.0)], loiter_s=10.0)
BENCH = Zone("bench", [(0.0, 0.0), (0.2, 0.0), (0.2, 1.0), (0.0, 1.0)])


def standing_at(x: float, feet_y: float = 400.0) -> Box:
    return (x - 20, feet_y - 100, x + 20, feet_y)


def test_the_feet_decide_not_the_head() -> None:
    zones = ZoneMap([CROSSING], FRAME)
    assert zones.inside(standing_at(500, feet_y=300)) == ("crossing",)  # head above the zone
    assert zones.inside((480.0, 300.0, 520.0, 240.0)) == ()  # feet above it


def test_entering_and_leaving_are_reported_once_each() -> None:
    zones = ZoneMap([CROSSING], FRAME, leave_after_s=0.0)
    seen = []
    for frame in range(40):
        t = frame / 10
        x = 300 + 10 * frame  # walks right through the crossing (x 400..600)
        seen.append(zones.update([(7, standing_at(x))], t)[7])
    assert sum(s.entered == ("crossing",) for s in seen) == 1
    assert sum(s.left == ("crossing",) for s in seen) == 1
    first_in = next(i for i, s in enumerate(seen) if s.zones)
    assert 9 <= first_in <= 11 and seen[first_in].dwell_s == {"crossing": 0.0}
    assert max(s.dwell_s.get("crossing", 0.0) for s in seen) == pytest.approx(1.9, abs=0.15)


def test_a_box_jittering_on_the_edge_does_not_enter_and_leave_every_frame() -> None:
    zones = ZoneMap([CROSSING], FRAME, leave_after_s=0.5)
    changes = 0
    for frame in range(30):
        x = 398.0 if frame % 2 else 402.0
        s = zones.update([(1, standing_at(x))], frame / 10)[1]
        changes += len(s.entered) + len(s.left)
    assert changes == 1  # entered once, never left


def test_loitering_starts_when_dwell_reaches_the_zones_limit() -> None:
    zones = ZoneMap([CROSSING, BENCH], FRAME)
    for second in range(13):
        s = zones.update([(3, standing_at(500))], float(second))[3]
        assert s.loitering == (("crossing",) if second >= 10 else ())
    assert s.dwell_s == {"crossing": 12.0}


def test_a_zone_without_a_loiter_limit_never_loiters() -> None:
    zones = ZoneMap([BENCH], FRAME)
    for second in range(100):
        s = zones.update([(3, standing_at(100))], float(second))[3]
    assert s.zones == ("bench",) and s.loitering == ()


def test_tracks_are_independent_and_a_forgotten_track_starts_afresh() -> None:
    zones = ZoneMap([CROSSING], FRAME)
    zones.update([(1, standing_at(500)), (2, standing_at(100))], 0.0)
    s = zones.update([(1, standing_at(500)), (2, standing_at(500))], 5.0)
    assert s[1].dwell_s == {"crossing": 5.0} and s[1].entered == ()
    assert s[2].dwell_s == {"crossing": 0.0} and s[2].entered == ("crossing",)
    zones.forget(1)
    assert zones.update([(1, standing_at(500))], 6.0)[1].entered == ("crossing",)


def test_zone_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        ZoneMap([CROSSING, CROSSING], FRAME)
