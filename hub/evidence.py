"""The hub's evidence store, as the demo runs it: where poles upload the clips the hub asks
for, and the check of an uploaded clip against its signed manifest.

EvidenceStore is a real HTTP server (http.server, one thread per upload) on loopback that
takes whole-file PUTs (with a Content-Length) into one folder and answers 201 Created; it
stands in for the object store whose presigned URLs a city hub hands out. check_clip() is
what the hub does with a delivered clip: the manifest is for the node and camera asked for,
its Ed25519 signature holds under the node's public key, and the clip's video matches the
hashes of the recorded segments it lists.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contract.commands import ClipResult
from contract.evidence.manifest import Verdict, verify
from drivers.storage import replace_synced

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 2 << 30  # an hour's clip at a camera's 4 Mbit/s is ~1.8 GB
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # one file name, never a path


class EvidenceStore:
    """Takes `PUT /<name>` into `folder`; url(name) is where a pole uploads that file.

    An upload is written to a hidden temporary file and appears under its name only when
    every byte has arrived, so a broken upload leaves nothing behind. A resumable PUT
    (Content-Range) is refused with 400, as RFC 9110 has a server do that cannot take one;
    the uploader then sends the whole file.
    """

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True  # a stalled upload must not hold up stop()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._received: dict[str, tuple[int, str]] = {}

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="evidence-store", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        """Where a pole PUTs the file `name` (ValueError for a name the store refuses)."""
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a file name the evidence store takes")
        host, port = self.address
        return f"http://{host}:{port}/{name}"

    def path(self, name: str) -> Path:
        return self.folder / name

    def received(self, name: str) -> tuple[int, str] | None:
        """(bytes, SHA-256 hex) of the last complete upload of `name`; None if none came."""
        with self._lock:
            return self._received.get(name)

    def stop(self) -> None:
        """Stop taking uploads; safe to call again. The files stay."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def store(self, name: str, body: io.BufferedIOBase, length: int) -> HTTPStatus:
        """Write `length` bytes of `body` as `name`: 201, or why not."""
        target = self.folder / name
        tmp = self.folder / f".{name}.{threading.get_ident()}.part"
        digest = hashlib.sha256()
        got = 0
        try:
            with tmp.open("wb") as f:
                while got < length:
                    chunk = body.read(min(_CHUNK, length - got))
                    if not chunk:
                        log.warning("upload of %s broke off after %d of %d bytes; nothing "
                                    "stored", name, got, length)
                        return HTTPStatus.BAD_REQUEST
                    digest.update(chunk)
                    f.write(chunk)
                    got += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            replace_synced(tmp, target)
        except OSError as e:
            log.error("evidence store cannot write %s: %s", target, e)
            return HTTPStatus.INSUFFICIENT_STORAGE
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._received[name] = (length, digest.hexdigest())
        log.info("evidence store: %s received, %d bytes", name, length)
        return HTTPStatus.CREATED


def _handler_for(store: EvidenceStore) -> type[BaseHTTPRequestHandler]:
    class Upload(BaseHTTPRequestHandler):
        server_version = "safecity-evidence/1"

        def do_PUT(self) -> None:
            name = urlsplit(self.path).path.lstrip("/")  # a query (a URL's token) is no name
            length_text = self.headers.get("Content-Length")
            if not _NAME.match(name):
                self._answer(HTTPStatus.BAD_REQUEST, "the path must be one file name")
            elif self.headers.get("Content-Range") is not None:
                self._answer(HTTPStatus.BAD_REQUEST, "no resumable uploads: send it whole")
            elif length_text is None or not length_text.isdigit():
                self._answer(HTTPStatus.LENGTH_REQUIRED, "a PUT needs a Content-Length")
            elif int(length_text) > MAX_UPLOAD_BYTES:
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"at most {MAX_UPLOAD_BYTES} bytes")
            else:
                status = store.store(name, self.rfile, int(length_text))
                self._answer(status, "" if status == HTTPStatus.CREATED else
                             "the upload did not arrive whole")

        def _answer(self, status: HTTPStatus, why: str) -> None:
            body = why.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status != HTTPStatus.CREATED:
                self.send_header("Connection", "close")  # the body may be unread
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("evidence store %s: " + format, self.address_string(), *args)

    return Upload


def check_clip(clip: Path, result: ClipResult, public_key: Ed25519PublicKey, *,
               node: str, camera: str) -> Verdict:
    """Check a delivered clip as the hub must before it is evidence: the signed manifest in
    the node's response names the node and camera asked for, the clip verifies against it
    (signature, each segment's video hashes, hash chain, file hash) under the node's key,
    and the response's own size and hash are the ones the node signed."""
    manifest = result.manifest
    named = (manifest.get("node"), manifest.get("camera"))
    if named != (node, camera):
        return Verdict(False, f"the manifest is for node {named[0]!r} camera {named[1]!r}, "
                       f"not node {node!r} camera {camera!r} as asked")
    if not clip.is_file():
        return Verdict(False, f"no clip at {clip}: the upload did not arrive")
    verdict = verify(clip, manifest, public_key)
    if not verdict.ok:
        return verdict
    signed = manifest["clip"]
    if (result.bytes, result.sha256) != (signed["bytes"], signed["sha256"]):
        return Verdict(False, "the response's size or SHA-256 differs from the signed manifest's")
    return verdict
