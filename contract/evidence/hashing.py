"""The hashes an evidence manifest holds, computed the same way by the node that signs a clip
and by whoever checks it.

A clip's video is hashed per range of its packets (the ones one recorded segment put in it):
SHA-256 over each packet in demux order, big-endian int64 pts, int64 dts, then its bytes, as
the MP4 holds it. A file is hashed whole (its size and SHA-256). Times are written as
ISO 8601 UTC to the millisecond.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import av
import av.error
from av.container import InputContainer
from av.packet import Packet
from av.video.stream import VideoStream

_CHUNK = 1 << 20
_NO_TS = -(1 << 63)  # FFmpeg's AV_NOPTS_VALUE, for a packet without a timestamp


class ClipError(RuntimeError):
    """The clip cannot be made; the message says why, for a technician."""


def utc_iso(t: float) -> str:
    """Unix seconds as ISO 8601 UTC to the millisecond: 2026-11-21T14:59:14.019Z."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def part_hashes(path: Path, ranges: Sequence[tuple[int, int]]) -> tuple[list[str], int]:
    """Hash the clip's video packets in each (first, count) range, in demux order.

    Returns one hex digest per range and how many packets the clip holds in all.
    """
    digests = [hashlib.sha256() for _ in ranges]
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    firsts = [ranges[i][0] for i in order]
    total = 0
    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            for number, packet in enumerate(video_packets(container, stream)):
                total = number + 1
                at = bisect.bisect_right(firsts, number) - 1
                if at < 0 or number >= firsts[at] + ranges[order[at]][1]:
                    continue
                digest = digests[order[at]]
                pts, dts = (_NO_TS if t is None else t for t in (packet.pts, packet.dts))
                digest.update(struct.pack(">qq", pts, dts))
                digest.update(memoryview(packet))
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise ClipError(f"{path.name} cannot be read as video: {why(e)}") from e
    return [d.hexdigest() for d in digests], total


def file_sha256(path: Path, *, sync: bool = False) -> tuple[int, str]:
    """(bytes, SHA-256 hex) of a file, read in 1 MiB chunks; `sync`: fsync it first."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        if sync:
            os.fsync(f.fileno())
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def video_packets(container: InputContainer,
                  stream: VideoStream) -> Iterator[Packet]:  # type: ignore[type-arg]
    """The stream's packets that hold data, in demux order (the ones a clip's hashes count)."""
    return (p for p in container.demux(stream) if p.size)


def why(error: BaseException) -> str:
    """What went wrong reading or writing video, for a technician."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)
