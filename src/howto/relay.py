"""A TCP relay that puts two programs on this machine "far apart": latency and a bandwidth cap.

Loopback answers in microseconds, so it hides what decides a real remote read: round
trips.  ``relay(target)`` starts, in a process of its own, a relay on 127.0.0.1 that
forwards every connection to ``target`` and delivers each byte ``latency`` seconds after
it was sent (each way, so a round trip takes twice that), no faster than ``bandwidth``
bytes per second in each direction (one link shared fairly by all connections, each with
a bounded queue, as on a real network), in order.  Any HTTP client and server can talk
through it unchanged.  No kernel traffic shaping is needed: it all happens in user space.

``python -m howto.relay HOST:PORT [--latency-ms 12.5] [--bandwidth-mb 100]`` runs one in
the foreground; it prints its address, then what it relayed when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["DEFAULT_BANDWIDTH", "DEFAULT_LATENCY", "Link", "Relay", "relay"]

#: 12.5 ms each way: a 25 ms round trip, a gateway in the same region.
DEFAULT_LATENCY = 0.0125
#: 100 MB/s (800 Mbit/s), a good connection to a data centre.
DEFAULT_BANDWIDTH = 100e6
#: Bytes read from a socket at a time; at 100 MB/s this is under a millisecond of sending.
READ_BYTES = 64 * 1024
#: Bytes one connection may have waiting for the link before the relay stops reading it
#: (TCP then holds the sender back), like the per-flow queue of a router.
QUEUE_BYTES = 256 * 1024


class Link:
    """One direction of the relay: a line of ``bandwidth`` bytes per second shared by all
    connections, taking turns piece by piece (fair queuing, as modern routers do), each
    piece arriving ``latency`` seconds after it was sent.  A connection waits for room
    once ``QUEUE_BYTES`` of it are queued, so no bulk transfer can hide the others behind
    a queue of its own making."""

    def __init__(self, latency: float, bandwidth: float) -> None:
        self.latency = latency
        self.bandwidth = bandwidth
        self.bytes = 0
        self._turns: deque[_Flow] = deque()  # connections with bytes waiting, in turn
        self._ready = asyncio.Event()
        self._sending: asyncio.Task | None = None

    def flow(self, writer: asyncio.StreamWriter) -> _Flow:
        """A new connection's way over the link, delivering to ``writer``."""
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._send())
        return _Flow(self, writer)

    def _wake(self, flow: _Flow) -> None:
        if flow not in self._turns:
            self._turns.append(flow)
        self._ready.set()

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        free = loop.time()  # when the line has sent what it was given
        while True:
            while not self._turns:
                self._ready.clear()
                await self._ready.wait()
            flow = self._turns.popleft()
            data = flow.waiting.popleft()
            flow.queued -= len(data)
            free = max(free, loop.time()) + len(data) / self.bandwidth
            self.bytes += len(data)
            flow.arriving.put_nowait((free + self.latency, data))
            flow.room.set()
            if flow.waiting:
                self._turns.append(flow)
            if free - loop.time() > 0.002:  # keep no more than 2 ms of sending ahead
                await asyncio.sleep(free - loop.time() - 0.001)


class _Flow:
    """One connection in one direction: its bytes queued for the link, then on the way."""

    def __init__(self, link: Link, writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.writer = writer
        self.waiting: deque[bytes] = deque()
        self.queued = 0
        self.room = asyncio.Event()
        self.arriving: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def put(self, data: bytes) -> None:
        """Queue ``data`` (``b""``: the connection closes) once there is room for it."""
        while self.queued >= QUEUE_BYTES:
            self.room.clear()
            await self.room.wait()
        self.waiting.append(data)
        self.queued += len(data)
        self.link._wake(self)

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self.arriving.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            self.writer.write(data)
            await self.writer.drain()
        if self.writer.can_write_eof():
            self.writer.write_eof()


@dataclass
class _Counts:
    up: Link
    down: Link
    connections: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        return {
            "connections": self.connections,
            "bytes_up": self.up.bytes,
            "bytes_down": self.down.bytes,
            "latency_ms": self.up.latency * 1000,
            "bandwidth_mb_s": self.up.bandwidth / 1e6,
            "seconds": round(time.monotonic() - self.started, 3),
        }


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link) -> None:
    """Copy ``reader`` to ``writer`` over ``link``, in order; the close travels too."""
    flow = link.flow(writer)
    sender = asyncio.create_task(flow.deliver())
    try:
        while data := await reader.read(READ_BYTES):
            await flow.put(data)
    except ConnectionError:
        pass
    await flow.put(b"")
    try:
        await sender
    except ConnectionError:
        pass


async def _serve(host: str, port: int, latency: float, bandwidth: float) -> None:
    counts = _Counts(Link(latency, bandwidth), Link(latency, bandwidth))

    async def connected(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        counts.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _pipe(client_r, server_w, counts.up), _pipe(server_r, client_w, counts.down)
            )
        except asyncio.CancelledError:
            pass  # the relay stops: connections still open end with it, quietly
        finally:
            for writer in (client_w, server_w):
                writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with server:
        while (line := await stdin.readline()) and line.strip() != b"stop":
            print(json.dumps(counts.as_dict()), flush=True)  # any other line asks for counts
    print(json.dumps(counts.as_dict()), flush=True)


class Relay:
    """A running relay: ``url`` to connect to instead of the target, ``counts()`` of what
    it carried so far (connections, ``bytes_up`` to the target, ``bytes_down`` back)."""

    def __init__(self, process: subprocess.Popen, port: int, scheme: str) -> None:
        self.process = process
        self.port = port
        self.url = f"{scheme}://127.0.0.1:{port}"

    def counts(self) -> dict:
        self.process.stdin.write("counts\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> dict:
        """Stop the relay; what it carried in all."""
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
            return json.loads(self.process.stdout.readline())
        finally:
            self.process.stdin.close()
            self.process.wait(10)
            self.process.stdout.close()


@contextmanager
def relay(
    target: str, latency: float = DEFAULT_LATENCY, bandwidth: float = DEFAULT_BANDWIDTH
) -> Iterator[Relay]:
    """A relay to ``target`` (``http://127.0.0.1:PORT`` or ``127.0.0.1:PORT``) for a
    ``with`` block, in a process of its own so that it never waits for the programs it
    relays; ``latency`` in seconds each way, ``bandwidth`` in bytes per second."""
    scheme, _, address = target.rpartition("://")
    address = address.split("/", 1)[0]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "howto.relay",
            address,
            "--latency-ms",
            str(latency * 1000),
            "--bandwidth-mb",
            str(bandwidth / 1e6),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = json.loads(process.stdout.readline())["port"]
    except (ValueError, KeyError):
        process.kill()
        raise RuntimeError(f"the relay to {target} did not start") from None
    running = Relay(process, port, scheme or "http")
    try:
        yield running
    finally:
        if process.poll() is None:
            running.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m howto.relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("target", help="HOST:PORT to relay to")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=DEFAULT_LATENCY * 1000,
        help="delay of every byte, each way (default %(default)s)",
    )
    parser.add_argument(
        "--bandwidth-mb",
        type=float,
        default=DEFAULT_BANDWIDTH / 1e6,
        help="cap in MB/s, each way (default %(default)s)",
    )
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit() or args.latency_ms < 0 or args.bandwidth_mb <= 0:
        parser.error(f"expected HOST:PORT, a latency >= 0 and a bandwidth > 0, got {args.target!r}")
    try:
        asyncio.run(_serve(host, int(port), args.latency_ms / 1000, args.bandwidth_mb * 1e6))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
