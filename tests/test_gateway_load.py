"""Reliability: clear, bounded failures for bad gateways, and a gateway that holds up under load.

An unreachable gateway (a closed port) and a silent one (accepts, never answers) must fail
fast with a message naming the gateway and the CID, as different exceptions from
not-found.  Then 32 concurrent clients make 200 random chunk reads each.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import xarray as xr

from howto.blocks.repo import Repo
from howto.errors import GatewayError, NotFoundError, UnavailableError
from howto.formats.cids import RAW, cid_bytes, to_cid
from howto.fs import GatewayTimeout, VerifiedIPFSFileSystem
from howto.gateway import serve
from howto.unixfs.add import add

CLIENTS = 32
READS = 200
LEAF = 65536
BIG_SIZE = 2 * 1024 * 1024 + 4321  # 33 leaves of 64 KiB


class Site:
    def __init__(self, base: Path) -> None:
        self.repo = Repo(base / "repo")
        self.big = random.Random(3).randbytes(BIG_SIZE)
        tree = base / "site"
        tree.mkdir()
        (tree / "big.bin").write_bytes(self.big)
        data = np.random.default_rng(9).standard_normal((80, 80))
        xr.Dataset({"v": (("a", "b"), data)}).to_zarr(
            tree / "data.zarr",
            zarr_format=2,
            encoding={"v": {"chunks": (10, 10), "compressors": None}},
        )
        self.chunks = {
            p.name: p.read_bytes()
            for p in (tree / "data.zarr" / "v").iterdir()
            if not p.name.startswith(".")
        }
        assert len(self.chunks) == 64
        self.root = add(
            tree,
            repo=self.repo,
            cid_version=1,
            raw_leaves=True,
            hidden=True,
            chunker=f"size-{LEAF}",
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return Site(tmp_path_factory.mktemp("load"))


@pytest.fixture(scope="module")
def url(site) -> Iterator[str]:
    with serve(site.repo) as base:
        yield base


def some_cid() -> str:
    return str(to_cid(cid_bytes(b"any content at all", RAW, 1)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """A server that accepts connections and reads requests but never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def fresh(gateway: str, timeout: float | None = 1.0) -> VerifiedIPFSFileSystem:
    return VerifiedIPFSFileSystem(gateway_addr=gateway, timeout=timeout, skip_instance_cache=True)


# --- failures ------------------------------------------------------------------------------


def test_unreachable_gateway_fails_fast_and_says_where(monkeypatch):
    gateway = f"http://127.0.0.1:{free_port()}"  # nobody listens there any more
    cid = some_cid()
    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        fresh(gateway, timeout=10).cat(f"ipfs://{cid}")
    assert time.monotonic() - started < 5
    assert not isinstance(caught.value, GatewayTimeout | NotFoundError)
    assert gateway in str(caught.value)
    assert cid in str(caught.value)


def test_silent_gateway_times_out_within_the_limit(silent_gateway):
    cid = some_cid()
    fs = fresh(silent_gateway, timeout=1.0)
    for read in (fs.cat, fs.info, fs.exists):
        started = time.monotonic()
        with pytest.raises(GatewayTimeout) as caught:
            read(f"ipfs://{cid}/some/path")
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 5
        assert isinstance(caught.value, GatewayError)
        assert not isinstance(caught.value, FileNotFoundError)
        assert silent_gateway in str(caught.value)
        assert cid in str(caught.value)
        assert "1 s" in str(caught.value)


def test_timeout_from_the_environment(silent_gateway, monkeypatch):
    monkeypatch.setenv("HOWTO_GATEWAY_TIMEOUT", "0.5")
    fs = fresh(silent_gateway, timeout=None)
    assert fs.timeout == 0.5
    started = time.monotonic()
    with pytest.raises(GatewayTimeout):
        fs.cat(f"ipfs://{some_cid()}")
    assert time.monotonic() - started < 4


def test_not_found_and_timeout_are_told_apart(url, silent_gateway, site):
    absent = some_cid()
    honest = fresh(url, timeout=10)
    with pytest.raises(UnavailableError) as missing:  # no source has it: not "absent"
        honest.cat(f"ipfs://{absent}")
    assert not isinstance(missing.value, FileNotFoundError | GatewayTimeout)
    assert absent in str(missing.value) and url in str(missing.value)
    with pytest.raises(UnavailableError):  # unknown: an error, never a False
        honest.exists(f"ipfs://{absent}")
    assert not honest.exists(f"ipfs://{site.root}/no-such-name")  # absent: a plain False
    with pytest.raises(GatewayTimeout):  # unknown: an error, never a False
        fresh(silent_gateway).exists(f"ipfs://{absent}")


def test_clients_that_hang_up_mid_response_do_not_hurt_the_gateway(url, site):
    host, port = url.removeprefix("http://").split(":")
    for suffix in ("big.bin", "big.bin?format=car", "data.zarr?format=car&dag-scope=all"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            request = f"GET /ipfs/{site.root}/{suffix} HTTP/1.1\r\nHost: x\r\n\r\n"
            sock.sendall(request.encode())
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    fs = fresh(url, timeout=10)
    assert fs.cat_file(f"{site.root}/big.bin", start=5, end=70000) == site.big[5:70000]


# --- load ------------------------------------------------------------------------------------


async def http_client(url: str, site: Site, rng: random.Random) -> int:
    """Plain HTTP reads: Range requests on the big file and whole zarr chunk files."""
    names = sorted(site.chunks)
    done = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(READS):
            if rng.random() < 0.5:
                start = rng.randrange(BIG_SIZE)
                stop = min(BIG_SIZE, start + rng.randint(1, 3 * LEAF))
                headers = {"Range": f"bytes={start}-{stop - 1}"}
                async with session.get(f"{url}/ipfs/{site.root}/big.bin", headers=headers) as r:
                    assert r.status == 206
                    assert await r.read() == site.big[start:stop]
            else:
                name = rng.choice(names)
                async with session.get(f"{url}/ipfs/{site.root}/data.zarr/v/{name}") as r:
                    assert r.status == 200
                    assert await r.read() == site.chunks[name]
            done += 1
    return done


async def verified_client(url: str, site: Site, rng: random.Random) -> int:
    """The same kinds of reads through the verified file system (trustless CARs)."""
    fs = VerifiedIPFSFileSystem(
        gateway_addr=url, timeout=30, asynchronous=True, skip_instance_cache=True
    )
    names = sorted(site.chunks)
    done = 0
    for _ in range(READS):
        if rng.random() < 0.5:
            start = rng.randrange(BIG_SIZE)
            stop = min(BIG_SIZE, start + rng.randint(1, 3 * LEAF))
            got = await fs._cat_file(f"{site.root}/big.bin", start=start, end=stop)
            assert got == site.big[start:stop]
        else:
            name = rng.choice(names)
            got = await fs._cat_file(f"{site.root}/data.zarr/v/{name}")
            assert got == site.chunks[name]
        done += 1
    return done


def test_concurrent_clients(url, site):
    async def run() -> list[int]:
        clients = [
            (http_client if i % 2 else verified_client)(url, site, random.Random(i))
            for i in range(CLIENTS)
        ]
        return await asyncio.wait_for(asyncio.gather(*clients), timeout=120)

    started = time.monotonic()
    counts = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert counts == [READS] * CLIENTS
    print(f"{CLIENTS} clients x {READS} reads in {elapsed:.1f} s")
