"""Sample street footage for the demo, tests and benchmarks, fetched from Debian's archive.

`vtest.avi` (768×576, 795 frames of pedestrians and parked cars) ships in Debian's
`opencv-doc` package (OpenCV's sample data, Apache-2.0 / BSD-3-Clause). We download that
package with apt (no root needed), take the one file out and check its SHA-256, so every
machine runs on the same bytes. The file is cached; set SAFECITY_FOOTAGE_DIR to move the
cache (default: ~/.cache/safecity-edge/footage).

vtest.avi is MS-MPEG4; an IP camera sends H.264. `vtest_h264_path()` gives the same pictures
as such a camera would send them (H.264, a keyframe every 2 s, no B-frames), encoded once
into the same cache, so the demo's node records it by stream copy as it would a camera.

`python -m devkit.demo.footage` fetches it, makes the H.264 copy and prints both paths.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.video.frame import PictureType

VTEST_NAME = "vtest.avi"
VTEST_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
VTEST_FRAMES = 795
VTEST_FPS = 10
# As IP cameras are usually set: a keyframe every 2 s (where segments and clips can start),
# no B-frames; constant quality 23 is libx264's default, a moderate street picture.
H264_GOP = 2 * VTEST_FPS
H264_CRF = 23
_PACKAGE = "opencv-doc"
_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


class FootageError(RuntimeError):
    """The sample footage could not be fetched or does not match its known hash."""


def cache_dir() -> Path:
    configured = os.environ.get("SAFECITY_FOOTAGE_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "safecity-edge" / "footage"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def vtest_path() -> Path:
    """Path of a verified vtest.avi, fetched from Debian's archive the first time."""
    target = cache_dir() / VTEST_NAME
    if target.exists() and _sha256(target) == VTEST_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="footage-") as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", _PACKAGE], work, "download the opencv-doc package")
        debs = sorted(work.glob(f"{_PACKAGE}_*.deb"))
        if not debs:
            raise FootageError(f"apt-get download {_PACKAGE} produced no .deb in {work}")
        # S603/S607 here and below: Debian's own tools from PATH, fixed arguments, no shell
        tar = subprocess.run(  # noqa: S603
            ["dpkg-deb", "--fsys-tarfile", str(debs[0])],  # noqa: S607
            capture_output=True, check=False,
        )
        if tar.returncode != 0:
            raise FootageError(f"dpkg-deb could not read {debs[0].name}: {tar.stderr.decode()}")
        extract = subprocess.run(  # noqa: S603
            ["tar", "-x", "-C", str(work), _MEMBER],  # noqa: S607
            input=tar.stdout, capture_output=True, check=False,
        )
        if extract.returncode != 0:
            raise FootageError(f"{_MEMBER} not in {debs[0].name}: {extract.stderr.decode()}")
        fetched = work / _MEMBER
        got = _sha256(fetched)
        if got != VTEST_SHA256:
            raise FootageError(
                f"{VTEST_NAME} from {debs[0].name} has SHA-256 {got}, expected {VTEST_SHA256}"
            )
        partial = target.with_suffix(".partial")
        partial.write_bytes(fetched.read_bytes())
        partial.replace(target)
    return target


def vtest_h264_path(gop: int = H264_GOP, crf: int = H264_CRF) -> Path:
    """Path of vtest.avi as an IP camera would send it: H.264 (libx264, yuv420p) in MP4 at
    its own 10 fps, a keyframe every `gop` frames and nowhere else, no B-frames, constant
    quality `crf`. Made the first time (a few seconds) next to vtest.avi; the name carries
    the parameters, and the file appears under it only once complete."""
    source = vtest_path()
    target = source.with_name(f"vtest-h264-{VTEST_FPS}fps-gop{gop}-crf{crf}.mp4")
    if target.exists():
        return target
    partial = target.with_name(f".{target.stem}.{os.getpid()}.partial.mp4")
    try:
        _encode_h264(source, partial, gop, crf)
        partial.replace(target)
    except (av.error.FFmpegError, OSError) as e:
        raise FootageError(f"cannot make the H.264 copy of {source} in {target.parent}: "
                           f"{e}") from e
    finally:
        partial.unlink(missing_ok=True)
    return target


def _encode_h264(source: Path, out_path: Path, gop: int, crf: int) -> None:
    rate = Fraction(VTEST_FPS)
    with av.open(str(source)) as src, av.open(str(out_path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = src.streams.video[0].width, src.streams.video[0].height
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.options = {
            "preset": "veryfast", "tune": "zerolatency", "crf": str(crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        for number, frame in enumerate(src.decode(video=0)):
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = number, 1 / rate
            frame.pict_type = PictureType.NONE  # keyframes where the GOP says, not the source
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        # S603: cmd is one of this module's fixed commands (apt-get download), no shell
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,  # noqa: S603
                              check=False)
    except FileNotFoundError:
        raise FootageError(f"cannot {what}: {cmd[0]} not found (this needs Debian's apt)") from None
    if done.returncode != 0:
        raise FootageError(f"cannot {what}: {' '.join(cmd)} said: {done.stderr.strip()}")


def main() -> int:
    try:
        print(vtest_path())
        print(vtest_h264_path())
    except FootageError as e:
        print(f"footage: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
