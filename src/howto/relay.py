"""A TCP relay that puts two programs on this machine "far apart": latency and a bandwidth cap.

Loopback answers in microseconds, so it hides what decides a real remote read: round
trips.  ``relay(target)`` starts, in a process of its own, a relay on 127.0.0.1 that
forwards every connection to ``target`` and delivers each byte ``latency`` seconds after
it arrived (each way, so a round trip takes twice that), no faster than ``bandwidth``
bytes per second in each direction (one link shared by all connections, as on a real
network), in order.  Any HTTP client and server can talk through it unchanged.  No
kernel traffic shaping is needed: it all happens in user space.

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


@dataclass
class Link:
    """One direction of the relay: a queue every connection shares, with a rate and a delay."""

    latency: float
    bandwidth: float
    busy_until: float = 0.0  # when the link has finished sending what it was given
    bytes: int = 0

    def schedule(self, size: int, now: float) -> float:
        """When ``size`` bytes arriving ``now`` reach the other end."""
        start = max(now, self.busy_until)
        self.busy_until = start + size / self.bandwidth
        self.bytes += size
        return self.busy_until + self.latency


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
    """Copy ``reader`` to ``writer``, each piece delivered when ``link`` says it arrives."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(READ_BYTES):
            queue.put_nowait((link.schedule(len(data), loop.time()), data))
    except ConnectionError:
        pass
    queue.put_nowait((link.busy_until + link.latency, b""))  # the close travels too
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
