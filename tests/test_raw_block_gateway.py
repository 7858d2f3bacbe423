"""The smallest gateway the trustless spec allows: single blocks by bare CID, nothing else.

A real HTTP server on 127.0.0.1 answers ``GET``/``HEAD /ipfs/{cid}?format=raw`` from a
repository of its own and 501 (or 400) to everything else.  ``howto cat``, ``ls``, ``get``
and ``ipfs://`` reads must work through it, with an empty local repository.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from multiformats import CID

import howto
from howto.blocks.chain import Chain
from howto.blocks.repo import Repo
from howto.errors import IntegrityError, PathNotFoundError
from howto.formats.car import encode_header, encode_section
from howto.formats.cids import cid_bytes, to_cid
from howto.formats.dagpb import (
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    encode_node,
    encode_unixfs,
    varint,
)
from howto.fs import VerifiedIPFSFileSystem
from howto.retrieval.reader import DagReader
from howto.retrieval.trustless import GatewayBlocks, Received
from howto.unixfs.hamt import build_directory
from howto.unixfs.resolver import Resolver

HOWTO = [sys.executable, "-m", "howto.cli"]
DAG_PB = 0x70


class BlocksOnly(ThreadingHTTPServer):
    """Serves the blocks of ``repo`` by bare CID; ``refuse`` for any other request.
    ``tamper`` flips a byte of every block it sends (a lying gateway)."""

    daemon_threads = True

    def __init__(
        self, repo: Repo, refuse: int = 501, tamper: bool = False, car: bytes | None = None
    ) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repo = repo
        self.refuse = refuse
        self.car = car  # when set, what every CAR request gets, with a 200
        self.tamper = tamper
        self.cars = 0  # requests for anything but a raw block
        self.raws = 0
        self.busiest = 0  # the most raw requests in flight at once
        self._now = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BlocksOnly

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self.do_GET(body=False)

    def do_GET(self, body: bool = True) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        segments = parts.path.strip("/").split("/")
        accept = self.headers.get("Accept", "")
        raw = query.get("format") == ["raw"] or (
            "format" not in query and accept == "application/vnd.ipld.raw"
        )
        if len(segments) != 2 or segments[0] != "ipfs" or not raw:
            with self.server.lock:
                self.server.cars += 1
            if self.server.car is not None:
                return self._answer(200, self.server.car, body, "application/vnd.ipld.car")
            return self._answer(self.server.refuse, b"blocks only\n", body)
        server = self.server
        with server.lock:
            server.raws += 1
            server._now += 1
            server.busiest = max(server.busiest, server._now)
        try:
            try:
                data = server.repo.get(segments[1])
            except Exception:
                return self._answer(404, b"no such block\n", body)
            if server.tamper and data:
                data = bytes([data[0] ^ 1]) + data[1:]
            self._answer(200, data, body, "application/vnd.ipld.raw")
        finally:
            with server.lock:
                server._now -= 1

    def _answer(self, status: int, data: bytes, body: bool, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


@contextmanager
def blocks_only(
    repo: Repo, refuse: int = 501, tamper: bool = False, car: bytes | None = None
) -> Iterator[BlocksOnly]:
    server = BlocksOnly(repo, refuse, tamper, car)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def far(tmp_path) -> Repo:
    """The gateway's own repository (the test's ``$HOWTO_REPO`` stays empty)."""
    return Repo(tmp_path / "far")


def tree(far: Repo, tmp_path: Path) -> dict[str, CID]:
    """A folder with a file of many blocks (two levels of file nodes), a small file and a
    subfolder; a HAMT directory of 40 files; each added to ``far``."""
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    big = random.Random(22).randbytes(512_000) + b"the end\n"  # 501 different chunks of 1 KiB
    (folder / "big.bin").write_bytes(big)
    (folder / "sub" / "small.txt").write_bytes(b"small\n")
    root = howto.add(folder, repo=far, chunker="size-1024")
    files = {f"f{i:02}": howto.add(_file(tmp_path, f"f{i:02}"), repo=far) for i in range(40)}

    def emit(node: PBNode) -> tuple[bytes, int]:
        data = encode_node(node)
        raw = cid_bytes(data, DAG_PB, 1)
        far.put(raw, data)
        return raw, len(data)

    links = [PBLink(bytes(cid), name, 1) for name, cid in files.items()]
    shard, _ = build_directory(links, emit, threshold=0)  # a HAMT however few the names
    return {"root": root, "hamt": to_cid(shard), "big": big}


def _file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "hamt-files" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(f"file {name}\n".encode())
    return path


def cli(url: str, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "IPFS_GATEWAY": url}
    env.pop("HOWTO_GATEWAYS", None)
    return subprocess.run(
        [*HOWTO, *map(str, args)], env=env, capture_output=True, timeout=300, cwd=cwd
    )


def test_cat_ls_and_get_through_a_gateway_of_raw_blocks(far, tmp_path, no_configured_gateway):
    made = tree(far, tmp_path)
    root, shard = made["root"], made["hamt"]
    with blocks_only(far) as server:
        result = cli(server.url, "cat", f"{root}/big.bin")
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == made["big"]
        assert cli(server.url, "cat", f"{root}/sub/small.txt").stdout == b"small\n"

        listed = cli(server.url, "ls", root)
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[-1] for line in listed.stdout.decode().splitlines()] == [
            "big.bin",
            "sub/",
        ]
        listed = cli(server.url, "ls", shard)
        assert listed.returncode == 0, listed.stderr
        names = {line.split()[-1] for line in listed.stdout.decode().splitlines()}
        assert names == {f"f{i:02}" for i in range(40)}
        assert cli(server.url, "cat", f"{shard}/f07").stdout == b"file f07\n"

        saved = cli(server.url, "get", root, "-o", tmp_path / "out", "-q")
        assert saved.returncode == 0, saved.stderr
        assert (tmp_path / "out" / "big.bin").read_bytes() == made["big"]
        assert (tmp_path / "out" / "sub" / "small.txt").read_bytes() == b"small\n"
        saved = cli(server.url, "get", shard, "-o", tmp_path / "hamt-out", "-q")
        assert saved.returncode == 0, saved.stderr
        assert (tmp_path / "hamt-out" / "f39").read_bytes() == b"file f39\n"
        assert len(list((tmp_path / "hamt-out").iterdir())) == 40

        missing = cli(server.url, "cat", f"{root}/nothing-here")
        assert missing.returncode != 0
        assert b"nothing-here" in missing.stderr and b"Traceback" not in missing.stderr
    assert server.cars >= 1 and server.raws > 500  # 501 seen, then blocks only


def test_ipfs_urls_through_a_gateway_of_raw_blocks(far, tmp_path, no_configured_gateway):
    made = tree(far, tmp_path)
    root, shard = made["root"], made["hamt"]
    with blocks_only(far) as server:
        fs = VerifiedIPFSFileSystem(gateway_addr=server.url, skip_instance_cache=True)
        assert fs.cat_file(f"ipfs://{root}/big.bin") == made["big"]
        assert fs.cat_file(f"ipfs://{root}/big.bin", start=1000, end=3000) == made["big"][1000:3000]
        assert sorted(fs.ls(f"ipfs://{root}", detail=False))[-1].endswith("sub")
        assert len(fs.ls(f"ipfs://{shard}", detail=False)) == 40
        assert fs.cat_file(f"ipfs://{shard}/f11") == b"file f11\n"


@pytest.mark.parametrize("status", [400, 406, 501])
def test_a_refused_car_falls_back_to_blocks_and_is_remembered(far, tmp_path, status):
    made = tree(far, tmp_path)
    root = made["root"]
    with blocks_only(far, refuse=status) as server:
        gateway = GatewayBlocks(server.url)
        reader = DagReader(Chain([], [gateway]))
        assert b"".join(reader.read(root, "big.bin")) == made["big"]
        assert b"".join(reader.read(root, "sub/small.txt")) == b"small\n"
        # 406 and 501 say the gateway serves no CARs: it is not asked again; a 400 may
        # concern one path, so each request asks for its CAR first.
        assert gateway.raw_only is (status != 400)
        assert (server.cars == 1) is (status != 400)
        # the 500 blocks of the file were asked for several at once, never more than the
        # gateway's connections allow
        assert 1 < server.busiest <= gateway._connections.limit


def test_a_400_for_a_path_car_is_not_called_unavailable(far, tmp_path, no_configured_gateway):
    made = tree(far, tmp_path)
    with blocks_only(far, refuse=400) as server:
        result = cli(server.url, "cat", f"{made['root']}/sub/small.txt")
        assert (result.returncode, result.stdout) == (0, b"small\n"), result.stderr
        result = cli(server.url, "cat", f"{made['root']}/big.bin")
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == made["big"]
        absent = cli(server.url, "cat", f"{made['root']}/sub/absent.txt")
        assert absent.returncode != 0 and b"is not available" not in absent.stderr
        assert b"absent.txt" in absent.stderr


def test_blocks_from_a_lying_raw_gateway_are_refused(far, tmp_path):
    made = tree(far, tmp_path)
    with blocks_only(far, tamper=True) as server:
        reader = DagReader(Chain([], [GatewayBlocks(server.url)]))
        with pytest.raises(IntegrityError):
            b"".join(reader.read(made["root"], "big.bin"))


def test_a_name_absent_from_fetched_blocks_is_path_not_found(far, tmp_path):
    made = tree(far, tmp_path)
    with blocks_only(far) as server:
        gateway = GatewayBlocks(server.url)
        with pytest.raises(PathNotFoundError, match="absent"):
            gateway.car(made["root"], "sub/absent", "block")
        reply = gateway.car(made["root"], "big.bin", "entity", "1024:2047")
        # a CAR's shape: the path's CIDs, and only the blocks that window needs
        assert len(reply.cids) == 2 and len(reply.blocks) <= 4
        window = Resolver(Received(reply.blocks, "the reply"), None)
        assert b"".join(window.read(reply.cids[-1], 1024, 1024)) == made["big"][1024:2048]


@pytest.mark.parametrize("car", [b"", b"\x05not a car at all", b"\x01\xa0"])
def test_an_error_names_the_gateway_once(far, tmp_path, car):
    made = tree(far, tmp_path)
    with blocks_only(far, car=car) as server:
        reader = DagReader(Chain([], [GatewayBlocks(server.url)]))
        with pytest.raises(Exception) as info:
            b"".join(reader.read(made["root"], "big.bin"))
        message = str(info.value)
        assert message.count(server.url) == 1, message


def test_a_huge_identity_cid_from_a_gateway_is_one_short_line(tmp_path, no_configured_gateway):
    """A gateway hands out a directory whose link is a 256 KiB identity CID (over the
    128-byte limit), as a CAR and as a raw block: refused at once, in one short line."""
    huge = b"\x01\x55\x00" + varint(256 * 1024) + b"x" * (256 * 1024)
    node = encode_node(
        PBNode([PBLink(huge, "big", 1)], encode_unixfs(UnixFSData(UnixFSType.DIRECTORY)))
    )
    raw = cid_bytes(node, DAG_PB, 1)
    repo = Repo(tmp_path / "far")
    repo.put(raw, node)
    root = to_cid(raw)
    car = encode_header([root]) + encode_section(raw, node)
    for served in ({"car": car}, {}):  # a CAR for every path, or raw blocks only
        with blocks_only(repo, **served) as gateway:
            for command in (("cat", f"{root}/big"), ("ls", root)):
                result = cli(gateway.url, *command)
                err = result.stderr.decode()
                assert result.returncode != 0 and len(err.splitlines()) == 1, err[:300]
                assert len(err) < 600 and "identity CID of 262144 bytes" in err, err[:300]
