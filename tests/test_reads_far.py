"""Reads from a gateway at network distance: read-ahead within its bounds, verified before
use, and politeness (a bounded number of connections, ``Retry-After`` honoured).

Every gateway here is howto's own on 127.0.0.1, reached directly, through the relay (to
count the bytes moved), or through a small HTTP front of the test's that lies, counts
connections or asks the client to wait.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from multiformats import CID

from howto.blocks.repo import Repo
from howto.errors import GatewayError, IntegrityError
from howto.formats.cids import RAW, cid_bytes
from howto.fs import VerifiedIPFSFileSystem
from howto.gateway import serve
from howto.relay import relay
from howto.retrieval.readahead import ReadAhead, Sibling, UnavailableAhead, chunk_order
from howto.retrieval.sources import default_chain
from howto.retrieval.trustless import GatewayBlocks, retry_after
from howto.unixfs.add import add

CHUNKS = 400
CHUNK_VALUES = 4096  # float64: 32 KiB a chunk, 12.5 MiB in all


class Array:
    def __init__(self, base: Path) -> None:
        self.repo = Repo(base / "repo")
        values = np.random.default_rng(5).standard_normal(CHUNKS * CHUNK_VALUES)
        self.dataset = xr.Dataset({"v": (("x",), values)})
        store = base / "a.zarr"
        self.dataset.to_zarr(
            store, zarr_format=2, encoding={"v": {"chunks": (CHUNK_VALUES,), "compressors": None}}
        )
        self.chunk_bytes = (store / "v" / "0").stat().st_size
        self.root = add(store, repo=self.repo, cid_version=1, raw_leaves=True, hidden=True)


@pytest.fixture(scope="module")
def array(tmp_path_factory) -> Array:
    return Array(tmp_path_factory.mktemp("far"))


@pytest.fixture(scope="module")
def gateway(array) -> Iterator[str]:
    with serve(array.repo) as url:
        yield url


def files(url: str, **options: object) -> VerifiedIPFSFileSystem:
    return VerifiedIPFSFileSystem(gateway_addr=url, timeout=20, skip_instance_cache=True, **options)


def zarr_store(url: str, root: object, **options: object) -> zarr.storage.FsspecStore:
    """A zarr store over a file system of the test's own (zarr would otherwise make a copy
    of the file system, whose read-ahead the test could not look at)."""
    vfs = files(url, asynchronous=True, **options)
    return zarr.storage.FsspecStore(vfs, read_only=True, path=str(root))


# --- the policy ---------------------------------------------------------------------------


def siblings(n: int, size: int) -> list[Sibling]:
    return [Sibling(f"0.{i}", cid_bytes(str(i).encode(), RAW, 1), size) for i in range(n)]


def test_chunk_keys_come_in_the_order_readers_ask_for_them() -> None:
    names = ["0.10", "0.9", "1.0", "0.0", "c/1/0", "c/0/10", "c/0/2"]
    assert sorted(names, key=chunk_order) == [
        "0.0",
        "0.9",
        "0.10",
        "1.0",
        "c/0/2",
        "c/0/10",
        "c/1/0",
    ]


def test_a_first_read_asks_for_at_most_the_first_window() -> None:
    ahead = ReadAhead(first_bytes=100, most_bytes=1000)
    shuffled = siblings(50, 30)[::-1]
    wanted = ahead.plan(b"dir", "0.3", lambda: shuffled)
    assert [s.name for s in wanted] == ["0.4", "0.5", "0.6"]  # 90 bytes of the 100


def test_reads_that_follow_grow_the_window_and_a_jump_starts_again() -> None:
    ahead = ReadAhead(first_bytes=100, most_bytes=400)
    listed = siblings(1000, 10)
    planned = [ahead.plan(b"dir", f"0.{i}", lambda: listed) for i in range(4)]
    # 100 bytes, then twice as much each time the read found its chunk fetched ahead
    assert [sum(s.size for s in wanted) for wanted in planned] == [100, 200, 400, 400]
    assert planned[1][0].name == "0.11"  # it goes on where the last window ended
    jump = ahead.plan(b"dir", "0.900", lambda: listed)
    assert [s.name for s in jump][:2] == ["0.901", "0.902"] and len(jump) == 10


def test_blocks_held_ahead_stay_within_the_bound_and_are_taken_once() -> None:
    async def run() -> None:
        ahead = ReadAhead(first_bytes=50, most_bytes=80)
        listed = siblings(20, 10)

        async def fetch(cid):
            return bytes(cid)

        ahead.start(ahead.plan(b"dir", "0.0", lambda: listed), fetch)
        await asyncio.sleep(0)  # the fetches begin
        assert ahead.held_bytes == 50
        task = ahead.take(_cid_of(listed[1]))
        assert await task == listed[1].cid and ahead.take(_cid_of(listed[1])) is None
        assert ahead.held_bytes == 40
        ahead.start(ahead.plan(b"dir", "0.1", lambda: listed), fetch)  # the window doubles
        assert ahead.held_bytes <= 80
        ahead.most_bytes = 20
        ahead.trim()
        assert ahead.held_bytes <= 20 and ahead.stats.dropped > 0
        await asyncio.sleep(0)

    asyncio.run(run())


def _cid_of(sibling: Sibling) -> CID:
    return CID.decode(sibling.cid)


def test_fetches_ahead_take_turns_in_their_lanes_and_a_reader_does_not_wait_behind_them():
    async def run() -> None:
        ahead = ReadAhead(first_bytes=100, most_bytes=1000, lanes=2)
        listed = siblings(20, 10)
        running, most = [0], [0]
        release = asyncio.Event()

        async def fetch(cid):
            running[0] += 1
            most[0] = max(most[0], running[0])
            await release.wait()
            running[0] -= 1
            return bytes(cid)

        ahead.start(ahead.plan(b"dir", "0.0", lambda: listed), fetch)  # 0.1 to 0.10
        await asyncio.sleep(0.01)
        assert running[0] == 2  # the other eight wait for a lane
        assert ahead.take(_cid_of(listed[9])) is None  # not begun: the reader asks at once
        begun = ahead.take(_cid_of(listed[1]))
        release.set()
        assert await begun == listed[1].cid
        await asyncio.sleep(0.01)
        assert most[0] == 2 and ahead.stats.fetched == 10

    asyncio.run(run())


def test_files_a_car_brings_early_wait_on_disk_and_are_checked_again(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    contents = [bytes([i]) * 100 for i in range(20)]
    listed = [Sibling(f"0.{i}", cid_bytes(c, RAW, 1), 100) for i, c in enumerate(contents)]

    async def car():  # the files in the reverse of the reader's order
        for sibling, content in reversed(list(zip(listed, contents, strict=True))):
            yield sibling.cid, content
            await asyncio.sleep(0)

    async def run() -> None:
        ahead = ReadAhead(first_bytes=100, most_bytes=400)  # 200 bytes of a CAR in memory
        ahead.plan(b"dir", "0.0", lambda: listed)  # 0.0 is read
        ahead.stream(b"dir", car())
        first = ahead.take(_cid_of(listed[1]))  # the reader waits for what comes last
        assert await first == contents[1]
        assert ahead.stats.streamed == 18 and ahead.stats.spilled == 16
        assert ahead.held_bytes <= 200
        (folder,) = tmp_path.glob("howto-ahead-*")
        assert len(list(folder.iterdir())) == 16
        assert await ahead.take(_cid_of(listed[5])) == contents[5]  # from disk, checked
        changed = folder / listed[6].cid.hex()
        changed.write_bytes(b"\x00" * 100)
        with pytest.raises(UnavailableAhead):  # refused: the reader asks anew
            await ahead.take(_cid_of(listed[6]))
        assert ahead.stats.failed == 1
        ahead.trim(0)
        assert not folder.exists()

    asyncio.run(run())


def test_no_read_ahead_when_turned_off() -> None:
    assert ReadAhead(most_bytes=0).plan(b"dir", "0.0", lambda: siblings(10, 1)) == []


# --- through the relay: bytes moved ---------------------------------------------------------


def test_one_chunk_of_many_moves_at_most_two_mib_more(array, gateway) -> None:
    with relay(gateway, latency=0.002, bandwidth=1e9) as far:
        store = zarr_store(far.url, array.root)
        group = zarr.open_group(store, mode="r", zarr_format=2)
        assert np.array_equal(group["v"][5000:5010], array.dataset.v.values[5000:5010])
        time.sleep(0.5)  # what was fetched ahead has arrived
        moved = far.counts()["bytes_down"]
    assert array.chunk_bytes < moved <= array.chunk_bytes + (2 << 20)
    assert store.fs.read_ahead.stats.fetched > 0


def test_a_whole_array_through_the_relay_is_exact_and_fetched_mostly_ahead(array, gateway):
    with relay(gateway, latency=0.002, bandwidth=1e9) as far:
        store = zarr_store(far.url, array.root)
        loaded = xr.open_zarr(store, consolidated=True).load()
    assert np.array_equal(loaded.v.values, array.dataset.v.values)
    ahead = store.fs.read_ahead
    assert ahead.stats.used > CHUNKS // 2 and ahead.stats.failed == 0
    assert ahead.held_bytes <= ahead.most_bytes


def test_a_car_in_another_order_than_the_reader_moves_each_chunk_about_once(array, gateway):
    """The directory's CAR brings chunk keys in byte order (0, 1, 10, 100, ...), zarr reads
    them in numbers' order: what comes early waits on disk rather than coming twice."""
    with relay(gateway, latency=0.002, bandwidth=1e9) as far:
        store = zarr_store(far.url, array.root, read_ahead=4)  # 2 MiB of a CAR in memory
        values = zarr.open_group(store, mode="r", zarr_format=2)["v"][:]
        moved = far.counts()["bytes_down"]
    assert np.array_equal(values, array.dataset.v.values)
    stats = store.fs.read_ahead.stats
    assert stats.spilled > 0 and stats.failed == 0 and stats.dropped == 0
    assert moved < 1.3 * CHUNKS * array.chunk_bytes


def test_read_ahead_can_be_turned_off(array, gateway) -> None:
    vfs = files(gateway, read_ahead=0)
    assert vfs.cat_file(f"{array.root}/v/7") == (array_bytes := vfs.cat_file(f"{array.root}/v/7"))
    assert len(array_bytes) == array.chunk_bytes
    assert vfs.read_ahead.stats.fetched == 0


# --- gateways in front of the true one ------------------------------------------------------


class Front:
    """An HTTP server on 127.0.0.1 that passes requests to ``target`` (howto's gateway),
    with ``change(path, status, headers, body)`` deciding what goes back."""

    def __init__(self, target: str, change: Callable | None = None) -> None:
        self.target = target.removeprefix("http://")
        self.change = change or (lambda path, status, headers, body: (status, headers, body))
        self.open_now = 0
        self.most_open = 0
        self.requests: list[str] = []
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with front.lock:
                    front.open_now += 1
                    front.most_open = max(front.most_open, front.open_now)

            def finish(self) -> None:
                super().finish()
                with front.lock:
                    front.open_now -= 1

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with front.lock:
                    front.requests.append(self.path)
                host, port = front.target.split(":")
                upstream = http.client.HTTPConnection(host, int(port), timeout=20)
                upstream.request("GET", self.path, headers={"Accept": self.headers["Accept"]})
                reply = upstream.getresponse()
                body = reply.read()
                headers = {k: v for k, v in reply.getheaders() if k.lower() in ("content-type",)}
                upstream.close()
                status, headers, body = front.change(self.path, reply.status, headers, body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> Front:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_liar_of_blocks_fetched_ahead_is_caught_when_they_are_used(array, gateway) -> None:
    vfs = files(gateway)
    first = vfs.info(f"{array.root}/v/0")["CID"]

    def lie(path, status, headers, body):
        if "format=raw" in path and first not in path and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        return status, headers, body

    with Front(gateway, lie) as liar:
        far = files(liar.url)
        far.info(f"{array.root}/v/0")  # the path's nodes, verified (they came as a CAR)
        assert far.cat_file(f"{array.root}/v/0") == vfs.cat_file(f"{array.root}/v/0")
        assert far.read_ahead.stats.fetched > 0
        with pytest.raises(IntegrityError):
            far.cat_file(f"{array.root}/v/1")
        assert far.read_ahead.stats.failed > 0


def test_connections_to_a_gateway_are_bounded(array, gateway, monkeypatch) -> None:
    monkeypatch.setenv("HOWTO_GATEWAY_CONNECTIONS", "3")
    with Front(gateway) as counting:
        loaded = xr.open_zarr(zarr_store(counting.url, array.root), consolidated=True).load()
        assert np.array_equal(loaded.v.values, array.dataset.v.values)
        source = GatewayBlocks(counting.url)
        cids = [files(gateway).info(f"{array.root}/v/{i}")["CID"] for i in range(40)]
        threads = [threading.Thread(target=source.get, args=(cid,)) for cid in map(_cid, cids)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # three for the event loop of the file system, three shared by every thread
    assert 3 < counting.most_open <= 3 + 3


def _cid(text: str) -> CID:
    return CID.decode(text)


def test_retry_after_is_honoured_and_said_once(array, gateway, caplog) -> None:
    asked: dict[str, int] = {}

    def busy_first(path, status, headers, body):
        asked[path] = asked.get(path, 0) + 1
        if asked[path] == 1:
            return 429, {"Retry-After": "0"}, b"slow down"
        return status, headers, body

    with Front(gateway, busy_first) as limited, caplog.at_level(logging.WARNING, "howto"):
        source = GatewayBlocks(limited.url)
        vfs = files(limited.url, read_ahead=0)
        root = array.root
        cids = [_cid(vfs.info(f"{root}/v/{i}")["CID"]) for i in range(3)]
        assert [len(source.get(cid)) for cid in cids] == [array.chunk_bytes] * 3
        assert len(vfs.cat_file(f"{root}/v/9")) == array.chunk_bytes  # the event-loop way
    said = [r for r in caplog.records if "asked to wait" in r.getMessage()]
    assert len(said) == 2  # once per gateway client: the block source's and the file system's
    assert all(r.exc_info is None for r in said)
    assert all(n >= 2 for n in asked.values())  # each first asked in vain, then again


def test_a_gateway_that_stays_busy_is_passed_over(array, gateway, tmp_path) -> None:
    def always_busy(path, status, headers, body):
        return 503, {"Retry-After": "0"}, b"busy"

    cid = _cid(files(gateway).info(f"{array.root}/v/3")["CID"])
    with Front(gateway, always_busy) as busy:
        with pytest.raises(GatewayError, match="HTTP 503"):
            GatewayBlocks(busy.url).get(cid)
        assert len(busy.requests) == 2  # asked, waited, asked once more: then the error
        chain = default_chain(gateways=[busy.url, gateway], repo=Repo(tmp_path / "empty"))
        assert len(chain.get(cid)) == array.chunk_bytes  # the next gateway answered


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after("soon") is None and retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


def test_the_remote_benchmark_runs_and_reports_every_figure() -> None:
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_remote.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--zarr-mb", "2", "--file-mb", "4", "--repeat", "1"]
        + ["--rtt-ms", "10", "--no-goal"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for figure in (
        "relay: 10 ms round trip, 100 MB/s",
        "one stream, a CAR of it all (L)",
        "xr.open_zarr(ipfs://).load(), howto",
        "zarr.open_group(ipfs://)[v][:], ipfsspec",
        "faster than ipfsspec",
        "one chunk of 20",
        "of the cap",
        "the relay carried",
    ):
        assert figure in result.stdout
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr
