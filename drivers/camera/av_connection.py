"""Reaching an FFmpeg source and saying why it failed: what kind of source a URL names, the
FFmpeg options that keep a dead network camera from hanging the reader, and the words a
technician reads when FFmpeg gives up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import av.error

SourceKind = Literal["file", "device", "network"]


def source_kind(url: str) -> SourceKind:
    """"device" for /dev/videoN, "network" for any URL scheme but file://, else "file"."""
    if re.fullmatch(r"/dev/video\d+", url):
        return "device"
    scheme, sep, _ = url.partition("://")
    return "network" if sep and scheme.lower() != "file" else "file"


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    # The host follows the last "@": a password may itself hold an unescaped "@".
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{slash}{path}"


def ffmpeg_options(url: str, read_timeout_s: float,
                   extra: Mapping[str, str]) -> dict[str, str]:
    """FFmpeg input options for `url`: I/O timeouts for network sources, then `extra`."""
    options: dict[str, str] = {}
    if source_kind(url) == "network":
        micros = str(round(read_timeout_s * 1_000_000))
        if url.lower().startswith(("rtsp://", "rtsps://")):
            # UDP drops packets on a busy pole link; over TCP a dead link shows as a timeout.
            options["rtsp_transport"] = "tcp"
            # The RTSP socket I/O timeout ("stimeout" before FFmpeg 5; PyAV wheels ship >= 6).
            options["timeout"] = micros
        else:
            options["rw_timeout"] = micros
    options.update(extra)
    return options


def explain(error: av.error.FFmpegError, kind: SourceKind, *, opening: bool, waited_s: float,
            open_timeout_s: float, read_timeout_s: float) -> str:
    """What went wrong, for a CameraError: `waited_s` is how long the failed call took."""
    detail = error.strerror or str(error)
    limit_s = min(open_timeout_s, read_timeout_s) if opening else read_timeout_s
    # FFmpeg's RTSP client reports its own timeout as invalid data: tell them apart by time.
    timed_out = isinstance(error, TimeoutError | av.error.ExitError) or (
        kind == "network" and isinstance(error, av.error.InvalidDataError)
        and waited_s >= 0.9 * limit_s)
    if timed_out and opening:
        return f"no answer within {waited_s:.0f} s; check the camera's power, network and URL"
    if timed_out:
        return (f"no data for {read_timeout_s:g} s (stream stalled); check the camera's power "
                "and network")
    known = _known(error, kind, detail)
    if known:
        return known
    if opening:
        return f"cannot open: {detail}"
    return f"reading failed: {detail}; check the camera's power and network"


def _known(error: av.error.FFmpegError, kind: SourceKind, detail: str) -> str:
    """The errors a technician can fix by name: a missing device, rights, a refused or wrong
    stream; empty for anything else."""
    device = kind == "device"
    if isinstance(error, FileNotFoundError):
        return ("no such device: is the camera plugged in? (ls /dev/video* lists them)"
                if device else "no such file")
    if isinstance(error, PermissionError):
        return ("permission denied: the service user must be in the 'video' group"
                if device else "permission denied")
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is the camera's stream enabled and the port right?"
    if isinstance(error, av.error.HTTPError | av.error.HTTPClientError):
        return f"the camera's server answered {detail}; check the URL and credentials"
    if isinstance(error, av.error.InvalidDataError):
        return ("the answer is not a video stream FFmpeg can read; check the URL"
                if kind == "network" else
                "FFmpeg cannot read it as video: corrupt, truncated or not a video")
    return ""
