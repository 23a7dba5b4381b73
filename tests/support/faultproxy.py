"""A TCP proxy between a node and its broker that misbehaves on demand, as a bad mobile
link or a broken middlebox would: added latency per direction, a stall (nothing moves
either way, sockets stay open), half-open connections (silenced forever, never closed),
a blackhole for new connections, abrupt resets, and a bandwidth trickle.

It forwards bytes and knows nothing of MQTT, so TLS passes through untouched; the one
exception, `drop_pubacks`, needs plaintext MQTT (made with `mqtt_frames=True`) and cuts the
broker's byte stream into packets to lose some PUBACKs, as a broken middlebox can. The proxy
runs its own asyncio loop on a thread; every fault switch is thread-safe and takes effect
before it returns.

    with FaultProxy(("127.0.0.1", broker.port)) as proxy:
        proxy.stall()          # ... longer than the node's keepalive ...
        proxy.resume()
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

UP, DOWN = "up", "down"  # client → target, target → client
_CHUNK = 65536


@dataclass
class ProxyStats:
    accepted: int = 0  # connections accepted, including blackholed ones
    forwarded: dict[str, int] = field(default_factory=lambda: {UP: 0, DOWN: 0})  # bytes
    dropped: int = 0  # bytes read from a silenced connection and thrown away
    delayed_chunks: int = 0  # chunks that waited for the added latency
    resets: int = 0  # connections closed abruptly by reset()
    dropped_pubacks: int = 0  # PUBACKs from the target thrown away (drop_pubacks)


@dataclass(eq=False)
class _Conn:
    """One accepted connection and, unless blackholed, its connection to the target."""

    n: int
    silenced: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    held: int = 0  # bytes read but not yet written on


class FaultProxy:
    """Forwards every connection on (host, port) to `target`; faults switch at run time."""

    def __init__(self, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0),
                 *, mqtt_frames: bool = False) -> None:
        self.target = target
        self._mqtt_frames = mqtt_frames
        self._pubacks_to_drop = 0
        self._listen = listen
        self.host, self.port = listen
        self.stats = ProxyStats()
        self._delay = {UP: 0.0, DOWN: 0.0}
        self._rate: float | None = None  # bytes/s per direction and connection
        self._blackhole = False
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # --- life ---

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._thread.start()
        self._call(self._open)
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            self._call(self._shut)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    # --- faults ---

    def delay(self, up_s: float = 0.0, down_s: float = 0.0) -> None:
        """Add latency to bytes read from now on: up_s towards the target, down_s back."""
        self._delay = {UP: up_s, DOWN: down_s}

    def stall(self) -> None:
        """Stop forwarding both ways on every connection; sockets stay open, bytes are held."""
        self._call(self._set_flowing, False)

    def resume(self) -> None:
        """End a stall: held bytes go on, in order."""
        self._call(self._set_flowing, True)

    def half_open(self) -> int:
        """Silence every open connection for good: bytes either way are dropped and neither
        end is told; a peer finds out only by its own keepalive. New connections are not
        affected. Returns how many connections were silenced."""
        return self._call(self._silence_all)

    def blackhole(self, on: bool = True) -> None:
        """New connections are accepted and then hear nothing, ever (a link that eats them);
        off: new connections are forwarded again (the ones already eaten stay silent)."""
        self._blackhole = on

    def reset(self) -> int:
        """Close every connection abruptly (RST both ways); returns how many."""
        return self._call(self._reset_all)

    def trickle(self, bytes_per_s: float | None) -> None:
        """Limit each direction of each connection to bytes_per_s (None: no limit)."""
        self._rate = bytes_per_s

    def clear(self) -> None:
        """No latency, no stall, no blackhole, no trickle. Silenced connections stay so."""
        self.delay()
        self.trickle(None)
        self.blackhole(False)
        self.resume()

    def drop_pubacks(self, n: int) -> None:
        """Lose the next `n` PUBACKs the target sends (plaintext MQTT, `mqtt_frames=True`)."""
        if not self._mqtt_frames:
            raise ValueError("drop_pubacks needs a proxy made with mqtt_frames=True")
        self._call(self._set_pubacks_to_drop, n)

    async def _set_pubacks_to_drop(self, n: int) -> None:
        self._pubacks_to_drop = n

    # --- what it saw ---

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def held_bytes(self) -> int:
        """Bytes read and not yet written on (delayed, stalled or trickling)."""
        return sum(c.held for c in list(self._conns))

    # --- loop thread ---

    def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(timeout=10)

    async def _open(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._serve, *self._listen)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_flowing(self, on: bool) -> None:
        if on:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _silence_all(self) -> int:
        for c in self._conns:
            c.silenced = True
        return len(self._conns)

    async def _reset_all(self) -> int:
        conns = list(self._conns)
        for c in conns:
            for w in c.writers:
                sock = w.get_extra_info("socket")
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.transport.abort()
            self._conns.discard(c)
        self.stats.resets += len(conns)
        return len(conns)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        conn = _Conn(self.stats.accepted, silenced=self._blackhole, writers=[writer])
        self._conns.add(conn)
        try:
            if conn.silenced:  # blackholed: never reach the target, never answer
                while data := await _read(reader):
                    self.stats.dropped += len(data)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return  # the target refuses: so does the proxy, by closing
            conn.writers.append(up_writer)
            await asyncio.gather(self._pipe(conn, reader, up_writer, UP),
                                 self._pipe(conn, up_reader, writer, DOWN))
        finally:
            self._conns.discard(conn)
            for w in conn.writers:
                w.transport.abort()

    async def _pipe(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: str) -> None:
        """Copy one direction; a reader and a writer linked by a queue, so latency, stalls
        and trickles hold bytes without holding back the reading (and the order is kept)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        frames = _Frames() if self._mqtt_frames and direction == DOWN else None

        async def take() -> None:
            while True:
                data = await _read(reader)
                if frames is not None and data:
                    data = self._without_pubacks(frames.feed(data))
                    if not data:
                        continue  # a packet's first bytes, or only lost PUBACKs
                conn.held += len(data)
                queue.put_nowait((loop.time() + self._delay[direction], data))
                if not data:
                    return

        async def give() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    self.stats.delayed_chunks += 1
                    await asyncio.sleep(wait)
                await self._flowing.wait()
                if conn.silenced:
                    conn.held -= len(data)
                    self.stats.dropped += len(data)
                    if not data:
                        return  # this end closed; a silenced peer is never told
                    continue
                if not data:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()  # pass the close on, half by half
                    return
                await self._write(conn, writer, data, direction)

        taker = asyncio.ensure_future(take())
        try:
            await give()
        except OSError:
            for w in conn.writers:  # one end broke: break the other end too
                w.transport.abort()
        finally:
            taker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taker

    async def _write(self, conn: _Conn, writer: asyncio.StreamWriter, data: bytes,
                     direction: str) -> None:
        while data:
            rate = self._rate
            piece = data if rate is None else data[: max(1, int(rate / 20))]
            writer.write(piece)
            await writer.drain()
            data = data[len(piece):]
            conn.held -= len(piece)
            self.stats.forwarded[direction] += len(piece)
            if rate is not None:
                await asyncio.sleep(len(piece) / rate)


    def _without_pubacks(self, packets: list[bytes]) -> bytes:
        kept = []
        for packet in packets:
            if packet[0] >> 4 == PUBACK and self._pubacks_to_drop > 0:
                self._pubacks_to_drop -= 1
                self.stats.dropped_pubacks += 1
                continue
            kept.append(packet)
        return b"".join(kept)


PUBACK = 4  # MQTT control packet type


class _Frames:
    """Cuts an MQTT byte stream into whole packets (fixed header, variable-length size)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        packets = []
        while (size := _packet_size(self._buf)) is not None and len(self._buf) >= size:
            packets.append(self._buf[:size])
            self._buf = self._buf[size:]
        return packets


def _packet_size(buf: bytes) -> int | None:
    """The whole size of the packet at the start of `buf`, once its header is there."""
    length, shift = 0, 0
    for i in range(1, min(len(buf), 5)):
        length |= (buf[i] & 0x7F) << shift
        if not buf[i] & 0x80:
            return 1 + i + length
        shift += 7
    return None


async def _read(reader: asyncio.StreamReader) -> bytes:
    """The next bytes, or b"" once the peer closed or broke the connection."""
    try:
        return await reader.read(_CHUNK)
    except OSError:
        return b""
