"""Clips exported from real recorded segments: where they start and end, how they cross
segments, holes and restarts in the footage, and what a technician reads when there is no
footage. Every clip is read back and decoded with PyAV."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from contract.evidence.hashing import ClipError
from edge.record.clips import Clip, export_clip
from edge.record.index import SegmentIndex
from tests.support.recording_footage import CAMERA, FPS, T0, recorded

FRAME_S = 1 / FPS
GOP_S = 2.0  # recorded() default: a keyframe every 20 frames at 10 fps


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SegmentIndex]:
    index = recorded(tmp_path / "recordings", seconds=40, segment_s=4, gop=20)
    yield index
    index.close()


def packets(clip: Clip) -> tuple[list[tuple[float, bool]], Fraction]:
    """(wall time, keyframe) of each video packet in the clip, in demux order."""
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        assert tb is not None
        found = [(clip.start + float(p.pts * tb), p.is_keyframe)
                 for p in container.demux(stream) if p.size and p.pts is not None]
    return found, tb


def frame_times(clip: Clip) -> list[float]:
    with av.open(str(clip.path)) as container:
        return [clip.start + float(f.time or 0) for f in container.decode(video=0)]


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        boxes.append(kind.decode("ascii"))
        at += size if size else len(data)
    return boxes


def test_a_clip_starts_on_the_keyframe_before_the_window_and_ends_on_its_last_frame(
        index: SegmentIndex, tmp_path: Path) -> None:
    start, end = T0 + 9.35, T0 + 21.42
    clip = export_clip(index, CAMERA, start, end, tmp_path / "clip.mp4")

    found, _ = packets(clip)
    first_time, first_is_key = found[0]
    assert first_is_key and first_time == pytest.approx(clip.start)
    assert start - GOP_S < clip.start <= start
    last_time = max(t for t, _ in found)
    assert end - FRAME_S <= last_time + 1e-6 and last_time < end
    assert clip.end == pytest.approx(last_time + FRAME_S)
    assert clip.requested == (start, end) and clip.gaps == []
    # one packet per frame, each at its wall time
    assert [round(t - clip.start, 3) for t, _ in found] == [
        round(i * FRAME_S, 3) for i in range(len(found))]


def test_a_window_on_segment_boundaries_takes_exactly_one_segment(
        index: SegmentIndex, tmp_path: Path) -> None:
    clip = export_clip(index, CAMERA, T0 + 8, T0 + 12, tmp_path / "clip.mp4")

    assert clip.start == T0 + 8 and clip.end == pytest.approx(T0 + 12)
    assert [(p.segment.start - T0, p.packets) for p in clip.parts] == [(8.0, 40)]


def test_a_clip_across_segments_lists_each_segment_and_its_packets_in_order(
        index: SegmentIndex, tmp_path: Path) -> None:
    clip = export_clip(index, CAMERA, T0 + 9.35, T0 + 21.42, tmp_path / "clip.mp4")

    assert [p.segment.start - T0 for p in clip.parts] == [8.0, 12.0, 16.0, 20.0]
    assert [(p.first, p.packets) for p in clip.parts] == [(0, 40), (40, 40), (80, 40),
                                                          (120, 15)]
    assert len(packets(clip)[0]) == sum(p.packets for p in clip.parts)
    assert len({p.sha256 for p in clip.parts}) == 4
    assert clip.bytes == clip.path.stat().st_size


def test_the_clip_plays_every_packet_and_has_its_index_before_its_video(
        index: SegmentIndex, tmp_path: Path) -> None:
    clip = export_clip(index, CAMERA, T0 + 3, T0 + 15, tmp_path / "clip.mp4")

    times = frame_times(clip)
    assert len(times) == sum(p.packets for p in clip.parts) == 130
    boxes = top_level_boxes(clip.path)
    assert boxes.index("moov") < boxes.index("mdat")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "recordings"]  # no temp


def test_a_window_reaching_before_the_first_footage_starts_with_a_gap(
        index: SegmentIndex, tmp_path: Path) -> None:
    clip = export_clip(index, CAMERA, T0 - 5, T0 + 6, tmp_path / "clip.mp4")

    assert clip.start == T0
    assert clip.gaps == [(T0 - 5, T0)]
    assert clip.end == pytest.approx(T0 + 6)


def test_a_window_reaching_past_the_last_footage_ends_with_a_gap(
        index: SegmentIndex, tmp_path: Path) -> None:
    clip = export_clip(index, CAMERA, T0 + 35, T0 + 50, tmp_path / "clip.mp4")

    assert clip.start == T0 + 34
    assert clip.end == pytest.approx(T0 + 40)
    (gap_start, gap_end), = clip.gaps
    assert gap_start == pytest.approx(T0 + 40) and gap_end == T0 + 50


def test_a_missing_segment_is_a_gap_and_the_footage_after_it_keeps_its_time(
        index: SegmentIndex, tmp_path: Path) -> None:
    lost = next(s for s in index.segments() if s.start == T0 + 12)
    index.file(lost).unlink()
    index.remove([lost.id])

    clip = export_clip(index, CAMERA, T0 + 10, T0 + 20, tmp_path / "clip.mp4")

    assert clip.gaps == [(T0 + 12, T0 + 16)]
    assert [p.segment.start - T0 for p in clip.parts] == [8.0, 16.0]
    found, _ = packets(clip)
    after = found[clip.parts[1].first]
    assert after[1] and after[0] == pytest.approx(T0 + 16)
    assert len(frame_times(clip)) == 20 + 40


def test_a_camera_restart_between_segments_is_placed_by_wall_time(tmp_path: Path) -> None:
    # Two runs of the source: the second starts its timestamps again from 0.
    recorded(tmp_path / "recordings", seconds=40).close()
    index = recorded(tmp_path / "recordings", seconds=20, start=T0 + 40)

    clip = export_clip(index, CAMERA, T0 + 35, T0 + 45, tmp_path / "clip.mp4")

    assert clip.start == T0 + 34 and clip.gaps == []
    found, _ = packets(clip)
    assert [round(t - clip.start, 3) for t, _ in found] == [
        round(i * FRAME_S, 3) for i in range(len(found))]
    assert len(frame_times(clip)) == len(found) == 110
    index.close()


def test_with_b_frames_every_picture_before_the_end_is_in_the_clip(tmp_path: Path) -> None:
    index = recorded(tmp_path / "recordings", seconds=30, bframes=2)
    start, end = T0 + 9.35, T0 + 21.05

    clip = export_clip(index, CAMERA, start, end, tmp_path / "clip.mp4")

    times = frame_times(clip)
    assert len(times) == sum(p.packets for p in clip.parts)
    shown = {round(t - T0, 3) for t in times}
    assert {round(8.0 + i * FRAME_S, 3) for i in range(131)} <= shown  # 8.0 .. 21.0
    assert clip.end - end < 5 * FRAME_S  # only the references of the last B-frames follow
    index.close()


def test_no_footage_in_the_window_says_which_camera_and_what_footage_there_is(
        index: SegmentIndex, tmp_path: Path) -> None:
    with pytest.raises(ClipError) as late:
        export_clip(index, CAMERA, T0 + 3600, T0 + 3660, tmp_path / "clip.mp4")
    message = str(late.value)
    assert "'street'" in message and "2026-11-21T15:59:10.000Z" in message
    assert "2026-11-21T14:59:10.000Z to 2026-11-21T14:59:50.000Z" in message

    with pytest.raises(ClipError, match=r"camera 'gate'.*cameras recorded: street"):
        export_clip(index, "gate", T0, T0 + 10, tmp_path / "clip.mp4")
    assert not (tmp_path / "clip.mp4").exists()


def test_a_segment_file_that_is_gone_or_changed_is_named_and_nothing_is_written(
        index: SegmentIndex, tmp_path: Path) -> None:
    gone, changed = (next(s for s in index.segments() if s.start == T0 + t) for t in (4, 8))
    index.file(gone).unlink()
    with pytest.raises(ClipError, match=f"cannot read segment .*{gone.path}"):
        export_clip(index, CAMERA, T0, T0 + 10, tmp_path / "clip.mp4")

    data = bytearray(index.file(changed).read_bytes())
    data[len(data) // 2] ^= 0x01
    index.file(changed).write_bytes(bytes(data))
    with pytest.raises(ClipError, match=f"{changed.path} no longer matches"):
        export_clip(index, CAMERA, T0 + 8, T0 + 10, tmp_path / "clip.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recordings"]


def test_an_empty_window_is_refused(index: SegmentIndex, tmp_path: Path) -> None:
    with pytest.raises(ClipError, match="must be after its start"):
        export_clip(index, CAMERA, T0 + 10, T0 + 10, tmp_path / "clip.mp4")
