"""H264Encoder on the demo's street footage (MS-MPEG4, 768x576, 10 fps): the packets it makes
are muxed into real .ts files the way the segmenter does, and read back with FFmpeg."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from av.packet import Packet
from av.video.stream import VideoStream

from devkit.demo.footage import vtest_path
from edge.record.encode import TIME_BASE, EncoderError, H264Encoder
from tests.support.recording_footage import mux

Image = npt.NDArray[np.uint8]
SECONDS = 3


@pytest.fixture(scope="module")
def footage() -> list[tuple[Image, float]]:
    """The first seconds of the sample video, decoded: (BGR image, seconds) per frame."""
    with av.open(str(vtest_path())) as container:
        frames = islice(container.decode(video=0), SECONDS * 10)
        return [(np.asarray(f.to_ndarray(format="bgr24"), dtype=np.uint8), float(f.time or 0.0))
                for f in frames]


def encode_all(encoder: H264Encoder,
               frames: Sequence[tuple[Image, float]]) -> list[Packet[VideoStream]]:
    packets: list[Packet[VideoStream]] = []
    for image, pts_s in frames:
        packets += encoder.encode(image, pts_s)
    return packets + encoder.flush()



def read_back(path: Path) -> tuple[str, list[tuple[float, bool]], list[Image]]:
    """(codec, (seconds, keyframe) per packet, decoded BGR frames) as FFmpeg reads the file."""
    packets: list[tuple[float, bool]] = []
    images: list[Image] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            assert packet.pts is not None and stream.time_base is not None  # a .ts has both
            packets.append((float(packet.pts * stream.time_base), packet.is_keyframe))
            images += [np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                       for frame in packet.decode()]
        images += [np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                   for frame in stream.decode(None)]
        return stream.codec_context.name, packets, images


def nal_types(data: bytes) -> list[int]:
    return [data[i + 3] & 0x1F for i in range(len(data) - 3) if data[i : i + 3] == b"\0\0\x01"]


def test_footage_becomes_a_playable_ts_with_a_keyframe_every_gop(
    footage: list[tuple[Image, float]], tmp_path: Path
) -> None:
    encoder = H264Encoder(768, 576, 10, gop_s=1.0, codec="libx264")
    packets = encode_all(encoder, footage)
    assert encoder.codec_name == "libx264"
    assert all(p.stream is encoder.stream and p.time_base == TIME_BASE for p in packets)
    assert all(p.pts == p.dts for p in packets)  # no B-frames
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe]
    assert keyframes == [0, 10, 20]
    for i in keyframes:  # SPS and PPS in band before each keyframe's picture
        types = nal_types(bytes(packets[i]))
        assert types.index(7) < types.index(5) and types.index(8) < types.index(5)

    codec, read, images = read_back(mux(tmp_path / "all.ts", encoder.stream, packets))
    assert codec == "h264"
    assert len(read) == len(images) == len(footage)
    assert [i for i, (_, key) in enumerate(read) if key] == [0, 10, 20]
    start = read[0][0]
    assert [round(t - start, 3) for t, _ in read] == [round(t, 3) for _, t in footage]
    assert images[0].shape == (576, 768, 3)
    # A segment cut at the second keyframe plays on its own.
    _, alone, alone_images = read_back(mux(tmp_path / "cut.ts", encoder.stream, packets[10:20]))
    assert len(alone) == len(alone_images) == 10 and alone[0][1]
    encoder.close()


def test_the_pis_encoder_is_used_where_it_opens_else_libx264(
    footage: list[tuple[Image, float]], tmp_path: Path
) -> None:
    encoder = H264Encoder(768, 576, 10)
    assert encoder.codec_name in {"h264_v4l2m2m", "libx264"}
    packets = encode_all(encoder, footage[:5])
    _, read, images = read_back(mux(tmp_path / "auto.ts", encoder.stream, packets))
    assert len(read) == len(images) == 5 and read[0][1]
    encoder.close()


def test_frames_of_another_size_are_resized(
    footage: list[tuple[Image, float]], tmp_path: Path
) -> None:
    encoder = H264Encoder(320, 240, 10, codec="libx264")
    big, small = footage[0][0], np.asarray(cv2.resize(footage[1][0], (160, 120)), dtype=np.uint8)
    packets = encode_all(encoder, [(big, 0.0), (small, 0.1)])
    _, _, images = read_back(mux(tmp_path / "resized.ts", encoder.stream, packets))
    assert [image.shape for image in images] == [(240, 320, 3)] * 2
    expected = cv2.resize(big, (320, 240), interpolation=cv2.INTER_AREA)
    assert np.abs(images[0].astype(int) - expected).mean() < 8  # the picture, not garbage
    encoder.close()


def test_a_timestamp_that_does_not_increase_is_moved_a_tick_later(
    footage: list[tuple[Image, float]], tmp_path: Path
) -> None:
    encoder = H264Encoder(768, 576, 10, codec="libx264")
    times = [0.0, 0.1, 0.1, 0.05, 0.2]
    frames = [(image, t) for (image, _), t in zip(footage, times, strict=False)]
    packets = encode_all(encoder, frames)
    assert [p.pts for p in packets] == [0, 9000, 9001, 9002, 18000]
    _, read, images = read_back(mux(tmp_path / "nudged.ts", encoder.stream, packets))
    assert len(read) == len(images) == 5
    encoder.close()


def test_an_encoder_that_is_not_there_or_not_h264_is_named_in_the_error() -> None:
    with pytest.raises(EncoderError, match="no-such-encoder: FFmpeg has no encoder"):
        H264Encoder(320, 240, 10, codec="no-such-encoder")
    with pytest.raises(EncoderError, match=r"mpeg4: encodes mpeg4, not H\.264") as caught:
        H264Encoder(320, 240, 10, codec="mpeg4")
    assert caught.value.codec == "mpeg4" and isinstance(caught.value, RuntimeError)


def test_an_odd_picture_size_is_rounded_down_to_even(
    footage: list[tuple[Image, float]], tmp_path: Path
) -> None:
    encoder = H264Encoder(321, 241, 10, codec="libx264")
    assert (encoder.stream.width, encoder.stream.height) == (320, 240)
    odd = np.asarray(cv2.resize(footage[0][0], (321, 241)), dtype=np.uint8)
    packets = encode_all(encoder, [(odd, 0.0)])
    _, _, images = read_back(mux(tmp_path / "odd.ts", encoder.stream, packets))
    assert [image.shape for image in images] == [(240, 320, 3)]
    encoder.close()
