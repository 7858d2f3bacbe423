"""The network-distance relay: bytes arrive whole and in order, late by the latency each
way, no faster than the cap, and the relay counts what it carried."""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from howto.relay import relay

BODY = os.urandom(8 << 20)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = BODY if self.path == "/big" else b"pong"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def _get(port: int, path: str, connection: http.client.HTTPConnection | None = None) -> bytes:
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    return connection.getresponse().read()


def test_bytes_arrive_whole_in_order_and_are_counted(server: str) -> None:
    with relay(server, latency=0.002, bandwidth=500e6) as near:
        assert _get(near.port, "/big") == BODY
        counts = near.counts()
    assert counts["connections"] == 1
    assert len(BODY) < counts["bytes_down"] < len(BODY) + 1024
    assert 0 < counts["bytes_up"] < 1024


def test_a_round_trip_takes_twice_the_latency(server: str) -> None:
    latency = 0.025
    with relay(server, latency=latency) as far:
        connection = http.client.HTTPConnection("127.0.0.1", far.port, timeout=30)
        _get(far.port, "/ping", connection)  # the connection is open from here on
        trips = []
        for _ in range(8):
            began = time.perf_counter()
            assert _get(far.port, "/ping", connection) == b"pong"
            trips.append(time.perf_counter() - began)
        connection.close()
    # The fastest trip is the relay's own delay: it is never shorter, and load on the
    # machine can only add to it.
    assert 2 * latency <= min(trips) <= 2 * latency * 1.2


def test_the_bandwidth_cap_holds(server: str) -> None:
    bandwidth, latency = 20e6, 0.005
    with relay(server, latency=latency, bandwidth=bandwidth) as capped:
        began = time.perf_counter()
        assert _get(capped.port, "/big") == BODY
        took = time.perf_counter() - began
    expected = len(BODY) / bandwidth + 2 * latency
    assert 0.8 * expected <= took <= 1.2 * expected


def test_the_relay_says_what_it_carried_when_it_stops(server: str) -> None:
    with relay(server, latency=0.001) as near:
        _get(near.port, "/ping")
        done = near.stop()
    assert done["connections"] == 1 and done["bytes_down"] > 4
    assert done["latency_ms"] == pytest.approx(1.0)


def test_connections_share_the_link_in_turns(server: str) -> None:
    """A small reply does not wait behind a bulk transfer on another connection: the link
    takes turns, and a connection queues only a little before the relay stops reading it."""
    received = [0]
    with relay(server, latency=0.005, bandwidth=16e6) as capped:  # /big takes ~0.5 s

        def bulk() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", capped.port, timeout=30)
            connection.request("GET", "/big")
            reply = connection.getresponse()
            while piece := reply.read(64 * 1024):
                received[0] += len(piece)

        thread = threading.Thread(target=bulk)
        thread.start()
        while received[0] == 0:  # the bulk reply is under way
            time.sleep(0.005)
        assert _get(capped.port, "/ping") == b"pong"
        seen = received[0]
        thread.join(30)
    assert received[0] == len(BODY)
    assert seen < len(BODY) / 2  # the ping came back long before the bulk reply ended
