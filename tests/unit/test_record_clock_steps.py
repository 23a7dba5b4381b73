"""Recording while the wall clock steps (NTP or GPS setting it after a cold boot), with time
passed in: a clock whose monotonic time follows the footage and whose wall time is stepped
mid-GOP. Real H.264 is cut by the real segmenter into a real index; retention, eviction, pins,
clips, the wait for footage and reboots are checked against the monotonic clock."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import av
import pytest

from edge.record.budget import DAY_S, Budget, Keeper
from edge.record.clips import export_clip
from edge.record.delivery import ClipJob, wait_for_footage
from edge.record.index import Category, Moment, SegmentIndex
from edge.record.segmenter import Segmenter, start_of
from edge.record.timeline import Reading, Timeline
from tests.support.recording_footage import CAMERA, FPS, T0, h264_footage

HOUR = 3600.0
M0 = 1000.0  # the monotonic clock when the footage starts
JOIN = 1e-6


class SteppedClock:
    """A clock with time passed in: `mono` set by the test, wall = mono + `offset`."""

    def __init__(self, boot_id: str = "boot-a", *, offset: float = T0 - M0,
                 synced: bool = False) -> None:
        self.boot_id, self.mono, self.offset, self.is_synced = boot_id, M0, offset, synced

    def read(self) -> Reading:
        return Reading(self.mono + self.offset, self.mono)

    def synced(self) -> bool:
        return self.is_synced


def record(index: SegmentIndex, clock: SteppedClock, *, seconds: float = 30, segment_s: float = 2,
           steps: dict[float, float] | None = None, keeper: Keeper | None = None) -> float:
    """Feed `seconds` of the street footage (a keyframe every 2 s) as a live
    camera would, the clock following it; at each media time in `steps`, step the wall clock.
    Returns the recorded time of the footage's start."""
    pending = sorted((steps or {}).items())
    timeline = Timeline(index, clock)
    with av.open(str(h264_footage(round(seconds * FPS)))) as source:
        stream = source.streams.video[0]
        segmenter = Segmenter(index, CAMERA, stream, segment_s=segment_s, room=keeper,
                              realtime=True,
                              timeline=timeline)
        for packet in source.demux(stream):
            if not packet.size or packet.pts is None or packet.time_base is None:
                continue
            media_s = float(packet.pts * packet.time_base)
            while pending and pending[0][0] <= media_s:
                clock.offset += pending.pop(0)[1]
            clock.mono = M0 + media_s
            segmenter.write(packet)
        clock.mono = M0 + seconds
        segmenter.close()
    assert segmenter.state.ok and segmenter.state.dropped_packets == 0, segmenter.state
    return timeline.rec(M0)


def clip_times(path: Path) -> list[float]:
    """Each video packet's time in the clip, in demux order."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        return [float(p.pts * tb) for p in c.demux(stream) if p.size and p.pts is not None]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SegmentIndex]:
    index = SegmentIndex(tmp_path / "recordings")
    yield index
    index.close()


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["ahead an hour", "back an hour"])
def test_a_step_mid_gop_loses_no_picture_and_labels_each_segment_by_its_own_clock(
        index: SegmentIndex, step: float) -> None:
    clock = SteppedClock()
    zero = record(index, clock, segment_s=4, steps={9.05: step})

    segments = index.segments()
    assert [round(s.rec_start - zero) for s in segments] == [0, 4, 8, 10, 14, 18, 22, 26]
    assert len({s.path for s in segments}) == 8
    for a, b in itertools.pairwise(segments):  # back to back in recorded time
        assert b.rec_start == pytest.approx(a.rec_end, abs=JOIN)
    # The segment open at the step keeps its labels to its end; the next one, from the
    # first keyframe after the step, is labelled by the new clock.
    jumps = [(round(b.rec_start - zero, 6), round(b.start - a.end, 6))
             for a, b in itertools.pairwise(segments) if abs(b.start - a.end) > JOIN]
    assert jumps == [(10.0, step)]
    assert [start_of(s.path) for s in segments] == [pytest.approx(s.start, abs=1e-3)
                                                    for s in segments]


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["ahead an hour", "back an hour"])
def test_retention_counts_monotonic_seconds_whatever_the_wall_clock_did(
        index: SegmentIndex, step: float) -> None:
    clock = SteppedClock()
    zero = record(index, clock, steps={12.05: step})
    keeper = Keeper(index, Budget(max_fraction=None, min_free_bytes=0),
                    continuous_days=10 / DAY_S, timeline=Timeline(index, clock))

    swept = keeper.sweep()  # now = 30 s into the footage: what ended 10 s ago or more goes

    assert swept.segments == 10
    assert [round(s.rec_start - zero) for s in index.segments()] == [20, 22, 24, 26, 28]
    clock.mono += 2
    assert keeper.sweep().segments == 1


def test_after_a_step_back_eviction_still_takes_the_oldest_footage_not_the_earliest_label(
        tmp_path: Path, index: SegmentIndex) -> None:
    clock = SteppedClock()
    record(SegmentIndex(tmp_path / "sizes"), SteppedClock())
    sizes = [s.bytes for s in SegmentIndex(tmp_path / "sizes").segments()]
    keeper = Keeper(index, Budget(max_bytes=sum(sizes[:6]), max_fraction=None,
                                  min_free_bytes=0),
                    continuous_days=7, timeline=Timeline(index, clock))

    zero = record(index, clock, steps={12.05: -HOUR}, keeper=keeper)

    kept = index.segments()
    assert 3 <= len(kept) <= 7 and keeper.evicted_segments >= 8
    assert kept[-1].rec_end == pytest.approx(zero + 30), "the newest footage is kept"
    assert all(s.start < T0 for s in kept), "footage labelled before the step went first"


def test_a_pin_holds_the_footage_after_an_alert_even_when_the_clock_steps_during_it(
        index: SegmentIndex) -> None:
    clock = SteppedClock()
    timeline = Timeline(index, clock)
    clock.mono = M0 + 8  # the alert: its footage from 3 s before to 10 s after
    at = timeline.now()
    index.pin(None, at.wall - 3, at.wall + 10, Category.ALERT, "alert 1", now=at,
              expires=at.rec + 60)
    zero = record(index, clock, steps={12.05: HOUR})
    keeper = Keeper(index, Budget(max_bytes=1, max_fraction=None, min_free_bytes=0),
                    continuous_days=7, timeline=Timeline(index, clock))

    assert "pinned footage" in keeper.make_room(1)
    held = [round(s.rec_start - zero) for s in index.segments()]
    assert held == [4, 6, 8, 10, 12, 14, 16], "the whole window, labelled by either clock"
    clock.offset -= 2 * HOUR  # a step back does not lengthen the pin either
    clock.mono = at.rec - timeline.base + 61
    assert index.pins(timeline.now().rec) == []
    assert keeper.make_room(1) == "" and index.segments() == []


def test_after_a_step_back_a_window_naming_two_stretches_exports_both_and_says_so(
        index: SegmentIndex, tmp_path: Path) -> None:
    zero = record(index, SteppedClock(), steps={12.05: -12.0})  # from 14 s: labelled 12 s early

    clip = export_clip(index, CAMERA, T0 + 4, T0 + 8, tmp_path / "clip.mp4")

    assert [round(p.segment.rec_start - zero) for p in clip.parts] == [4, 6, 16, 18]
    assert clip.clock_steps == [(clip.parts[2].segment.path, -12.0)]
    assert clip.gaps == [] and clip.start == T0 + 4 and clip.end == pytest.approx(T0 + 8)
    times = clip_times(clip.path)
    assert len(times) == 80 and times == sorted(times), "one after the other, never on top"
    assert times[-1] - times[0] == pytest.approx(7.9)


def test_a_window_across_a_step_ahead_plays_without_the_hour_and_names_the_step(
        index: SegmentIndex, tmp_path: Path) -> None:
    zero = record(index, SteppedClock(), steps={12.05: HOUR})

    clip = export_clip(index, CAMERA, T0 + 10, T0 + HOUR + 18, tmp_path / "clip.mp4")

    assert [round(p.segment.rec_start - zero) for p in clip.parts] == [10, 12, 14, 16]
    assert clip.clock_steps == [(clip.parts[2].segment.path, HOUR)]
    (gap_start, gap_end), = clip.gaps  # no footage is labelled with the hour stepped over
    assert gap_start == T0 + 14 and gap_end == pytest.approx(T0 + HOUR + 14)
    times = clip_times(clip.path)
    assert len(times) == 80 and times[-1] - times[0] == pytest.approx(7.9)


def job(end: float) -> ClipJob:
    return ClipJob("r1", "pole-1", CAMERA, end - 6, end, "http://127.0.0.1:9/c.mp4", None,
                   Path("/nonexistent"), Path("/nonexistent"), hold_days=1, segment_s=2)


def add(index: SegmentIndex, timeline: Timeline, n: int, mono: float, label: float) -> None:
    """A 2 s segment's row (the wait reads only rows): recorded from `mono`, labelled `label`."""
    index.add(CAMERA, label, label + 2, f"{CAMERA}/x/{n}.ts", 1, "0" * 64,
              rec=(timeline.rec(mono), timeline.rec(mono + 2)), boot=timeline.boot)


class Camera:
    """Closes a 2 s segment whenever the clock has passed its end: `sleep` for the wait."""

    def __init__(self, index: SegmentIndex, clock: SteppedClock, timeline: Timeline,
                 step: float = 0.0) -> None:
        self.index, self.clock, self.timeline, self.step = index, clock, timeline, step
        self.recorded = [clock.mono]  # closed up to here
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.clock.mono += s
        if len(self.sleeps) == 1:
            self.clock.offset += self.step  # the clock steps while the export waits
        while self.clock.mono >= self.recorded[-1] + 2:
            at = self.recorded[-1]
            add(self.index, self.timeline, len(self.recorded), at, at + self.clock.offset)
            self.recorded.append(at + 2)


@pytest.mark.parametrize("step", [HOUR, -HOUR], ids=["ahead an hour", "back an hour"])
def test_the_wait_for_a_windows_end_runs_on_recorded_time(index: SegmentIndex,
                                                            step: float) -> None:
    clock = SteppedClock()
    timeline = Timeline(index, clock)
    add(index, timeline, 0, M0 - 2, T0 - 2 + HOUR)  # stamped by a clock an hour ahead
    camera = Camera(index, clock, timeline, step)

    wait_for_footage(index, job(T0 + 4), timeline, sleep=camera.sleep)  # to 4 s from now
    newest = index.newest(CAMERA)
    assert newest is not None and newest.rec_end == timeline.rec(M0 + 4)
    assert sum(camera.sleeps) == 4, "until the end was recorded, neither at once nor an hour"

    camera.sleeps.clear()
    camera.recorded.append(float("inf"))  # the camera went offline: the wait gives up on
    wait_for_footage(index, job(clock.read().wall + 4), timeline, sleep=camera.sleep)
    assert sum(camera.sleeps) == pytest.approx(4 + 2 * 2 + 5)  # the monotonic clock


def test_a_queued_request_is_placed_through_the_clock_it_arrived_under(
        index: SegmentIndex) -> None:
    clock = SteppedClock()
    timeline = Timeline(index, clock)
    arrived = clock.read()  # the hub asks for the next 4 s; the export starts 3 s later,
    clock.mono += 3  # after the clock stepped back an hour
    clock.offset -= HOUR
    camera = Camera(index, clock, timeline)
    camera.recorded[-1] = M0

    late = replace(job(arrived.wall + 4), asked=(arrived.wall, arrived.mono))
    wait_for_footage(index, late, timeline, sleep=camera.sleep)
    assert sum(camera.sleeps) == 1, "until 4 s after it arrived, not an hour and 4 s"


def test_a_reboot_carries_recorded_time_on_and_the_synchronised_clock_adds_the_time_off(
        index: SegmentIndex) -> None:
    first = SteppedClock("boot-a", synced=True)
    a = Timeline(index, first)
    add(index, a, 1, M0, T0)  # recorded [T0, T0 + 2), then the power went
    # Two hours off; the new boot's clock is an hour behind and not synchronised yet.
    second = SteppedClock("boot-b", offset=T0 - HOUR)
    second.mono = 5.0
    b = Timeline(index, second)
    assert b.now().rec == pytest.approx(a.rec(M0 + 2)), "on from the last recorded moment"
    assert b.settle() == 0.0
    add(index, b, 2, 5.0, second.read().wall)
    assert [s.path for s in index.segments()] == [f"{CAMERA}/x/1.ts", f"{CAMERA}/x/2.ts"]

    second.mono, second.offset, second.is_synced = 50.0, T0 + 2 + 2 * HOUR - 5, True
    assert b.settle() == pytest.approx(2 * HOUR)  # NTP: it is 2 h later than counted
    assert b.settle() == 0.0, "once"
    old, new = index.segments()
    assert b.now().rec - old.rec_end == pytest.approx(2 * HOUR + 45), "its true age"
    assert new.rec_start == pytest.approx(b.rec(5.0)), "this boot's footage is unmoved"
    keeper = Keeper(index, Budget(max_fraction=None), continuous_days=HOUR / DAY_S,
                    timeline=b)
    assert keeper.sweep().segments == 1 and index.segments() == [new]


def test_an_index_made_before_recorded_time_keeps_its_footage_in_order(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    db = sqlite3.connect(root / "index.sqlite")
    db.executescript("""
        CREATE TABLE segments (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, start REAL NOT NULL,
            end REAL NOT NULL, path TEXT NOT NULL UNIQUE, bytes INTEGER NOT NULL,
            sha256 TEXT NOT NULL);
        CREATE TABLE pins (id INTEGER PRIMARY KEY, camera TEXT, start REAL NOT NULL,
            end REAL NOT NULL, category TEXT NOT NULL, reason TEXT NOT NULL,
            created REAL NOT NULL, expires REAL);""")
    db.execute("INSERT INTO segments VALUES (1, 'street', ?, ?, 'street/a.ts', 1, 'x')",
               (T0, T0 + 10))
    db.execute("INSERT INTO pins VALUES (1, NULL, ?, ?, 'alert', 'alert 1', ?, ?)",
               (T0, T0 + 5, T0 + 20, T0 + 90 * DAY_S))
    db.commit()
    db.close()

    index = SegmentIndex(root)
    (old,) = index.segments()
    assert (old.rec_start, old.rec_end, old.boot) == (T0, T0 + 10, 0)
    clock = SteppedClock("after the update", offset=T0 + 600 - M0)
    timeline = Timeline(index, clock)
    add(index, timeline, 2, M0, T0 + 600)
    assert [s.path for s in index.segments()] == ["street/a.ts", f"{CAMERA}/x/2.ts"]
    (pin,) = index.pins(timeline.now().rec)
    assert pin.expires == T0 + 90 * DAY_S and index.evictable(timeline.now().rec)[0].path \
        == f"{CAMERA}/x/2.ts", "the old pin still holds its footage"
    index.close()
    assert SegmentIndex(root).segments()[0] == old, "opened again: nothing to do"


def test_a_steady_moment_is_one_time() -> None:
    assert Moment.steady(5.0) == Moment(5.0, 5.0, 0)
