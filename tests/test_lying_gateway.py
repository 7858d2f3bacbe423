"""A dishonest gateway: every lie ends in ``IntegrityError``, and no forged byte gets out.

A proxy on 127.0.0.1 forwards each request to an honest howto gateway and tells one lie
per test on the way back: altered bytes, a wrong ``X-Ipfs-Roots``, a swapped block, a
truncated CAR, a redirected HAMT entry, a replaced catalog file.  The same lies fed to
plain ipfsspec show why verification is needed: it hands the forged bytes to the caller.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import fsspec
import intake
import ipfsspec
import numpy as np
import pytest
import xarray as xr
from aiohttp import web

from howto import fs as howto_fs
from howto.blocks.repo import Repo
from howto.errors import IntegrityError
from howto.formats.car import cid_length, encode_section
from howto.formats.cids import RAW, cid_bytes, to_cid
from howto.formats.dagpb import read_varint
from howto.fs import VerifiedIPFSFileSystem
from howto.gateway import serve
from howto.unixfs.add import add
from howto.unixfs.hamt import name_hash

CHUNK = 262144
HELLO = b"hello, honest world\n"
SHARD_FILES = 1300
DROPPED = ("content-length", "transfer-encoding", "content-encoding", "connection", "date")

MAIN_CATALOG = """\
metadata:
  version: 1
sources:
  temperatures:
    description: the data set this catalog is about
    driver: zarr
    args:
      urlpath: "{{ CATALOG_DIR }}/../data.zarr"
"""
OTHER_CATALOG = """\
metadata:
  version: 1
sources:
  elsewhere:
    description: a data set someone would rather you read
    driver: zarr
    args:
      urlpath: "https://example.invalid/other.zarr"
"""


def shard_name(i: int) -> str:
    return f"{i:04d}-" + "h" * 200 + ".txt"


def shard_content(i: int) -> bytes:
    return f"shard entry {i}\n".encode()


# --- CAR surgery (no verification: this is the liar's side) --------------------------------


def split_car(body: bytes) -> tuple[bytes, list[list[bytes]]]:
    """The header and ``[cid, data]`` of every section, byte for byte."""
    size, pos = read_varint(body, 0)
    header, pos = body[: pos + size], pos + size
    sections = []
    while pos < len(body):
        length, pos = read_varint(body, pos)
        section, pos = body[pos : pos + length], pos + length
        split = cid_length(section)
        sections.append([section[:split], section[split:]])
    return header, sections


def join_car(header: bytes, sections: list[list[bytes]]) -> bytes:
    return header + b"".join(encode_section(cid, data) for cid, data in sections)


def flip(data: bytes, at: int | None = None) -> bytes:
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def is_raw(cid: bytes) -> bool:
    return cid[:2] == bytes([0x01, RAW])


# --- the lying proxy -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    car: bool = field(init=False)

    def __post_init__(self) -> None:
        self.car = self.headers.get("Content-Type", "").startswith("application/vnd.ipld.car")


Lie = Callable[[str, Reply, "Liar"], Reply]


class Liar:
    """Forwards to the honest gateway; ``lie`` may rewrite each reply, ``redirect`` each path."""

    def __init__(self, honest: str) -> None:
        self.honest = honest
        self.url = ""  # the liar's own address, set once it listens
        self.lie: Lie | None = None
        self.redirect: Callable[[str], str] | None = None
        self.lies_told = 0
        self.session: aiohttp.ClientSession | None = None

    async def forward(self, path_qs: str, request: web.Request) -> Reply:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "range")}
        async with self.session.request(
            request.method, self.honest + path_qs, headers=headers
        ) as response:
            body = await response.read()
            kept = {k: v for k, v in response.headers.items() if k.lower() not in DROPPED}
            return Reply(response.status, kept, body)

    async def handle(self, request: web.Request) -> web.Response:
        path_qs = request.path_qs
        upstream = self.redirect(path_qs) if self.redirect else path_qs
        reply = await self.forward(upstream, request)
        if upstream != path_qs:
            honest = await self.forward(path_qs, request)
            reply.headers["X-Ipfs-Roots"] = honest.headers.get("X-Ipfs-Roots", "")
            self.lies_told += 1
        if self.lie is not None and reply.status == 200 and request.method == "GET":
            told = self.lie(path_qs, reply, self)
            if told is not reply:
                self.lies_told += 1
            reply = told
        return web.Response(status=reply.status, headers=reply.headers, body=reply.body)


@contextmanager
def run_app(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    thread = threading.Thread(target=loop.run_forever, name="lying-gateway", daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- data --------------------------------------------------------------------------------------


class Site:
    def __init__(self, base: Path) -> None:
        self.repo = Repo(base / "repo")
        self.big = random.Random(5).randbytes(2 * CHUNK + 1000)
        tree = base / "site"
        (tree / "names").mkdir(parents=True)
        (tree / "catalog").mkdir()
        (tree / "hello.txt").write_bytes(HELLO)
        (tree / "big.bin").write_bytes(self.big)
        (tree / "catalog" / "main.yml").write_text(MAIN_CATALOG)
        (tree / "catalog" / "other.yml").write_text(OTHER_CATALOG)
        for i in range(SHARD_FILES):
            (tree / "names" / shard_name(i)).write_bytes(shard_content(i))
        self.dataset = xr.Dataset(
            {"temp": (("t", "z"), np.random.default_rng(1).standard_normal((40, 40)))},
            coords={"t": np.arange(40)},
        )
        self.dataset.to_zarr(
            tree / "data.zarr",
            zarr_format=2,
            encoding={"temp": {"chunks": (20, 20), "compressors": None}},
        )
        self.chunks = {
            bytes(add(p, only_hash=True, cid_version=1, raw_leaves=True))
            for p in (tree / "data.zarr" / "temp").iterdir()
            if re.fullmatch(r"\d+\.\d+", p.name)
        }
        assert len(self.chunks) == 4
        self.root = add(tree, repo=self.repo, cid_version=1, raw_leaves=True, hidden=True)
        self.hello = to_cid(cid_bytes(HELLO, RAW, 1))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return Site(tmp_path_factory.mktemp("lying"))


@pytest.fixture(scope="module")
def gateways(site) -> Iterator[tuple[str, Liar]]:
    with serve(site.repo) as honest:
        liar = Liar(honest)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", liar.handle)

        async def open_session(app: web.Application) -> None:
            liar.session = aiohttp.ClientSession()

        async def close_session(app: web.Application) -> None:
            await liar.session.close()

        app.on_startup.append(open_session)
        app.on_cleanup.append(close_session)
        with run_app(app) as url:
            yield url, liar


@pytest.fixture
def liar(gateways) -> Iterator[Liar]:
    url, liar = gateways
    liar.url = url
    liar.lie = liar.redirect = None
    liar.lies_told = 0
    yield liar
    liar.lie = liar.redirect = None


@pytest.fixture
def vfs(liar) -> VerifiedIPFSFileSystem:
    """A fresh verified file system (nothing cached yet) reading through the liar."""
    return VerifiedIPFSFileSystem(gateway_addr=liar.url, timeout=20, skip_instance_cache=True)


def in_car(change: Callable[[list[list[bytes]]], None]) -> Lie:
    """A lie that edits the sections of CAR replies in place."""

    def lie(path_qs: str, reply: Reply, liar: Liar) -> Reply:
        if not reply.car:
            return reply
        header, sections = split_car(reply.body)
        before = [list(s) for s in sections]
        change(sections)
        if sections == before:
            return reply
        return Reply(reply.status, reply.headers, join_car(header, sections))

    return lie


def in_raw(change: Callable[[bytes], bytes]) -> Lie:
    """A lie that edits single-block (``format=raw``) replies."""

    def lie(path_qs: str, reply: Reply, liar: Liar) -> Reply:
        if reply.headers.get("Content-Type") != "application/vnd.ipld.raw":
            return reply
        return Reply(reply.status, reply.headers, change(reply.body))

    return lie


# --- the lies ----------------------------------------------------------------------------------


def test_honest_proxy_changes_nothing(vfs, site, liar):
    """The proxy itself is transparent: without a lie, everything reads fine."""
    assert vfs.cat(f"{site.root}/hello.txt") == HELLO
    assert vfs.cat(f"{site.root}/big.bin") == site.big
    assert vfs.cat(f"{site.root}/names/{shard_name(3)}") == shard_content(3)
    assert liar.lies_told == 0


def alter_raw_leaf(sections: list[list[bytes]]) -> None:
    for section in sections:
        if is_raw(section[0]):
            section[1] = flip(section[1])
            return


def alter_node(sections: list[list[bytes]]) -> None:
    section = sections[-1] if not is_raw(sections[-1][0]) else sections[0]
    section[1] = flip(section[1], 4)


@pytest.mark.parametrize("name", ["hello.txt", "big.bin"])
def test_altered_bytes_in_a_raw_block(vfs, site, liar, name):
    liar.lie = in_car(alter_raw_leaf)
    with pytest.raises(IntegrityError):
        vfs.cat(f"{site.root}/{name}")
    with pytest.raises(IntegrityError):
        vfs.cat_file(f"{site.root}/{name}", start=1, end=12)
    assert liar.lies_told >= 2


def test_altered_single_block_reply(vfs, site, liar):
    """Once the directories are verified, a one-block file is asked for alone (``format=raw``):
    altered bytes or a wrong ``X-Ipfs-Roots`` in that reply are caught too."""
    path = f"{site.root}/hello.txt"
    assert vfs.cat(path) == HELLO  # honest: verifies the root directory
    liar.lie = in_raw(flip)
    with pytest.raises(IntegrityError, match="does not match its hash"):
        vfs.cat(path)
    with pytest.raises(IntegrityError):
        vfs.cat_file(path, start=1, end=5)
    assert liar.lies_told == 2

    def wrong_roots(path_qs: str, reply: Reply, liar: Liar) -> Reply:
        return Reply(reply.status, {**reply.headers, "X-Ipfs-Roots": str(site.root)}, reply.body)

    liar.lie = wrong_roots
    with pytest.raises(IntegrityError, match="X-Ipfs-Roots"):
        vfs.cat(path)


def test_altered_bytes_in_a_dag_pb_node(vfs, site, liar):
    liar.lie = in_car(alter_node)
    with pytest.raises(IntegrityError):
        vfs.info(f"{site.root}/big.bin")
    assert liar.lies_told == 1


def test_forged_leaf_with_a_matching_cid(vfs, site, liar):
    """The forged block is valid under its own CID, but it is not the one the file links to."""

    def forge(sections: list[list[bytes]]) -> None:
        for section in sections:
            if is_raw(section[0]):
                forged = b"forged!" + section[1][7:]
                section[:] = [cid_bytes(forged, RAW, 1), forged]

    liar.lie = in_car(forge)
    with pytest.raises(IntegrityError, match="lacks block"):
        vfs.cat(f"{site.root}/big.bin")


def test_wrong_x_ipfs_roots(vfs, site, liar):
    def wrong_roots(path_qs: str, reply: Reply, liar: Liar) -> Reply:
        roots = reply.headers["X-Ipfs-Roots"].split(",")
        headers = {**reply.headers, "X-Ipfs-Roots": ",".join([*roots[:-1], str(site.hello)])}
        return Reply(reply.status, headers, reply.body)

    liar.lie = wrong_roots
    for read in (vfs.info, vfs.cat):
        with pytest.raises(IntegrityError, match="X-Ipfs-Roots"):
            read(f"{site.root}/big.bin")

    def too_few_roots(path_qs: str, reply: Reply, liar: Liar) -> Reply:
        roots = reply.headers["X-Ipfs-Roots"].split(",")
        return Reply(reply.status, {**reply.headers, "X-Ipfs-Roots": roots[0]}, reply.body)

    liar.lie = too_few_roots
    fresh = VerifiedIPFSFileSystem(gateway_addr=liar.url, timeout=20, skip_instance_cache=True)
    with pytest.raises(IntegrityError, match="X-Ipfs-Roots"):
        fresh.cat(f"{site.root}/hello.txt")


def test_swapped_block(vfs, site, liar):
    """Leaf 0 carries leaf 1's bytes: a genuine block of the same file, under the wrong CID."""

    def swap(sections: list[list[bytes]]) -> None:
        leaves = [s for s in sections if is_raw(s[0])]
        if len(leaves) >= 2:  # a reply with the file's leaves, not just its path
            leaves[0][1] = leaves[1][1]

    liar.lie = in_car(swap)
    with pytest.raises(IntegrityError):
        vfs.cat(f"{site.root}/big.bin")

    def swap_whole_section(sections: list[list[bytes]]) -> None:
        leaves = [i for i, s in enumerate(sections) if is_raw(s[0])]
        if len(leaves) >= 2:  # self-consistent, but not leaf 0
            sections[leaves[0]] = list(sections[leaves[1]])

    liar.lie = in_car(swap_whole_section)
    with pytest.raises(IntegrityError):
        vfs.cat(f"{site.root}/big.bin")


@pytest.mark.parametrize("where", ["inside a block", "between blocks", "inside the header"])
def test_truncated_car(vfs, site, liar, where):
    def truncate(path_qs: str, reply: Reply, liar: Liar) -> Reply:
        if not reply.car:
            return reply
        header, sections = split_car(reply.body)
        if where == "inside a block":
            body = reply.body[: len(reply.body) - 100]
        elif where == "between blocks":
            body = join_car(header, sections[:-1])
        else:
            body = reply.body[: len(header) - 3]
        return Reply(reply.status, reply.headers, body)

    liar.lie = truncate
    with pytest.raises(IntegrityError):
        vfs.cat(f"{site.root}/big.bin")


def test_redirected_hamt_entry(vfs, site, liar):
    """Asked for one name in the sharded directory, the liar answers with a neighbour's blocks.

    The neighbour sits in the same shard bucket, so every shard node on the way is genuine
    and the X-Ipfs-Roots header is copied from the honest answer: only the walk from the
    root to the requested name shows that the entry's blocks are not in the reply.
    """
    target = shard_name(10)
    bucket = name_hash(target)[0]
    other = next(
        shard_name(i)
        for i in range(SHARD_FILES)
        if i != 10 and name_hash(shard_name(i))[0] == bucket
    )
    liar.redirect = lambda path_qs: path_qs.replace(target, other)
    with pytest.raises(IntegrityError):
        vfs.cat(f"{site.root}/names/{target}")
    fresh = VerifiedIPFSFileSystem(gateway_addr=liar.url, timeout=20, skip_instance_cache=True)
    with pytest.raises(IntegrityError):
        fresh.info(f"{site.root}/names/{target}")
    assert liar.lies_told == 2
    # The shard nodes verified on the way are genuine: kept, they let the next read ask
    # for the entry by its CID, which no longer names the entry and cannot be redirected.
    assert vfs.cat(f"{site.root}/names/{target}") == shard_content(10)
    # Plain ipfsspec believes it.
    plain = ipfsspec.AsyncIPFSFileSystem(gateway_addr=liar.url)
    assert plain.cat(f"{site.root}/names/{target}") == shard_content(int(other[:4]))


@pytest.fixture
def verified_everywhere(liar, monkeypatch):
    """``ipfs://`` through the verified file system, with the liar as configured gateway."""
    before = fsspec.get_filesystem_class("ipfs")
    monkeypatch.setenv("IPFS_GATEWAY", liar.url)
    howto_fs.enable()
    VerifiedIPFSFileSystem.clear_instance_cache()  # nothing verified earlier may help
    yield
    fsspec.register_implementation("ipfs", before, clobber=True)
    VerifiedIPFSFileSystem.clear_instance_cache()


def test_replaced_catalog_file(site, liar, verified_everywhere):
    url = f"ipfs://{site.root}/catalog/main.yml"
    assert list(intake.open_catalog(url)) == ["temperatures"]  # honest first
    VerifiedIPFSFileSystem.clear_instance_cache()
    liar.redirect = lambda path_qs: path_qs.replace("/catalog/main.yml", "/catalog/other.yml")
    with pytest.raises(IntegrityError):
        intake.open_catalog(url)
    VerifiedIPFSFileSystem.clear_instance_cache()
    with pytest.raises(IntegrityError):
        with fsspec.open(url, "rb") as f:
            f.read()
    assert liar.lies_told >= 1


@pytest.mark.parametrize("reply", ["car", "raw"])
def test_altered_zarr_chunk_through_xarray(site, liar, verified_everywhere, reply):
    """Chunks come in a CAR with their path first, then alone once the path is verified:
    a lie in either kind of reply is caught."""
    honest = xr.open_zarr(f"ipfs://{site.root}/data.zarr").load()
    xr.testing.assert_identical(honest, site.dataset)
    VerifiedIPFSFileSystem.clear_instance_cache()

    def alter_chunks(sections: list[list[bytes]]) -> None:
        for section in sections:
            if section[0] in site.chunks:
                section[1] = flip(section[1], 100)

    def alter_chunk(data: bytes) -> bytes:
        return flip(data, 100) if cid_bytes(data, RAW, 1) in site.chunks else data

    liar.lie = in_car(alter_chunks) if reply == "car" else in_raw(alter_chunk)
    lazy = xr.open_zarr(f"ipfs://{site.root}/data.zarr")  # metadata is honest
    with pytest.raises(IntegrityError):
        lazy.load()
    assert liar.lies_told >= 1


# --- why verification is needed ------------------------------------------------------------


def forge_everything(path_qs: str, reply: Reply, liar: Liar) -> Reply:
    """Same-length forged bytes in file responses, and in every raw block of a CAR."""
    if reply.car:
        header, sections = split_car(reply.body)
        for section in sections:
            if is_raw(section[0]):
                section[1] = re.sub(rb"honest", b"forged", section[1])
        return Reply(reply.status, reply.headers, join_car(header, sections))
    if "format=" in path_qs:
        return reply
    return Reply(reply.status, reply.headers, reply.body.replace(b"honest", b"forged"))


def test_plain_ipfsspec_returns_forged_bytes(site, liar, vfs):
    liar.lie = forge_everything
    plain = ipfsspec.AsyncIPFSFileSystem(gateway_addr=liar.url)
    got = plain.cat(f"{site.root}/hello.txt")
    assert got == b"hello, forged world\n"  # accepted without a check
    with plain.open(f"{site.root}/hello.txt") as f:
        assert f.read() == b"hello, forged world\n"
    with pytest.raises(IntegrityError):
        vfs.cat(f"{site.root}/hello.txt")
    with pytest.raises(IntegrityError):
        with vfs.open(f"{site.root}/hello.txt") as f:
            f.read()
