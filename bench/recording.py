"""Recording a 1080p30 H.264 camera: stream copy against decode-and-re-encode, bytes, export.

All in one run, on this machine, so every figure has its baseline beside it:

(a) the recorder as a camera worker runs it for a camera that is recorded: the stream
    demuxed at its own rate (as a camera sends it), every packet into a real `Recorder`
    (stream copy into 10 s MPEG-TS segments, SQLite index, budget keeper, the worker's
    5 s tick and report), in a process of its own; CPU (% of one core) over N s after a
    3 s warm-up, measured by that process on itself;
(b) the baseline in a process of its own: the same N s recorded by decoding every frame
    at 1080p and encoding it again with libx264 (`H264Encoder`, 4 Mbit/s) into the same
    segmenter; its CPU (x264 threads can take it past 100 %) and whether it kept up with
    the camera; ratio (a)/(b);
(c) bytes written (segments + index database and WAL) against the stream's bytes, in (a);
(d) exporting a 60 s clip from the middle of a recording of the whole stream (recorded
    flat out): `export_clip`, median of 5 runs; baseline: the same window decoded and
    encoded again with libx264 (ultrafast) into MP4, one run.
Every child process reports its peak RSS.

The stream is vtest.avi (768×576, 10 fps, real street footage) upscaled to 1920×1080 at
30 fps through a slow pan, so every frame moves and P-frames are the size a camera's are;
libx264 at 4 Mbit/s, a keyframe every 2 s, no B-frames, yuv420p, MP4. It is made once and
cached in ~/.cache/safecity-edge/bench (SAFECITY_BENCH_DIR moves it).

    python bench/recording.py [--seconds 60] [--quick] [--profile] [--markdown]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import math
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.frame import PictureType, VideoFrame
from report import Row, print_table

from devkit.demo.footage import vtest_path
from drivers.camera.av_source import AvCamera
from edge.config.recording import RecordingSection
from edge.record.index import INDEX_FILE, SegmentIndex
from edge.record.recorder import Recorder
from edge.record.segmenter import SEGMENT_SUFFIX, Segmenter

WIDTH, HEIGHT, FPS = 1920, 1080, 30
BITRATE = 4_000_000
GOP_S = 2.0
STREAM_S = 78  # 39 whole GOPs, from 780 of vtest's 795 frames; (a) and (b) need 3 s + N
PRESET = "superfast"  # at a fixed bitrate the preset changes quality, not packet sizes
STREAM_VERSION = 2  # bump when make_stream changes what it writes
WARMUP_S = 3.0
CLIP_S = 60.0
CAMERA = "bench"
REPORT_EVERY_S = 5.0  # as the camera worker's RECORDING_EVERY_S: tick() and report()
QUICK_S = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")



# --- the test stream ---

def bench_dir() -> Path:
    configured = os.environ.get("SAFECITY_BENCH_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "safecity-edge" / "bench"


def stream_path() -> Path:
    """The cached stream, named by everything that shapes its bytes."""
    return bench_dir() / (f"vtest-{WIDTH}x{HEIGHT}p{FPS}-{BITRATE // 1000}k-gop{GOP_S:g}s-"
                          f"{STREAM_S}s-{PRESET}-pan-v{STREAM_VERSION}.mp4")


def make_stream(path: Path) -> None:
    """Encode the test stream into `path` (written aside, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + f".{os.getpid()}.part")
    # A 16:9 window of the 4:3 source, scaled 3×, drifting a few source pixels a second.
    crop_w, crop_h = 640, 360
    gop = round(GOP_S * FPS)
    try:
        _encode_stream(part, crop_w, crop_h, gop)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)


def _encode_stream(part: Path, crop_w: int, crop_h: int, gop: int) -> None:
    import cv2  # here only: the recorder processes should not carry OpenCV in their RSS

    scale = WIDTH / crop_w
    with av.open(str(vtest_path())) as source, av.open(str(part), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        ctx = stream.codec_context
        ctx.bit_rate, ctx.gop_size, ctx.max_b_frames = BITRATE, gop, 0
        ctx.options = {"preset": PRESET, "x264-params":
                       f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:"
                       f"vbv-maxrate={BITRATE // 1000}:vbv-bufsize={2 * BITRATE // 1000}"}
        pictures = source.decode(video=0)
        image = next(pictures).to_ndarray(format="bgr24")
        per_source = round(FPS / float(source.streams.video[0].average_rate or 10))
        for k in range(STREAM_S * FPS):
            if k and k % per_source == 0:
                image = next(pictures).to_ndarray(format="bgr24")
            t = k / FPS
            x = (image.shape[1] - crop_w) / 2 * (1 + math.sin(2 * math.pi * t / 50))
            y = (image.shape[0] - crop_h) / 2 * (1 + 0.9 * math.sin(2 * math.pi * t / 70))
            warp = [[scale, 0.0, -x * scale], [0.0, scale, -y * scale]]
            big = cv2.warpAffine(image, np.array(warp), (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
            yuv = cv2.cvtColor(big, cv2.COLOR_BGR2YUV_I420)  # BT.601, 5× faster than swscale
            frame = VideoFrame.from_ndarray(yuv.astype(np.uint8, copy=False), format="yuv420p")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@dataclass(frozen=True)
class StreamFacts:
    codec: str
    profile: str
    duration_s: float
    bytes: int
    packets: int
    gop_frames: float
    keyframe_kb: float
    other_kb: float

    @property
    def mbit_s(self) -> float:
        return self.bytes * 8 / self.duration_s / 1e6


def stream_facts(path: Path) -> StreamFacts:
    """Measured from the file's packets (nothing decoded)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        sizes: list[int] = []
        keys: list[int] = []
        first = last = None
        for packet in container.demux(video):
            if not packet.size:
                continue
            if packet.is_keyframe:
                keys.append(len(sizes))
            sizes.append(packet.size)
            if packet.pts is not None and packet.time_base is not None:
                t = float(packet.pts * packet.time_base)
                first = t if first is None else min(first, t)
                last = t if last is None else max(last, t)
        rate = float(video.average_rate or FPS)
        duration = (last - first + 1 / rate) if first is not None and last is not None else 0.0
        gops = [b - a for a, b in itertools.pairwise(keys)]
        key_set = set(keys)
        return StreamFacts(
            codec=video.codec_context.name, profile=str(video.codec_context.profile),
            duration_s=duration, bytes=sum(sizes), packets=len(sizes),
            gop_frames=statistics.median(gops) if gops else float(len(sizes)),
            keyframe_kb=statistics.median(sizes[i] for i in keys) / 1e3,
            other_kb=statistics.median(s for i, s in enumerate(sizes) if i not in key_set) / 1e3)


# --- child processes: each measures itself and prints JSON on stdout ---

def cpu_s() -> tuple[float, float]:
    """(user, system) CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries the parent's peak over exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def machine_ticks() -> tuple[int, int]:
    """(busy, steal) CPU ticks of the whole machine, all cores, since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, steal


def machine_load(since: tuple[int, int], seconds: float) -> dict[str, float]:
    """What every process on the machine used since `since`, in % of one core (ours too):
    the cores are shared, so a figure here beside ours shows what else was running."""
    busy, steal = (b - a for a, b in zip(since, machine_ticks(), strict=True))
    return {"machine_pct": busy / CLK_TCK / seconds * 100,
            "steal_pct": steal / CLK_TCK / seconds * 100}


class Window:
    """The steady state: from WARMUP_S after the first packet until `seconds` later.

    `step` is called after each packet or frame is handled; counts and CPU are those
    between the window's ends. A profiler, if given, runs over the window only.
    """

    def __init__(self, seconds: float, profiler: cProfile.Profile | None = None) -> None:
        self.seconds, self.profiler = seconds, profiler
        self.first: float | None = None
        self.start: float | None = None
        self.end = 0.0
        self.count = self.bytes = 0
        self.cpu0 = self.cpu1 = (0.0, 0.0)
        self.ticks0 = (0, 0)
        self.load: dict[str, float] = {}

    def step(self, size: int) -> bool:
        """Account one item of `size` bytes; True when the window is over."""
        now = time.monotonic()
        if self.first is None:
            self.first = now
        if self.start is None:
            if now - self.first >= WARMUP_S:
                self.start, self.cpu0, self.ticks0 = now, cpu_s(), machine_ticks()
                if self.profiler is not None:
                    self.profiler.enable()
            return False
        self.count += 1
        self.bytes += size
        if now - self.start < self.seconds:
            return False
        self.cpu1, self.end = cpu_s(), now
        self.load = machine_load(self.ticks0, now - self.start)
        if self.profiler is not None:
            self.profiler.disable()
        return True

    def result(self) -> dict[str, Any]:
        assert self.start is not None, "the stream ended before the window"
        span = self.end - self.start
        user, system = (b - a for a, b in zip(self.cpu0, self.cpu1, strict=True))
        return {"span_s": span, "cpu_pct": (user + system) / span * 100,
                "user_pct": user / span * 100, "sys_pct": system / span * 100,
                "count": self.count, "bytes": self.bytes, **self.load}


def recording_section() -> RecordingSection:
    return RecordingSection.model_validate({"segment_s": 10, "budget": "50GB"})


def written_bytes(root: Path) -> dict[str, int]:
    """What the recordings take on disk: segment files, and the index with its WAL."""
    segments = list(root.rglob(f"*{SEGMENT_SUFFIX}"))
    index = sum(p.stat().st_size for p in (root / INDEX_FILE, root / f"{INDEX_FILE}-wal")
                if p.exists())
    return {"segment_files": len(segments),
            "segment_bytes": sum(p.stat().st_size for p in segments), "index_bytes": index}


def print_profile(profiler: cProfile.Profile, what: str) -> None:
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(25)
    print(f"--- profile of {what} ---\n{text.getvalue()}", file=sys.stderr)


def child_copy(path: str, seconds: float, root: str, profile: bool) -> dict[str, Any]:
    """(a): a real Recorder fed by the camera's demuxer at the stream's own rate."""
    recorder = Recorder(recording_section(), Path(root), CAMERA, realtime=True)
    camera = AvCamera(path, realtime=True, loop=True, packet_sink=recorder.packet)
    camera.open()
    mode = recorder.start(camera.video_stream, camera.fps)
    if mode != "copy":
        raise SystemExit(f"the recorder chose {mode or 'nothing'!r} for {path}, not stream copy")
    profiler = cProfile.Profile() if profile else None
    window = Window(seconds, profiler)
    total_packets = total_bytes = 0
    next_report = time.monotonic()
    for packet in camera.demux():
        total_packets += 1
        total_bytes += packet.size
        now = time.monotonic()
        if now >= next_report:  # as the camera worker does, every 5 s
            next_report = now + REPORT_EVERY_S
            recorder.tick()
            recorder.report()
        if window.step(packet.size):
            break
    report = recorder.report()
    recorder.stop()  # the open segment finished and indexed; the index still open (its WAL)
    disk = written_bytes(Path(root))
    recorder.close()
    camera.close()
    if profiler is not None:
        print_profile(profiler, f"the recorder's {seconds:.0f} s window")
    return {**window.result(), **disk, "total_packets": total_packets,
            "total_bytes": total_bytes, "segments": report["segments_written"],
            "dropped_packets": report["dropped_packets"], "rss_mb": peak_rss_mb()}


def child_reencode(path: str, seconds: float, root: str) -> dict[str, Any]:
    """(b): decode every frame, encode it again with libx264, segment the new packets."""
    from edge.record.encode import H264Encoder

    index = SegmentIndex(Path(root))
    encoder = H264Encoder(WIDTH, HEIGHT, FPS, bitrate=BITRATE, codec="libx264")
    segmenter = Segmenter(index, CAMERA, encoder.stream, segment_s=10, realtime=True)
    camera = AvCamera(path, realtime=True, loop=True)
    camera.open()
    window = Window(seconds)
    for frame in camera.frames():
        packets = encoder.encode(frame.image, frame.pts_s if frame.pts_s is not None
                                 else frame.captured_at)
        for packet in packets:
            segmenter.write(packet)
        if window.step(sum(p.size for p in packets)):
            break
    for packet in encoder.flush():
        segmenter.write(packet)
    segmenter.close()
    encoder.close()
    camera.close()
    index.close()
    return {**window.result(), "segments": segmenter.state.segments,
            "expected_frames": round(seconds * FPS), "rss_mb": peak_rss_mb()}


def child_record_flat(path: str, root: str) -> dict[str, Any]:
    """The whole stream recorded as fast as it demuxes, for the export to cut from."""
    recorder = Recorder(recording_section(), Path(root), CAMERA, realtime=False)
    camera = AvCamera(path, realtime=False, packet_sink=recorder.packet)
    camera.open()
    recorder.start(camera.video_stream, camera.fps)
    started, cpu0 = time.perf_counter(), cpu_s()
    for _ in camera.demux():
        pass
    recorder.close()
    elapsed, cpu1 = time.perf_counter() - started, cpu_s()
    camera.close()
    return {"seconds": elapsed, "cpu_s": sum(cpu1) - sum(cpu0), "rss_mb": peak_rss_mb()}


def child_export(root: str, start: float, end: float, out_dir: str, runs: int,
                 profile: bool) -> dict[str, Any]:
    """(d): `export_clip` of [start, end), `runs` times, each into a new file."""
    from edge.record.clips import export_clip

    index = SegmentIndex(Path(root))
    times: list[float] = []
    cpu: list[float] = []
    clip = None
    ticks0, started_all = machine_ticks(), time.perf_counter()
    for i in range(runs):
        out = Path(out_dir) / f"clip-{i}.mp4"
        started, cpu0 = time.perf_counter(), cpu_s()
        clip = export_clip(index, CAMERA, start, end, out)
        times.append(time.perf_counter() - started)
        cpu.append(sum(cpu_s()) - sum(cpu0))
    load = machine_load(ticks0, time.perf_counter() - started_all)
    if profile:  # one more run, outside the timed ones
        profiler = cProfile.Profile()
        profiler.enable()
        export_clip(index, CAMERA, start, end, Path(out_dir) / "clip-profiled.mp4")
        profiler.disable()
        print_profile(profiler, "export_clip")
    index.close()
    assert clip is not None
    return {"times_s": times, "cpu_s": cpu, "clip_bytes": clip.bytes,
            "clip_start": clip.start, "clip_end": clip.end, "rss_mb": peak_rss_mb(), **load}


def child_export_reencode(root: str, start: float, end: float, out: str) -> dict[str, Any]:
    """(d) baseline: the window decoded from the segments and encoded again into MP4."""
    index = SegmentIndex(Path(root))
    started, cpu0, ticks0 = time.perf_counter(), cpu_s(), machine_ticks()
    frames = 0
    with av.open(out, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.bit_rate = BITRATE
        stream.codec_context.gop_size = round(GOP_S * FPS)
        stream.codec_context.options = {"preset": "ultrafast"}
        for segment in index.between(CAMERA, start, end):
            with av.open(str(index.file(segment))) as source:
                video = source.streams.video[0]
                video.codec_context.thread_type = "AUTO"  # the baseline at its fastest
                first: float | None = None
                for frame in source.decode(video):
                    first = frame.time if first is None else first
                    wall = segment.start + frame.time - first
                    if not start <= wall < end:
                        continue
                    frame.pts = round((wall - start) * FPS)
                    frame.time_base = Fraction(1, FPS)
                    frame.pict_type = PictureType.NONE  # keyframes where the encoder puts them
                    output.mux(stream.encode(frame))
                    frames += 1
        output.mux(stream.encode(None))
    elapsed, cpu1 = time.perf_counter() - started, cpu_s()
    index.close()
    return {"seconds": elapsed, "cpu_s": sum(cpu1) - sum(cpu0), "frames": frames,
            "bytes": Path(out).stat().st_size, "rss_mb": peak_rss_mb(),
            **machine_load(ticks0, elapsed)}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "copy": child_copy, "reencode": child_reencode, "record-flat": child_record_flat,
    "export": child_export, "export-reencode": child_export_reencode}


def run_child(kind: str, **params: Any) -> dict[str, Any]:
    """Run one child process of this script; its stderr passes through, stdout is JSON."""
    done = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(params)],
                          stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the {kind!r} process failed (exit {done.returncode}); its error "
                         "is above")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the table ---

def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info}")


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, help="length of the (a) and (b) windows "
                   f"(default 60, {QUICK_S:.0f} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke check: {QUICK_S:.0f} s windows, one export run")
    p.add_argument("--profile", action="store_true",
                   help="profile (a)'s window and one more export_clip with cProfile; "
                   "top functions go to stderr")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, params = args.child
        print(json.dumps(CHILDREN[kind](**json.loads(params))))
        return 0
    seconds = args.seconds or (QUICK_S if args.quick else 60.0)
    export_runs = 1 if args.quick else 5

    path = stream_path()
    made = "cached"
    if not path.exists():
        print(f"making the test stream {path} ...", file=sys.stderr)
        started = time.monotonic()
        make_stream(path)
        made = f"generated in {time.monotonic() - started:.0f} s"
        print(f"test stream {made}", file=sys.stderr)
    facts = stream_facts(path)

    with tempfile.TemporaryDirectory(prefix="bench-recording-") as tmp:
        work = Path(tmp)
        print(f"(a) stream-copy recorder, real time, {WARMUP_S:.0f} + {seconds:.0f} s ...",
              file=sys.stderr)
        copy = run_child("copy", path=str(path), seconds=seconds, root=str(work / "copy"),
                         profile=args.profile)
        print(f"(b) decode + re-encode recorder, real time, {WARMUP_S:.0f} + {seconds:.0f} s ...",
              file=sys.stderr)
        again = run_child("reencode", path=str(path), seconds=seconds,
                          root=str(work / "reencode"))
        print("(d) recording the whole stream flat out ...", file=sys.stderr)
        flat = run_child("record-flat", path=str(path), root=str(work / "flat"))
        index = SegmentIndex(work / "flat")
        segments = index.segments(CAMERA)
        index.close()
        middle = (segments[0].start + segments[-1].end) / 2
        start, end = middle - CLIP_S / 2, middle + CLIP_S / 2
        print(f"(d) export_clip of {CLIP_S:.0f} s, {export_runs} run(s) ...", file=sys.stderr)
        (work / "clips").mkdir()
        export = run_child("export", root=str(work / "flat"), start=start, end=end,
                           out_dir=str(work / "clips"), runs=export_runs, profile=args.profile)
        print(f"(d) decode + re-encode export of {CLIP_S:.0f} s ...", file=sys.stderr)
        slow = run_child("export-reencode", root=str(work / "flat"), start=start, end=end,
                         out=str(work / "reencoded.mp4"))

    written = copy["segment_bytes"] + copy["index_bytes"]
    profiled = " (profiled)" if args.profile else ""
    export_s = statistics.median(export["times_s"])
    kept = again["count"] / again["expected_frames"]
    rows = [
        Row(f"(a) recorder CPU, stream copy, real time{profiled}",
            f"{copy['cpu_pct']:.2f} % of a core",
            f"{again['cpu_pct']:.0f} % (b)", f"{copy['cpu_pct'] / again['cpu_pct']:.3f}×",
            "≤ 3 %"),
        Row("(a) user / system CPU", f"{copy['user_pct']:.2f} / {copy['sys_pct']:.2f} %",
            f"{copy['count']} packets, {mb(copy['bytes'])} in {copy['span_s']:.1f} s"),
        Row("(b) decode + re-encode recorder CPU", f"{again['cpu_pct']:.0f} % of a core",
            f"user {again['user_pct']:.0f} / system {again['sys_pct']:.0f} %"),
        Row("(b) kept up with the camera", f"{again['count']}/{again['expected_frames']} frames",
            f"in {again['span_s']:.1f} s", f"{kept:.2f}×", "1.00×"),
        Row("(c) bytes written ÷ stream bytes", f"{written / copy['total_bytes']:.4f}",
            f"{mb(written)} written ({copy['segment_files']} segments + index "
            f"{copy['index_bytes'] / 1e3:.0f} kB) for {mb(copy['total_bytes'])} in "
            f"{copy['total_packets']} packets",
            f"segments {copy['segment_bytes'] / copy['total_bytes']:.4f}", "≤ 1.05"),
        Row(f"(d) export_clip, {CLIP_S:.0f} s clip", f"median {export_s:.3f} s",
            f"{slow['seconds']:.1f} s re-encode (ultrafast)", f"{export_s / slow['seconds']:.4f}×",
            "< 1 s"),
        Row("(d) export_clip runs", f"min {min(export['times_s']):.3f} / max "
            f"{max(export['times_s']):.3f} s", f"{len(export['times_s'])} run(s), CPU median "
            f"{statistics.median(export['cpu_s']):.3f} s",
            f"clip {export['clip_end'] - export['clip_start']:.1f} s, "
            f"{mb(export['clip_bytes'])}"),
        Row("(d) re-encode export", f"{slow['frames']} frames",
            f"CPU {slow['cpu_s']:.1f} s", f"{mb(slow['bytes'])}"),
        Row("(d) whole stream recorded flat out", f"{flat['seconds']:.2f} s",
            f"{facts.duration_s:.0f} s of video, CPU {flat['cpu_s']:.2f} s",
            f"{facts.duration_s / flat['seconds']:.0f}× real time"),
    ]
    for name, child in (("(a) copy recorder", copy), ("(b) re-encode recorder", again),
                        ("(d) flat-out recorder", flat), ("(d) export_clip", export),
                        ("(d) re-encode export", slow)):
        rows.append(Row(f"peak RSS, {name} process", f"{child['rss_mb']:.0f} MB"))

    print(f"machine: {machine()}")
    print(f"stream: {path.name} ({made}): {WIDTH}x{HEIGHT} {facts.codec} {facts.profile}, "
          f"{FPS} fps, {facts.duration_s:.1f} s, {facts.mbit_s:.2f} Mbit/s, keyframe every "
          f"{facts.gop_frames:.0f} frames ({facts.gop_frames / FPS:.2f} s), median packet: "
          f"keyframe {facts.keyframe_kb:.0f} kB, other {facts.other_kb:.1f} kB")
    print(f"windows: {seconds:.0f} s after {WARMUP_S:.0f} s warm-up; export: {export_runs} "
          f"run(s) of a {CLIP_S:.0f} s clip from the middle of a {len(segments)}-segment "
          "recording")
    print("machine load while measuring, every process (ours too), % of one core of "
          f"{os.cpu_count()}: " + ", ".join(
              f"{name} {child['machine_pct']:.0f} % (steal {child['steal_pct']:.0f} %)"
              for name, child in (("(a)", copy), ("(b)", again), ("(d) export_clip", export),
                                  ("(d) re-encode", slow))))
    print()
    print_table(rows, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
