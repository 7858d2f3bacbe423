"""``VerifiedIPFSFileSystem``: fsspec reads checked against the CID, and gateway discovery.

The file system is exercised against an honest gateway here (``test_lying_gateway.py``
covers dishonest ones): listings, sizes, whole and ranged reads, file objects, HAMT
directories and xarray.  ``enable()`` is process-global, so what a plain ipfsspec user sees
before and after it is checked in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import fsspec
import numpy as np
import pytest
import xarray as xr
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multiformats import CID

from howto import fs as howto_fs
from howto.blocks.repo import Repo
from howto.errors import IpnsError, NotFoundError, UnavailableError
from howto.formats.cids import RAW, cid_bytes, to_cid
from howto.fs import VerifiedIPFSFileSystem
from howto.gateway import serve
from howto.names.ipns import RecordStore, create_record, name_of, name_text
from howto.retrieval.discovery import configured_gateway, configured_gateways
from howto.retrieval.trustless import GatewayBlocks
from howto.unixfs.add import add

CHUNK = 262144
BIG_SIZE = 3 * CHUNK + 12345
HELLO = b"hello, verified world\n"
SHARD_FILES = 1300


def shard_name(i: int) -> str:
    return f"{i:04d}-" + "v" * 200 + ".dat"


class Site:
    def __init__(self, base: Path) -> None:
        self.repo = Repo(base / "repo")
        self.big = random.Random(11).randbytes(BIG_SIZE)
        tree = self.tree = base / "site"
        (tree / "sub").mkdir(parents=True)
        (tree / "names").mkdir()
        (tree / "hello.txt").write_bytes(HELLO)
        (tree / "big.bin").write_bytes(self.big)
        (tree / "sub" / "a b#c.txt").write_bytes(b"awkward name\n")
        for i in range(SHARD_FILES):
            (tree / "names" / shard_name(i)).write_bytes(f"{i}\n".encode())
        self.dataset = xr.Dataset(
            {"w": (("t", "z"), np.random.default_rng(3).standard_normal((60, 30)))},
            coords={"t": np.arange(60)},
            attrs={"title": "verified"},
        )
        self.dataset.to_zarr(
            tree / "data.zarr", zarr_format=2, encoding={"w": {"chunks": (20, 10)}}
        )
        self.root = add(tree, repo=self.repo, cid_version=1, raw_leaves=True, hidden=True)
        self.hello = to_cid(cid_bytes(HELLO, RAW, 1))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return Site(tmp_path_factory.mktemp("verified"))


@pytest.fixture(scope="module")
def url(site) -> str:
    with serve(site.repo) as base:
        yield base


@pytest.fixture
def vfs(url) -> VerifiedIPFSFileSystem:
    return VerifiedIPFSFileSystem(gateway_addr=url, timeout=20, skip_instance_cache=True)


def test_ls(vfs, site):
    root = str(site.root)
    names = vfs.ls(f"ipfs://{root}", detail=False)
    assert sorted(names) == sorted(
        f"{root}/{n}" for n in ("big.bin", "data.zarr", "hello.txt", "names", "sub")
    )
    detail = {e["name"]: e for e in vfs.ls(root)}
    assert detail[f"{root}/big.bin"]["size"] == BIG_SIZE
    assert detail[f"{root}/big.bin"]["type"] == "file"
    assert detail[f"{root}/names"]["type"] == "directory"
    with pytest.raises(NotADirectoryError):
        vfs.ls(f"{root}/hello.txt")


def test_info(vfs, site):
    info = vfs.info(f"ipfs://{site.root}/hello.txt")
    assert info["type"] == "file"
    assert info["size"] == len(HELLO)
    assert info["CID"] == str(site.hello)
    assert vfs.info(f"/ipfs/{site.root}/sub")["type"] == "directory"
    assert vfs.info(f"{site.root}/big.bin")["size"] == BIG_SIZE
    assert vfs.size(f"{site.root}/big.bin") == BIG_SIZE
    assert vfs.ukey(f"{site.root}/hello.txt") == str(site.hello)


def test_cat_whole_files(vfs, site):
    assert vfs.cat(f"ipfs://{site.root}/hello.txt") == HELLO
    assert vfs.cat_file(f"{site.root}/big.bin") == site.big
    assert vfs.cat_file(f"{site.root}/sub/a b#c.txt") == b"awkward name\n"


@pytest.mark.parametrize(
    "start, end",
    [
        (0, 10),
        (CHUNK - 5, CHUNK + 5),  # across a leaf boundary
        (CHUNK, 2 * CHUNK),  # exactly one leaf
        (100, 3 * CHUNK + 100),  # all leaves
        (BIG_SIZE - 7, None),  # to the end
        (-100, None),  # from the end
        (10, -10),
        (BIG_SIZE + 10, None),  # past the end: nothing
        (50, 50),  # empty
    ],
)
def test_cat_ranges(vfs, site, start, end):
    got = vfs.cat_file(f"{site.root}/big.bin", start=start, end=end)
    assert got == site.big[start:end]


def test_open_seek_read(vfs, site):
    with vfs.open(f"ipfs://{site.root}/big.bin", block_size=100_000) as f:
        assert f.size == BIG_SIZE
        assert f.read(5) == site.big[:5]
        f.seek(CHUNK * 2 - 3)
        assert f.read(10) == site.big[CHUNK * 2 - 3 : CHUNK * 2 + 7]
        f.seek(-4, 2)
        assert f.read() == site.big[-4:]
    with pytest.raises(NotImplementedError):
        vfs.open(f"{site.root}/big.bin", "wb")


def test_exists_and_not_found(vfs, site):
    assert vfs.exists(f"{site.root}/hello.txt")
    assert vfs.exists(f"{site.root}/names/{shard_name(5)}")
    assert not vfs.exists(f"{site.root}/missing.txt")
    assert not vfs.exists(f"{site.root}/names/missing.dat")
    with pytest.raises(NotFoundError, match="missing.txt"):
        vfs.cat(f"{site.root}/missing.txt")
    # A CID no source holds is not known to be absent: an error, never a False.
    nowhere = to_cid(cid_bytes(b"nobody has this", RAW, 1))
    with pytest.raises(UnavailableError):
        vfs.exists(f"ipfs://{nowhere}")
    with pytest.raises(UnavailableError) as info:
        vfs.info(str(nowhere))
    assert not isinstance(info.value, FileNotFoundError)


def test_hamt_directory(vfs, site):
    root = str(site.root)
    names = vfs.ls(f"{root}/names", detail=False)
    assert sorted(names) == sorted(f"{root}/names/{shard_name(i)}" for i in range(SHARD_FILES))
    for i in (0, 999, SHARD_FILES - 1):
        assert vfs.cat(f"{root}/names/{shard_name(i)}") == f"{i}\n".encode()
        assert vfs.info(f"{root}/names/{shard_name(i)}")["size"] == len(f"{i}\n")
    assert vfs.info(f"{root}/names")["type"] == "directory"


def test_repeated_reads_reuse_verified_directories(vfs, site, monkeypatch):
    """Once a directory is verified, paths through it are asked for by CID directly, and a
    file that is one raw block is fetched alone (``format=raw``)."""
    asked: list[tuple[str, str]] = []  # (path, query) of every request
    real_open = GatewayBlocks._open

    def spying_open(self, target, *args, **kwargs):
        parts = urlsplit(f"/ipfs/{target}")
        asked.append((parts.path, parts.query))
        return real_open(self, target, *args, **kwargs)

    real_aget = GatewayBlocks.aget

    async def spying_aget(self, cid, session):  # the event loop's way to one block
        asked.append((f"/ipfs/{cid}", "format=raw"))
        return await real_aget(self, cid, session)

    monkeypatch.setattr(GatewayBlocks, "_open", spying_open)
    monkeypatch.setattr(GatewayBlocks, "aget", spying_aget)
    root = str(site.root)
    assert vfs.cat(f"{root}/hello.txt") == HELLO
    assert asked == [(f"/ipfs/{root}/hello.txt", "format=car&dag-scope=block")]
    assert vfs.cat(f"{root}/hello.txt") == HELLO  # the root is verified now
    assert asked[-1] == (f"/ipfs/{site.hello}", "format=raw")
    assert vfs.cat_file(f"{root}/hello.txt", start=-4) == HELLO[-4:]
    assert vfs.cat_file(f"{root}/hello.txt", start=2, end=5) == HELLO[2:5]
    assert asked[-1] == (f"/ipfs/{site.hello}", "format=raw")
    assert vfs.cat(f"{root}/big.bin") == site.big  # several blocks: a CAR of the range
    big_cid = vfs.info(f"{root}/big.bin")["CID"]
    assert asked[-1] == (
        f"/ipfs/{big_cid}",
        f"format=car&dag-scope=entity&entity-bytes=0:{BIG_SIZE - 1}",
    )
    vfs.ls(f"{root}/names", detail=False)  # fetches (and verifies) every shard node
    count = len(asked)
    assert vfs.cat(f"{root}/names/{shard_name(43)}") == b"43\n"
    assert len(asked) == count + 1
    assert "/names/" not in asked[-1][0]  # the file's own CID, not the path
    assert vfs.info(f"{root}/names")["type"] == "directory"
    assert len(asked) == count + 1  # a verified node needs no second request


def test_first_reads_under_a_verified_directory_stay_on_the_event_loop(site, url, monkeypatch):
    """After a directory is verified, a file of one raw block that was never read before
    is fetched on the event loop (``aget``), with no worker thread to resolve its path."""
    vfs = VerifiedIPFSFileSystem(gateway_addr=url, timeout=20, skip_instance_cache=True)
    ways: list[str] = []
    real_open, real_aget = GatewayBlocks._open, GatewayBlocks.aget

    def spying_open(self, target, *args, **kwargs):
        ways.append("thread")
        return real_open(self, target, *args, **kwargs)

    async def spying_aget(self, cid, session):
        ways.append("event loop")
        return await real_aget(self, cid, session)

    monkeypatch.setattr(GatewayBlocks, "_open", spying_open)
    monkeypatch.setattr(GatewayBlocks, "aget", spying_aget)
    array = f"{site.root}/data.zarr/w"
    chunks = sorted(n.rsplit("/", 1)[1] for n in vfs.ls(array, detail=False) if "/." not in n)
    assert len(chunks) == 9 and "thread" in ways  # the listing fetched the directory
    ways.clear()
    data = [vfs.cat_file(f"{array}/{name}") for name in chunks]
    # each chunk once, some of them fetched ahead of their read, all on the event loop
    assert set(ways) == {"event loop"} and len(chunks) <= len(ways) <= len(chunks) + 2
    assert data == [(site.tree / "data.zarr" / "w" / name).read_bytes() for name in chunks]


@pytest.fixture
def restore_ipfs_protocol():
    before = fsspec.get_filesystem_class("ipfs")
    yield
    fsspec.register_implementation("ipfs", before, clobber=True)


def test_xarray_open_zarr_after_enable(site, url, monkeypatch, restore_ipfs_protocol):
    monkeypatch.setenv("IPFS_GATEWAY", url)
    howto_fs.enable()
    assert fsspec.get_filesystem_class("ipfs") is VerifiedIPFSFileSystem
    got = xr.open_zarr(f"ipfs://{site.root}/data.zarr")
    xr.testing.assert_identical(got.load(), site.dataset)
    fs, _ = fsspec.url_to_fs(f"ipfs://{site.root}/data.zarr")
    assert isinstance(fs, VerifiedIPFSFileSystem)


def test_plain_ipfsspec_users_are_unaffected_until_enable():
    script = """
import json, fsspec
def name():
    cls = fsspec.get_filesystem_class("ipfs")
    return f"{cls.__module__}.{cls.__name__}"
seen = [name()]
import howto, howto.fs, howto.gateway  # importing changes nothing
seen.append(name())
howto.fs.enable()
seen.append(name())
print(json.dumps(seen))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    before, after_import, after_enable = json.loads(out.stdout.strip().splitlines()[-1])
    assert before.startswith("ipfsspec.")
    assert after_import == before
    assert after_enable == "howto.fs.VerifiedIPFSFileSystem"


# --- IPIP-280 gateway discovery ------------------------------------------------------------


@pytest.fixture
def no_gateway(monkeypatch, tmp_path) -> Path:
    """An environment with no gateway configured; returns the (empty) home directory."""
    for name in ("IPFS_GATEWAY", "IPFS_PATH", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    if Path("/etc/ipfs/gateway").exists():
        pytest.skip("this machine configures a gateway in /etc/ipfs/gateway")
    return home


def write_gateway_file(directory: Path, address: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway").write_text(f"{address}\nignored second line\n")


def test_ipfs_gateway_variable(no_gateway, monkeypatch, url, site):
    write_gateway_file(no_gateway / ".ipfs", "http://127.0.0.1:9/from-file")
    monkeypatch.setenv("IPFS_GATEWAY", url + "/")
    assert configured_gateway() == url  # the variable wins, trailing slash dropped
    assert configured_gateways() == [url]
    fs = VerifiedIPFSFileSystem(timeout=20, skip_instance_cache=True)
    assert fs.gateways == [url]
    assert fs.cat(f"{site.root}/hello.txt") == HELLO


def test_gateway_files_in_ipip280_order(no_gateway, monkeypatch, tmp_path):
    assert configured_gateway() is None
    write_gateway_file(no_gateway / ".config" / "ipfs", "http://127.0.0.1:4")
    assert configured_gateway() == "http://127.0.0.1:4"
    xdg = tmp_path / "xdg"
    write_gateway_file(xdg / "ipfs", "http://127.0.0.1:3")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert configured_gateway() == "http://127.0.0.1:3"
    write_gateway_file(no_gateway / ".ipfs", "http://127.0.0.1:2/")
    assert configured_gateway() == "http://127.0.0.1:2"
    ipfs_path = tmp_path / "ipfs-path"
    write_gateway_file(ipfs_path, "http://127.0.0.1:1")
    monkeypatch.setenv("IPFS_PATH", str(ipfs_path))
    assert configured_gateway() == "http://127.0.0.1:1"


def test_gateway_file_is_used_for_reads(no_gateway, url, site):
    write_gateway_file(no_gateway / ".ipfs", url)
    fs = VerifiedIPFSFileSystem(timeout=20, skip_instance_cache=True)
    assert fs.gateways == [url]
    assert fs.cat(f"{site.root}/hello.txt") == HELLO


def test_local_blocks_without_a_gateway_and_one_embedded_gateway_per_repository(
    no_gateway, tmp_path
):
    """In a fresh interpreter with no gateway configured, the file system reads the current
    ``$HOWTO_REPO`` directly; the embedded gateway (for other programs) starts once per
    repository on loopback and serves it."""
    cids = []
    for name in ("first", "second"):
        data = tmp_path / f"{name}.txt"
        data.write_bytes(f"served from the {name} repository\n".encode())
        cids.append(add(data, repo=Repo(tmp_path / name), cid_version=1, raw_leaves=True))
    script = f"""
import json, os
from howto.retrieval.discovery import configured_gateways
from howto.gateway import embedded_gateway_url
from howto.fs import VerifiedIPFSFileSystem
fs = VerifiedIPFSFileSystem(timeout=20)
body = fs.cat("ipfs://{cids[0]}").decode()
first = embedded_gateway_url()
again = embedded_gateway_url()
os.environ["HOWTO_REPO"] = {str(tmp_path / "second")!r}
second = embedded_gateway_url()
other = fs.cat("ipfs://{cids[1]}").decode()
old = VerifiedIPFSFileSystem(gateway_addr=first, timeout=20, skip_instance_cache=True)
print(json.dumps([configured_gateways(), fs.gateways, first, again, second, body, other,
                  old.cat("ipfs://{cids[0]}").decode()]))
"""
    env = {**os.environ, "HOWTO_REPO": str(tmp_path / "first"), "HOME": str(no_gateway)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    configured, asked, first, again, second, body, other, still = json.loads(
        out.stdout.strip().splitlines()[-1]
    )
    assert configured == [] and asked == []
    assert first.startswith("http://127.0.0.1:") and second.startswith("http://127.0.0.1:")
    assert again == first  # started once per repository
    assert second != first
    assert body == still == "served from the first repository\n"
    assert other == "served from the second repository\n"


def test_cid_objects_and_v0_paths(vfs, site):
    v0 = CID("base58btc", 0, "dag-pb", site.root.digest)
    assert vfs.cat(f"ipfs://{v0}/hello.txt") == HELLO


def test_gateway_benchmark_runs_and_reports_every_figure():
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gateway.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--zarr-mb", "1", "--file-mb", "4", "--repeat", "1"]
        + ["--no-goal"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for figure in (
        "sha256 on this machine",
        "blocks behind howto serve",
        "unmodified ipfsspec, same gateway",
        "howto, verified",
        "sha256 of the chunk alone",
        "streamed (howto cat)",
    ):
        assert figure in result.stdout
    assert "Unclosed" not in result.stderr  # every HTTP session of the benchmark is closed


def test_ipns_chains_through_a_gateway(tmp_path):
    """``ipns://`` with an empty local repository: each record of the chain comes from the
    gateway and is checked against its own name; a loop there is an ``IpnsError``."""
    publisher = Repo(tmp_path / "publisher")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hello.txt").write_bytes(HELLO)
    root = add(tmp_path / "site", repo=publisher, cid_version=1, raw_leaves=True)
    records = RecordStore(publisher.path)
    keys = [Ed25519PrivateKey.generate() for _ in range(4)]
    names = [name_text(name_of(key)) for key in keys]
    values = [f"/ipns/{names[1]}", f"/ipfs/{root}", f"/ipns/{names[3]}", f"/ipns/{names[2]}"]
    for key, value in zip(keys, values, strict=True):
        records.put(create_record(key, value, 0), name_of(key))
    with serve(publisher) as url:
        ipns = howto_fs.VerifiedIPNSFileSystem(gateway_addr=url, skip_instance_cache=True)
        assert ipns.cat(f"ipns://{names[0]}/hello.txt") == HELLO
        assert ipns.ls(names[0], detail=False) == [f"{names[0]}/hello.txt"]
        with pytest.raises(IpnsError, match="loop"):
            ipns.cat(f"ipns://{names[2]}/hello.txt")


def test_http_sessions_are_closed_when_the_file_system_goes(url, site, tmp_path):
    """A file known to be one raw block and not held locally is fetched on fsspec's event
    loop through an aiohttp session; dropping the file system closes that session (on its
    loop, through aiohttp's public ``close``), with no warning about anything left open."""
    script = f"""
import gc, aiohttp
from howto.fs import VerifiedIPFSFileSystem
fs = VerifiedIPFSFileSystem(gateway_addr={url!r}, timeout=20, skip_instance_cache=True)
fs.ls({str(site.root)!r})
assert fs.cat({f"{site.root}/hello.txt"!r}) == {HELLO!r}
sessions = [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession)]
assert sessions and not any(s.closed for s in sessions), sessions
del fs
gc.collect()
assert all(s.closed for s in sessions), sessions
print("closed", len(sessions))

async def on_our_loop():  # a file system driven by the caller's event loop
    fs = VerifiedIPFSFileSystem(
        gateway_addr={url!r}, timeout=20, skip_instance_cache=True, asynchronous=True
    )
    await fs._ls({str(site.root)!r})
    assert await fs._cat_file({f"{site.root}/hello.txt"!r}) == {HELLO!r}
    mine = [
        o for o in gc.get_objects()
        if isinstance(o, aiohttp.ClientSession) and all(o is not s for s in sessions)
    ]
    assert mine and not any(s.closed for s in mine), mine
    del fs
    gc.collect()
    assert all(s.closed for s in mine), mine
    print("closed on our loop", len(mine))

import asyncio
asyncio.run(on_our_loop())
"""
    env = {**os.environ, "HOWTO_REPO": str(tmp_path / "empty")}
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("closed ") and "closed on our loop" in result.stdout
    assert "Unclosed" not in result.stderr and "coroutine" not in result.stderr, result.stderr
