"""A release server for the firmware tests: a real HTTP server on 127.0.0.1 that serves
bundles and drops, stalls, ignores Range or fails on cue."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ReleaseServer(ThreadingHTTPServer):
    """Serves files by path. `faults` are played on the next GETs, one each: ("drop", n)
    hangs up after n bytes of body, ("stall", n) goes silent after n bytes, ("status", code)
    answers with that status. With `ranges` False it ignores Range and answers 200."""

    def __init__(self, files: dict[str, bytes], faults: list[tuple[str, int]],
                 ranges: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.faults, self.ranges = files, faults, ranges
        self.seen: list[str | None] = []  # the Range header of each GET
        self.lock, self.release = threading.Lock(), threading.Event()
        self.scheme = "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}{path}?token=s3cr3t"


class _Handler(BaseHTTPRequestHandler):
    server: ReleaseServer

    def do_GET(self) -> None:
        server, path = self.server, self.path.partition("?")[0]
        with server.lock:
            server.seen.append(self.headers["Range"])
            fault = server.faults.pop(0) if server.faults else ("", 0)
        if fault[0] == "status" or path not in server.files:
            self.send_error(fault[1] if fault[0] == "status" else 404)
            return
        body, start, stop = server.files[path], 0, len(server.files[path])
        asked = self.headers["Range"]
        if asked and server.ranges:
            first, _, last = asked.removeprefix("bytes=").partition("-")
            start, stop = int(first), min(int(last) + 1 if last else stop, stop)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        end = start + fault[1] if fault[0] in ("drop", "stall") else stop
        self.wfile.write(body[start:end])
        self.wfile.flush()
        if fault[0] == "stall":
            server.release.wait(10)

    def log_message(self, format: str, *args: Any) -> None:
        pass
