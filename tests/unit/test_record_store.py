"""Segments on disk: the segmenter's files, the budget keeper, pins, and the start-up reconcile.

Real H.264 (the street sample encoded with libx264) is cut by the real segmenter into real
files; disks that fill or turn read-only are real tmpfs mounts (skipped where this machine
may not mount).
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from edge.config.recording import RecordingSection
from edge.record.budget import Budget, DiskUsage, Keeper
from edge.record.index import Category, SegmentIndex
from edge.record.reconcile import reconcile
from edge.record.recorder import Recorder
from edge.record.segmenter import Segmenter, start_of
from tests.support import disks
from tests.support.recording_footage import CAMERA, FPS, T0, h264_footage, recorded

DAY = 86400.0


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB filesystem of its own, to fill or make read-only."""
    with disks.tmpfs(tmp_path / "card", "3m") as mount:
        yield mount


def test_segments_start_on_keyframes_play_alone_and_their_hashes_match_the_files(
        tmp_path: Path) -> None:
    index = recorded(tmp_path / "rec", seconds=20, segment_s=4, gop=20)
    segments = index.segments()
    assert len(segments) == 5  # keyframes every 2 s, cut on the first one after 4 s
    for seg in segments:
        path = index.file(seg)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == seg.sha256
        assert path.stat().st_size == seg.bytes
        with av.open(str(path)) as c:
            first = next(c.demux(video=0))
            assert first.is_keyframe
        assert decoded_frames(path) == 40, f"{seg.path} does not play on its own"
        assert start_of(seg.path) == pytest.approx(seg.start, abs=0.001)
    # Back to back in wall time, and as long as the frames they hold.
    for a, b in itertools.pairwise(segments):
        assert b.start == pytest.approx(a.end, abs=1e-6)
    assert segments[0].start == T0 and segments[-1].end == pytest.approx(T0 + 20)
    index.close()


def test_the_decoder_after_the_segmenter_gets_every_packet_unchanged(tmp_path: Path) -> None:
    index = SegmentIndex(tmp_path / "rec")
    with av.open(str(h264_footage(60))) as source:
        stream = source.streams.video[0]
        segmenter = Segmenter(index, CAMERA, stream, segment_s=2, realtime=False,
                              now=lambda: T0)
        decoded = 0
        for packet in source.demux(stream):
            before = (packet.pts, packet.dts, packet.duration, packet.time_base, bytes(packet))
            if packet.size:
                segmenter.write(packet)
            assert (packet.pts, packet.dts, packet.duration, packet.time_base,
                    bytes(packet)) == before
            assert packet.stream is stream
            decoded += len(packet.decode())
        segmenter.close()
    assert decoded == 60
    assert sum(decoded_frames(index.file(s)) for s in index.segments()) == 60
    index.close()


def test_continuous_recording_stays_within_its_budget_and_evicts_the_oldest_first(
        tmp_path: Path) -> None:
    root = tmp_path / "rec"
    sizes = recorded(root, seconds=40, segment_s=2).segments()
    budget = sum(s.bytes for s in sizes[:6])  # room for about six of the twenty segments
    index = SegmentIndex(tmp_path / "rec2")
    keeper = Keeper(index, Budget(max_bytes=budget, max_fraction=None, min_free_bytes=0),
                    continuous_days=7, now=lambda: T0)
    with av.open(str(h264_footage(400))) as source:
        stream = source.streams.video[0]
        segmenter = Segmenter(index, CAMERA, stream, segment_s=2, room=keeper, realtime=False,
                              now=lambda: T0)
        highest = 0
        for packet in source.demux(stream):
            if packet.size:
                segmenter.write(packet)
            highest = max(highest, sum(p.stat().st_size for p in index.root.rglob("*.ts")))
        segmenter.close()
    kept = index.segments()
    assert highest <= budget, "the files on disk went over the budget"
    assert keeper.evicted_segments >= 10 and 3 <= len(kept) <= 7
    assert kept[-1].end == pytest.approx(T0 + 40), "the newest footage is kept"
    assert {p.relative_to(index.root).as_posix() for p in index.root.rglob("*.ts")} == \
        {s.path for s in kept}, "evicted files are gone from disk too"
    index.close()


def test_footage_pinned_by_an_alert_survives_eviction_until_its_retention_ends(
        tmp_path: Path) -> None:
    index = recorded(tmp_path / "rec", seconds=40, segment_s=4)
    now = T0 + 60
    pin = index.pin(None, T0 + 10, T0 + 14, Category.ALERT, "alert 1", now=now,
                    expires=now + 90 * DAY)
    pinned = [s.path for s in index.between(CAMERA, T0 + 10, T0 + 14)]
    keeper = Keeper(index, Budget(max_bytes=1, max_fraction=None, min_free_bytes=0),
                    continuous_days=7, now=lambda: now)
    why = keeper.make_room(1)
    assert "pinned footage" in why, "with only pinned footage left there is no room"
    assert [s.path for s in index.segments()] == pinned
    assert all(index.file(s).exists() for s in index.segments())
    assert index.usage(now).pinned_bytes == index.usage(now).bytes

    # A legal hold outlives everything until it is released.
    hold = index.pin(CAMERA, T0, T0 + 40, Category.LEGAL_HOLD, "case 77/2026", now=now,
                     expires=None)
    later = now + 91 * DAY
    assert Keeper(index, keeper.budget, continuous_days=7, now=lambda: later).sweep().segments \
        == 0
    assert index.release(hold.id, now=later)
    swept = Keeper(index, keeper.budget, continuous_days=7, now=lambda: later).sweep()
    assert swept.segments == len(pinned) and index.segments() == []
    assert not index.release(pin.id, now=later), "an expired pin is not in force"
    index.close()


def test_unpinned_footage_older_than_its_retention_is_swept(tmp_path: Path) -> None:
    index = recorded(tmp_path / "rec", seconds=20, segment_s=4)
    keeper = Keeper(index, Budget(), continuous_days=7, now=lambda: T0 + 7 * DAY + 12)
    swept = keeper.sweep()
    assert swept.segments == 3  # the ones that ended by the cutoff, 7 days before now
    assert index.segments()[0].start == pytest.approx(T0 + 12, abs=0.01)
    index.close()


def test_the_free_space_floor_is_kept_even_within_the_budget(tmp_path: Path) -> None:
    index = recorded(tmp_path / "rec", seconds=20, segment_s=4)
    stored = index.usage(T0).bytes
    disk = {"free": 1000}

    def usage(_p: Path) -> DiskUsage:  # the partition as statvfs would report it
        return DiskUsage(10**12, 10**12 - disk["free"], disk["free"])

    keeper = Keeper(index, Budget(max_bytes=10**12, max_fraction=None, min_free_bytes=500_000),
                    continuous_days=7, now=lambda: T0, disk_usage=lambda p: usage(p))
    removed: list[int] = []
    original = keeper._delete

    def delete(segment):  # type: ignore[no-untyped-def]
        disk["free"] += segment.bytes  # what unlinking gives back
        removed.append(segment.id)
        return original(segment)

    keeper._delete = delete  # type: ignore[method-assign]
    assert keeper.make_room(200_000) == ""
    assert disk["free"] >= 700_000 and removed
    assert index.usage(T0).bytes < stored
    index.close()


def test_a_segment_torn_by_a_power_cut_is_trimmed_and_indexed_and_junk_is_dropped(
        tmp_path: Path) -> None:
    index = recorded(tmp_path / "rec", seconds=20, segment_s=4)
    last = index.segments()[-1]
    path = index.file(last)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3 + 77])  # cut mid-packet, as power would
    index.remove([last.id])  # its row was never written: the cut came first
    junk = index.root / CAMERA / "20261121" / "150000.000.ts"
    junk.write_bytes(b"\x47" + bytes(100))  # a segment cut before its first frame
    gone = index.segments()[0]
    index.file(gone).unlink()  # evicted just before the crash, row still there

    found = reconcile(index)
    assert found.repaired == [last.path]
    assert found.dropped == [junk.relative_to(index.root).as_posix()] and not junk.exists()
    assert found.missing == [gone.path]
    fixed = next(s for s in index.segments() if s.path == last.path)
    assert fixed.start == last.start and last.start < fixed.end < last.end
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fixed.sha256
    frames = decoded_frames(path)
    assert 0 < frames < 40
    assert fixed.duration_s == pytest.approx(frames / FPS, abs=0.11)
    assert reconcile(index) == type(found)([], [], []), "a second start finds nothing to do"
    index.close()


def test_a_full_disk_is_reported_and_recording_resumes_when_there_is_room(
        tmpfs: Path) -> None:
    index = SegmentIndex(tmpfs / "rec")
    filler = tmpfs / "someone-elses-file"
    filler.write_bytes(bytes(2_600_000))  # the partition is nearly full, not by us
    keeper = Keeper(index, Budget(max_bytes=None, max_fraction=0.9, min_free_bytes=0),
                    continuous_days=7, now=lambda: T0)
    clock = {"t": T0}
    with av.open(str(h264_footage(200))) as source:
        stream = source.streams.video[0]
        segmenter = Segmenter(index, CAMERA, stream, segment_s=2, room=keeper, realtime=False,
                              now=lambda: clock["t"])
        packets = [p for p in source.demux(stream) if p.size]
        for packet in packets[:100]:
            segmenter.write(packet)
        state = segmenter.state
        assert not state.ok and ("No space left" in state.reason or "free" in state.reason)
        assert state.dropped_packets > 0
        filler.unlink()  # the technician frees the card
        clock["t"] += 60  # past the retry wait
        for packet in packets[100:]:
            segmenter.write(packet)
        segmenter.close()
    assert segmenter.state.ok, segmenter.state.reason
    assert index.segments(), "recording resumed"
    for seg in index.segments():
        assert hashlib.sha256(index.file(seg).read_bytes()).hexdigest() == seg.sha256
    index.close()


def test_a_read_only_card_is_reported_and_recording_starts_once_it_is_writable(
        tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    clock = {"t": T0}
    recorder = Recorder(RecordingSection(segment_s=2, min_free=0), tmpfs / "rec", CAMERA,
                        realtime=False, now=lambda: clock["t"])
    with av.open(str(h264_footage(80))) as source:
        stream = source.streams.video[0]
        assert recorder.start(stream, FPS) == ""
        report = recorder.report()
        assert report["state"] == "failed" and "Read-only file system" in report["reason"]
        packets = [p for p in source.demux(stream) if p.size]
        for packet in packets[:40]:
            recorder.packet(packet)  # the camera keeps feeding; nothing raises
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
        clock["t"] += 60  # past the retry wait
        assert recorder.start(stream, FPS) == "copy"
        for packet in packets[40:]:
            recorder.packet(packet)
        recorder.stop()
        assert recorder.report()["state"] == "idle" and recorder.report()["reason"] == ""
    assert recorder.index is not None and len(recorder.index.segments()) == 2
    recorder.close()
