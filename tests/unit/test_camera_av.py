"""AvCamera on real footage, real HTTP servers and real sockets: scaling, the recorder's packet
tap, looping, pacing, and what a technician reads when a source is broken."""

from __future__ import annotations

import functools
import http.server
import itertools
import math
import random
import socket
import struct
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from devkit.demo.footage import VTEST_FRAMES, vtest_path
from drivers.camera import AvCamera, CameraError, Frame, make_camera, redact, source_kind


@pytest.fixture(scope="module")
def footage() -> Path:
    return vtest_path()


def read_all(camera: AvCamera) -> tuple[list[Frame], CameraError | None]:
    """Every frame the camera gives, and the CameraError that ended them, if one did."""
    frames: list[Frame] = []
    try:
        for frame in camera.frames():
            frames.append(frame)
    except CameraError as e:
        return frames, e
    return frames, None


def count_packets(path: Path) -> tuple[int, int]:
    """(video packets, keyframes) in a file, counted with PyAV directly."""
    packets = keyframes = 0
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            if packet.size or packet.dts is not None:
                packets += 1
                keyframes += packet.is_keyframe
    return packets, keyframes


def mjpeg_clip(path: Path, frames: int, garbage: set[int] | None = None) -> Path:
    """A small MJPEG AVI cut from the footage; packets numbered in `garbage` hold random
    bytes instead of a picture, as a flaky link or a bad sector leaves them."""
    rng = random.Random(7)
    with av.open(str(vtest_path())) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuvj420p"
        pictures = itertools.islice(src.decode(video=0), frames)
        encoded = [p for f in pictures for p in stream.encode(
            f.reformat(width=160, height=120, format="yuvj420p"))]
        encoded += stream.encode(None)
        for number, packet in enumerate(encoded):
            if number in (garbage or set()):
                bad = av.Packet(rng.randbytes(packet.size))
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                bad.stream = stream
                packet = bad
            out.mux(packet)
    return path


class FakeClock:
    """Monotonic time that moves only when the camera sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# -- the picture -------------------------------------------------------------------------


def test_output_size_scales_every_frame_for_a_low_resolution_detector(footage: Path) -> None:
    with AvCamera(footage, output_size=(384, 288), realtime=False) as camera:
        assert camera.size == (384, 288)
        assert camera.fps == 10.0
        frames = list(itertools.islice(camera.frames(), 5))
    assert {f.image.shape for f in frames} == {(288, 384, 3)}


def test_a_whole_file_plays_to_its_end_and_stops(footage: Path) -> None:
    with AvCamera(footage, realtime=False) as camera:
        frames, error = read_all(camera)
        assert error is None
        assert len(frames) == VTEST_FRAMES
        assert camera.frames_decoded == VTEST_FRAMES
        assert camera.decode_errors == 0
    assert frames[-1].pts_s == pytest.approx((VTEST_FRAMES - 1) / 10)


def test_the_recorder_tap_sees_every_packet_before_its_frame(footage: Path) -> None:
    packets, keyframes = count_packets(footage)
    seen: list[tuple[bool, int, int]] = []
    delivered: list[Frame] = []

    def sink(packet: Any) -> None:
        seen.append((packet.is_keyframe, packet.size, len(delivered)))

    with AvCamera(footage, realtime=False, packet_sink=sink) as camera:
        for frame in camera.frames():
            delivered.append(frame)
        assert camera.packets == packets
    assert len(seen) == packets == VTEST_FRAMES
    assert sum(key for key, _, _ in seen) == keyframes > 1
    assert seen[0][0], "a stream starts on a keyframe"
    assert all(size > 0 for _, size, _ in seen)
    # Packet n reaches the tap before frame n reaches detection.
    assert all(before <= n for n, (_, _, before) in enumerate(seen))
    assert len(delivered) == VTEST_FRAMES


def test_a_looping_file_starts_again_with_time_running_on(footage: Path) -> None:
    with AvCamera(footage, realtime=False, loop=True) as camera:
        frames = list(itertools.islice(camera.frames(), VTEST_FRAMES + 5))
        assert camera.packets >= VTEST_FRAMES + 5
    assert [f.index for f in frames] == list(range(VTEST_FRAMES + 5))
    assert (frames[VTEST_FRAMES].image == frames[0].image).all()
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))  # type: ignore[operator]
    assert pts[VTEST_FRAMES] == pytest.approx(VTEST_FRAMES / 10)


def test_realtime_delivers_a_file_at_its_frame_rate(footage: Path) -> None:
    clock = FakeClock()
    with AvCamera(footage, clock=clock.time, sleep=clock.sleep) as camera:
        frames = list(itertools.islice(camera.frames(), 20))
    assert clock.sleeps, "a paced file waits between frames"
    first = frames[0]
    for frame in frames:
        assert frame.pts_s is not None and first.pts_s is not None
        assert frame.captured_at - first.captured_at == pytest.approx(frame.pts_s - first.pts_s)


def test_without_realtime_a_file_is_read_as_fast_as_it_decodes(footage: Path) -> None:
    clock = FakeClock()
    with AvCamera(footage, realtime=False, clock=clock.time, sleep=clock.sleep) as camera:
        list(itertools.islice(camera.frames(), 20))
    assert clock.sleeps == []


# -- broken files ------------------------------------------------------------------------


def test_random_bytes_are_refused_on_open(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(random.Random(1).randbytes(200_000))
    with pytest.raises(CameraError, match="cannot read it as video") as caught:
        AvCamera(junk).open()
    assert str(junk) in str(caught.value)


def test_a_text_file_is_not_a_camera(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("pole 17: camera replaced\n" * 200)
    with pytest.raises(CameraError, match="no video stream"):
        AvCamera(notes).open()


def test_a_sound_file_is_not_a_camera(tmp_path: Path) -> None:
    sound = tmp_path / "siren.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5)))
                               for i in range(8000)))
    with pytest.raises(CameraError, match="no video stream"):
        AvCamera(sound).open()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no such file") as caught:
        AvCamera(tmp_path / "gone.avi").open()
    assert "gone.avi" in str(caught.value)


def test_a_file_cut_short_gives_its_frames_then_says_it_is_truncated(
        footage: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    data = footage.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 10])
    with AvCamera(cut, realtime=False) as camera:
        frames, error = read_all(camera)
        packets = camera.packets
    assert 0 < len(frames) < VTEST_FRAMES
    assert len(frames) >= packets - 1  # every whole packet before the cut became a frame
    assert error is not None
    assert "truncated" in str(error) and f"of the {VTEST_FRAMES} frames" in str(error)
    assert str(cut) in str(error)


def test_a_looping_file_that_is_truncated_stops_instead_of_looping(
        footage: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    data = footage.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 10])
    with AvCamera(cut, realtime=False, loop=True) as camera:
        frames, error = read_all(camera)
    assert error is not None and "truncated" in str(error)
    assert len(frames) < VTEST_FRAMES


def test_corrupt_packets_are_counted_and_skipped(tmp_path: Path) -> None:
    clip = mjpeg_clip(tmp_path / "flaky.avi", 30, garbage={5, 12})
    with AvCamera(clip, realtime=False) as camera:
        frames, error = read_all(camera)
        assert error is None
        assert camera.packets == 30
        assert camera.decode_errors == 2
    assert len(frames) == 28
    assert [f.index for f in frames] == list(range(28))


def test_a_stream_of_nothing_but_garbage_is_given_up(tmp_path: Path) -> None:
    clip = mjpeg_clip(tmp_path / "dead.avi", 120, garbage=set(range(120)))
    with AvCamera(clip, realtime=False) as camera:
        frames, error = read_all(camera)
    assert frames == []
    assert error is not None and "did not decode" in str(error)


# -- network and devices -----------------------------------------------------------------


@pytest.fixture
def http_server(footage: Path) -> Iterator[str]:
    """A real HTTP server publishing the footage directory; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(footage.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_http_stream_is_read_and_its_end_is_a_drop_out(http_server: str,
                                                          footage: Path) -> None:
    with AvCamera(f"{http_server}/{footage.name}") as camera:
        assert camera.kind == "network"
        frames, error = read_all(camera)
    assert len(frames) == VTEST_FRAMES
    assert {f.image.shape for f in frames} == {(576, 768, 3)}
    assert error is not None and "stream ended" in str(error)


class PartialServer:
    """An HTTP server on a raw socket that announces the whole file, sends its first third,
    then either holds the connection open saying nothing or hangs up."""

    def __init__(self, body: bytes, hang_up: bool) -> None:
        self.body, self.hang_up = body, hang_up
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # so the serving thread notices close()
        self.stopped = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/pole17.avi"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-msvideo\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(self.body))
            conn.sendall(self.body[: len(self.body) // 3])
            if self.hang_up:
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("hang_up", [False, True], ids=["stalls", "hangs-up"])
def test_a_server_that_stops_sending_mid_stream_gives_a_camera_error(
        footage: Path, hang_up: bool) -> None:
    server = PartialServer(footage.read_bytes(), hang_up=hang_up)
    try:
        with AvCamera(server.url, read_timeout_s=1.0) as camera:
            frames, error = read_all(camera)
    finally:
        server.close()
    assert 0 < len(frames) < VTEST_FRAMES
    assert error is not None
    assert "127.0.0.1" in str(error)
    if not hang_up:
        assert "no data for 1 s (stream stalled)" in str(error)


def test_an_rtsp_camera_that_never_answers_is_given_up_on_open() -> None:
    held: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    url = f"rtsp://admin:secret@127.0.0.1:{listener.getsockname()[1]}/main"
    try:
        with pytest.raises(CameraError, match="no answer within") as caught:
            AvCamera(url, open_timeout_s=1.0, read_timeout_s=1.0).open()
    finally:
        accepting.join()
        listener.close()
        for conn in held:
            conn.close()
    assert "secret" not in str(caught.value)
    assert "admin:***@127.0.0.1" in str(caught.value)


def test_a_refused_connection_is_reported_as_such() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(CameraError, match="connection refused"):
        AvCamera(f"rtsp://127.0.0.1:{port}/main").open()


def test_a_missing_usb_camera_is_named() -> None:
    camera = make_camera("/dev/video99")
    assert isinstance(camera, AvCamera) and camera.kind == "device"
    with pytest.raises(CameraError, match="no such device") as caught:
        camera.open()
    assert "/dev/video99" in str(caught.value)


def test_sources_are_told_apart_by_their_url() -> None:
    assert source_kind("/dev/video0") == "device"
    assert source_kind("rtsp://10.0.0.9/main") == "network"
    assert source_kind("HTTP://10.0.0.9/video.mjpg") == "network"
    assert source_kind("/var/lib/safecity/demo.mp4") == "file"
    assert source_kind("file:///var/lib/safecity/demo.mp4") == "file"
    assert redact("rtsp://admin:p@ss:w0rd@10.0.0.9:554/main") == "rtsp://admin:***@10.0.0.9:554/main"
    assert redact("rtsp://10.0.0.9/main") == "rtsp://10.0.0.9/main"


def test_a_reader_that_pauses_and_resumes_gets_the_rest_of_the_file(footage: Path) -> None:
    with AvCamera(footage, realtime=False) as camera:
        first = list(itertools.islice(camera.frames(), 10))
        rest, error = read_all(camera)
    assert error is None
    assert [f.index for f in first + rest] == list(range(VTEST_FRAMES))
