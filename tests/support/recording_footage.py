"""Recorded footage for recording tests: real H.264 cut by the real segmenter into a real index.

`recorded(root)` gives a `SegmentIndex` at `root` holding camera "street" from `T0` on, as a
camera worker would have written it: the street sample (vtest, 768x576, 10 fps) encoded with
libx264 into an MP4 with a keyframe every `gop` frames, its packets fed to `Segmenter` with
`realtime=False` (wall time follows the packets from `T0`). The H.264 file is encoded once
per test session for each (seconds, gop, bframes) and shared; the segments are new per call.

    from tests.support.recording_footage import T0, recorded

    def test_something(tmp_path):
        index = recorded(tmp_path / "recordings", seconds=20, segment_s=4)
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import av
from av.packet import Packet
from av.video.frame import PictureType
from av.video.stream import VideoStream

from devkit.demo.footage import VTEST_FRAMES, vtest_path
from edge.record.index import SegmentIndex
from edge.record.segmenter import Segmenter

T0 = datetime(2026, 11, 21, 14, 59, 10, tzinfo=UTC).timestamp()  # wall time of frame 0
CAMERA = "street"
FPS = 10  # the sample's frame rate: one frame is 0.1 s

_made: dict[tuple[int, int, int], Path] = {}
_cache: list[Path] = []


def h264_footage(frames: int, gop: int = 20, bframes: int = 0) -> Path:
    """The sample's first `frames` frames as H.264 in MP4 (made once per session)."""
    key = (frames, gop, bframes)
    if key not in _made:
        if not _cache:
            _cache.append(Path(tempfile.mkdtemp(prefix="recording-footage-")))
            atexit.register(shutil.rmtree, _cache[0], True)
        path = _cache[0] / f"street-{frames}f-gop{gop}-b{bframes}.mp4"
        with av.open(str(vtest_path())) as src, av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = 768, 576, "yuv420p"
            stream.gop_size = gop
            stream.options = {"preset": "ultrafast", "x264-params":
                              f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"}
            for frame in itertools.islice(src.decode(video=0), frames):
                frame = frame.reformat(format="yuv420p")
                frame.pts, frame.pict_type = None, PictureType.NONE  # keyframes by GOP only
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        _made[key] = path
    return _made[key]


def recorded(root: Path, *, seconds: float = 40.0, segment_s: float = 4.0, gop: int = 20,
             bframes: int = 0, camera: str = CAMERA, start: float = T0) -> SegmentIndex:
    """An index at `root` holding `seconds` of the camera's footage from `start`, in segments
    of `segment_s` (each cut on the first keyframe after that; `gop` frames per keyframe).
    The caller closes the index."""
    frames = round(seconds * FPS)
    if not 0 < frames <= VTEST_FRAMES:
        raise ValueError(f"the sample holds {VTEST_FRAMES / FPS} s, asked for {seconds}")
    index = SegmentIndex(root)
    with av.open(str(h264_footage(frames, gop, bframes))) as source:
        stream = source.streams.video[0]
        segmenter = Segmenter(index, camera, stream, segment_s=segment_s, realtime=False,
                              now=lambda: start)
        for packet in source.demux(stream):
            if packet.size:
                segmenter.write(packet)
        segmenter.close()
    assert segmenter.state.ok, segmenter.state.reason
    return index


def mux(path: Path, template: VideoStream, packets: Sequence[Packet[VideoStream]]) -> Path:
    """What the segmenter does: a stream copied from the template, every packet muxed."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(template)
        for packet in packets:
            packet.stream = stream
            out.mux(packet)
    return path
