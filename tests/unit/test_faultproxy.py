"""The fault proxy the uplink fault tests rely on, against a real echo server over real
sockets: it forwards faithfully, and each fault does what the fault tests assume."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.waiting import wait_for


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the proxy's resets reach here too
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(("127.0.0.1", server.server_address[1])) as p:
        yield p
    server.shutdown()
    server.server_close()


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=10)


def echo(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        assert chunk, "the proxy closed the connection"
        got += chunk
    return got


def nothing_arrives(s: socket.socket, within_s: float = 0.3) -> bool:
    s.settimeout(within_s)
    try:
        s.recv(1)  # bytes, or b"" for a close: either is something arriving
        return False
    except TimeoutError:
        return True
    finally:
        s.settimeout(10)


def test_bytes_pass_both_ways_unchanged_and_a_close_is_passed_on(proxy: FaultProxy) -> None:
    data = os.urandom(1 << 20)
    with connect(proxy) as s:
        assert echo(s, data) == data
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b"", "the echo server's close should come back through the proxy"
    wait_for(lambda: proxy.open_connections == 0, what="the proxy forgetting the connection")


def test_latency_holds_each_chunk_and_keeps_the_order(proxy: FaultProxy) -> None:
    proxy.delay(up_s=0.05, down_s=0.05)
    with connect(proxy) as s:
        assert echo(s, b"first") == b"first"
        for i in range(3):
            assert echo(s, f"msg-{i}".encode()) == f"msg-{i}".encode()
    assert proxy.stats.delayed_chunks >= 8, "each chunk should have waited, both ways"


def test_a_stall_holds_bytes_with_the_sockets_open_and_resume_delivers_them(
    proxy: FaultProxy,
) -> None:
    with connect(proxy) as s:
        assert echo(s, b"before") == b"before"
        proxy.stall()
        s.sendall(b"during")
        wait_for(lambda: proxy.held_bytes == len(b"during"), what="the proxy holding the bytes")
        assert nothing_arrives(s)
        proxy.resume()
        assert s.recv(64) == b"during"


def test_half_open_silences_open_connections_for_good_but_not_new_ones(
    proxy: FaultProxy,
) -> None:
    with connect(proxy) as old:
        assert echo(old, b"hello") == b"hello"
        assert proxy.half_open() == 1
        old.sendall(b"into the void")
        wait_for(lambda: proxy.stats.dropped == len(b"into the void"), what="the bytes dropped")
        assert nothing_arrives(old), "a half-open connection must neither answer nor close"
        with connect(proxy) as new:
            assert echo(new, b"new") == b"new"


def test_a_blackhole_eats_new_connections_until_lifted(proxy: FaultProxy) -> None:
    proxy.blackhole()
    with connect(proxy) as eaten:
        eaten.sendall(b"CONNECT")
        wait_for(lambda: proxy.stats.dropped == len(b"CONNECT"), what="the bytes eaten")
        assert nothing_arrives(eaten)
        proxy.blackhole(False)
        with connect(proxy) as s:
            assert echo(s, b"ok") == b"ok"
        assert nothing_arrives(eaten), "an eaten connection stays silent"


def test_reset_closes_every_connection_abruptly(proxy: FaultProxy) -> None:
    with connect(proxy) as a, connect(proxy) as b:
        assert echo(a, b"a") == b"a" and echo(b, b"b") == b"b"
        assert proxy.reset() == 2
        for s in (a, b):
            with pytest.raises(ConnectionResetError):
                s.recv(1)
        with connect(proxy) as c:
            assert echo(c, b"c") == b"c"


def test_a_trickle_still_delivers_everything_in_order(proxy: FaultProxy) -> None:
    proxy.trickle(200_000)
    data = os.urandom(50_000)
    with connect(proxy) as s:
        assert echo(s, data) == data
