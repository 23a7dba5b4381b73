"""The Pi camera's H.264 as picamera2 hands it over (one Annex B access unit per call, keyframe
flag, microseconds) made into packets, muxed into real .ts files and read back with FFmpeg.
The access units are real H.264, encoded from the demo footage by libx264."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest
from av.packet import Packet
from av.video.stream import VideoStream

from devkit.demo.footage import vtest_path
from edge.record.annexb import TIME_BASE, AnnexBPackets, PacketOutput
from edge.record.encode import H264Encoder
from tests.support.recording_footage import mux

AccessUnit = tuple[bytes, bool, int]  # (Annex B bytes, keyframe, timestamp in µs)
FRAMES, GOP = 30, 10


@pytest.fixture(scope="module")
def camera_output() -> list[AccessUnit]:
    """What picamera2's encoder would give for 3 s at 10 fps: a keyframe every second, and
    timestamps from 0 with a sensor's jitter."""
    encoder = H264Encoder(768, 576, 10, gop_s=GOP / 10, codec="libx264")
    with av.open(str(vtest_path())) as container:
        frames = islice(container.decode(video=0), FRAMES)
        packets = [p for f in frames for p in encoder.encode(
            np.asarray(f.to_ndarray(format="bgr24"), dtype=np.uint8), f.time)]
    packets += encoder.flush()
    encoder.close()
    return [(bytes(p), p.is_keyframe, i * 100_000 + (i % 3) * 1_234) for i, p in enumerate(packets)]



def read_back(path: Path) -> tuple[list[tuple[float, bool]], int, tuple[int, int]]:
    """((seconds, keyframe) per packet, frames decoded, picture size) as FFmpeg reads it."""
    packets: list[tuple[float, bool]] = []
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        for packet in container.demux(stream):
            if packet.size:
                assert packet.pts is not None and stream.time_base is not None  # a .ts has both
                packets.append((float(packet.pts * stream.time_base), packet.is_keyframe))
                decoded += len(packet.decode())
        decoded += len(stream.decode(None))
        return packets, decoded, (stream.codec_context.width, stream.codec_context.height)


def nal_units(data: bytes) -> list[bytes]:
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\0\0\x01"]
    ends = [*starts[1:], len(data)]
    return [data[s + 3 : e].rstrip(b"\0") for s, e in zip(starts, ends, strict=True)]


def annexb(units: Sequence[bytes]) -> bytes:
    return b"".join(b"\0\0\0\x01" + unit for unit in units)


def test_picamera2_frames_become_a_ts_that_plays_with_their_times_and_keyframes(
    camera_output: list[AccessUnit], tmp_path: Path
) -> None:
    received: list[Packet[VideoStream]] = []
    output = PacketOutput(received.append, fps_hint=10)
    output.start()
    for data, keyframe, timestamp in camera_output:
        output.outputframe(data, keyframe, timestamp, None, False)
        output.outputframe(None, True, timestamp, object(), True)  # audio: not for us
    output.stop()
    assert output.stream is not None and output.stream.average_rate == 10  # from the hint
    assert len(received) == FRAMES
    assert all(p.time_base == TIME_BASE and p.stream is output.stream for p in received)
    assert [p.pts for p in received] == [t for _, _, t in camera_output]

    read, decoded, size = read_back(mux(tmp_path / "camera.ts", output.stream, received))
    assert decoded == len(read) == FRAMES and size == (768, 576)
    assert [i for i, (_, key) in enumerate(read) if key] == [0, 10, 20]
    start = read[0][0]
    for (seconds, _), (_, _, timestamp) in zip(read, camera_output, strict=True):
        assert abs((seconds - start) - timestamp / 1e6) < 0.001
    output.start()  # picamera2 restarts its clock: a new stream from the next keyframe
    assert output.stream is None
    output.close()


def test_nothing_comes_out_before_the_first_keyframe(
    camera_output: list[AccessUnit], tmp_path: Path
) -> None:
    packets = AnnexBPackets(fps_hint=10)
    # The recording starts mid-way between keyframes: frames 5-9 cannot be decoded.
    assert [packets.feed(data, key, t) for data, key, t in camera_output[5:10]] == [None] * 5
    assert packets.stream is None
    out = [packets.feed(data, key, t) for data, key, t in camera_output[10:]]
    assert packets.stream is not None
    kept = [p for p in out if p is not None]
    assert len(kept) == len(out)
    assert kept[0].is_keyframe and kept[0].pts == camera_output[10][2]
    template = packets.stream
    read, decoded, _ = read_back(mux(tmp_path / "late.ts", template, kept))
    assert decoded == len(read) == FRAMES - 10
    packets.close()
    assert packets.stream is None
    # A segmenter still holding the template can open segments with it after close().
    read, decoded, _ = read_back(mux(tmp_path / "after-close.ts", template, kept[:GOP]))
    assert decoded == len(read) == GOP


def test_frames_without_a_timestamp_are_placed_a_frame_after_the_previous(
    camera_output: list[AccessUnit],
) -> None:
    for fps_hint, frame_us in ((10, 100_000), (None, 33_333)):
        packets = AnnexBPackets(fps_hint)
        times = [500, None, None, 250_000, 250_000, None]
        out = [packets.feed(d, k, t) for (d, k, _), t in zip(camera_output, times, strict=False)]
        assert [p.pts if p else None for p in out] == [
            500, 500 + frame_us, 500 + 2 * frame_us, 250_000, 250_001, 250_001 + frame_us]
        assert all(p is not None and p.pts == p.dts for p in out)
        packets.close()


def test_keyframes_sent_without_sps_pps_still_start_a_segment_that_plays(
    camera_output: list[AccessUnit], tmp_path: Path
) -> None:
    """An encoder that sends SPS/PPS once, in a buffer of their own (V4L2 "separate header"
    mode): each keyframe gets them in front, so a segment cut there decodes."""
    stripped: list[AccessUnit] = []
    for data, keyframe, timestamp in camera_output:
        units = nal_units(data)
        pictures = [u for u in units if u[0] & 0x1F not in (7, 8)]
        if keyframe and not stripped:
            stripped.append((annexb([u for u in units if u[0] & 0x1F in (7, 8)]), False, 0))
        stripped.append((annexb(pictures), keyframe, timestamp))
    assert len(stripped) == FRAMES + 1

    packets = AnnexBPackets(fps_hint=10)
    out = [packets.feed(*unit) for unit in stripped]
    assert out[0] is None and packets.stream is not None  # the header buffer waits for a picture
    kept = [p for p in out if p is not None]
    assert [p.pts for p in kept] == [t for _, _, t in camera_output]
    for start in (0, 10, 20):
        assert nal_units(bytes(kept[start]))[0][0] & 0x1F == 7  # SPS first
        segment = mux(tmp_path / f"from{start}.ts", packets.stream, kept[start : start + GOP])
        read, decoded, size = read_back(segment)
        assert decoded == len(read) == GOP and read[0][1] and size == (768, 576)
    packets.close()
