"""Small DAGs that unfold into a lot of work: every reply is bounded, and the gateway's
event loop keeps answering while a large one is prepared.

Each test builds its DAG itself (in memory, as a ``MappingBlocks`` the gateway serves, so
that every block read can be counted) and checks bounds in bytes and counts, never in
seconds.
"""

from __future__ import annotations

import http.client
import logging
import subprocess
import sys
import threading
import urllib.parse

import dag_cbor
from multiformats import CID

from howto.blocks.chain import Chain, CidLike, MappingBlocks
from howto.blocks.repo import Repo
from howto.formats.cids import cid_bytes, to_cid
from howto.formats.dagpb import PBLink, PBNode, UnixFSData, UnixFSType, encode_node, encode_unixfs
from howto.gateway import serve
from howto.gateway.pages import LISTING_PAGE, MAX_PREVIEW_LINKS
from howto.retrieval.reader import DagReader
from howto.unixfs.hamt import build_directory
from howto.unixfs.tar import MAX_TAR_PATHS

RAW, DAG_PB, DAG_CBOR = 0x55, 0x70, 0x71


class Counted(MappingBlocks):
    """Blocks in a dict; counts the bytes read, and holds back the block ``gated`` until
    ``gate`` is set (to show the event loop is not waiting on it)."""

    def __init__(self) -> None:
        super().__init__({}, "test blocks")
        self.read = 0
        self.reads = 0
        self.gated: bytes | None = None
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def add(self, data: bytes, codec: int = RAW) -> CID:
        raw = cid_bytes(data, codec, 1)
        self.mapping[self.key(raw)] = data
        return to_cid(raw)

    def get_unverified(self, cid: CidLike) -> bytes:
        if self.gated is not None and bytes(to_cid(cid)) == self.gated:
            self.waiting.set()
            assert self.gate.wait(60)
        data = super().get_unverified(cid)
        self.read += len(data)
        self.reads += 1
        return data

    def get(self, cid: CidLike) -> bytes:
        return self.get_unverified(cid)


def pb(blocks: Counted, links: list[tuple[str, CID]], meta: UnixFSData) -> CID:
    node = PBNode([PBLink(bytes(c), n, 1) for n, c in links], encode_unixfs(meta))
    return blocks.add(encode_node(node), DAG_PB)


def small_file(blocks: Counted, data: bytes) -> CID:
    return pb(blocks, [], UnixFSData(UnixFSType.FILE, data=data, filesize=len(data)))


def fetch(url: str, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def test_sniffing_reads_a_bounded_head_of_a_file(tmp_path):
    blocks = Counted()
    chunk = 256 << 10
    leaves = [blocks.add(b"[" + bytes(chunk - 1))] + [
        blocks.add(bytes([i]) * chunk) for i in range(1, 8)
    ]  # 2 MiB that start like JSON
    meta = UnixFSData(UnixFSType.FILE, filesize=8 * chunk, blocksizes=[chunk] * 8)
    node = PBNode([PBLink(bytes(c), "", chunk) for c in leaves], encode_unixfs(meta))
    big = blocks.add(encode_node(node), DAG_PB)
    small = small_file(blocks, b'{"a": [1, 2, 3]}\n')
    folder = pb(blocks, [("big", big), ("small", small)], UnixFSData(UnixFSType.DIRECTORY))
    with serve(blocks) as url:
        before = blocks.read
        status, headers, _ = fetch(url, f"/ipfs/{folder}/big", "HEAD")
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        assert blocks.read - before < chunk + 4096  # at most one leaf, never the 2 MiB
        status, headers, body = fetch(url, f"/ipfs/{folder}/small")
        assert (status, headers["Content-Type"]) == (200, "application/json")


def doubling(blocks: Counted, levels: int) -> CID:
    """A directory naming the next one twice at every level: 2**levels paths."""
    below = small_file(blocks, b"leaf\n")
    for _ in range(levels):
        below = pb(blocks, [("a", below), ("b", below)], UnixFSData(UnixFSType.DIRECTORY))
    return below


def test_tar_of_a_dag_of_billions_of_paths_stops_at_the_limit():
    blocks = Counted()
    root = doubling(blocks, 30)  # 31 blocks, 2**31 paths
    with serve(blocks) as url:
        status, _, body = fetch(url, f"/ipfs/{root}?format=tar")
        assert status == 406
        assert f"more than {MAX_TAR_PATHS} paths".encode() in body
        assert len(body.splitlines()) == 1
        small = doubling(blocks, 3)
        status, _, body = fetch(url, f"/ipfs/{small}?format=tar")
        assert status == 200 and body.count(b"leaf\n") == 8


def test_tar_stops_listing_when_the_client_leaves():
    blocks = Counted()
    root = doubling(blocks, 30)
    gated = pb(blocks, [("x", small_file(blocks, b"x"))], UnixFSData(UnixFSType.DIRECTORY))
    top = pb(blocks, [("first", gated), ("then", root)], UnixFSData(UnixFSType.DIRECTORY))
    blocks.gated = bytes(gated)
    with serve(blocks) as url:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("GET", f"/ipfs/{top}?format=tar")
        assert blocks.waiting.wait(60)  # the listing is under way, in a worker thread
        conn.close()  # and the client leaves
        status, _, _ = fetch(url, "/")  # the loop answers meanwhile
        assert status == 200
        reads = blocks.reads
        blocks.gate.set()
        assert fetch(url, "/")[0] == 200
        # the listing ended at the next member, not after 100,000 of them
        assert blocks.reads - reads < 100


def test_a_cbor_block_of_40000_links_is_bounded_and_off_the_loop():
    blocks = Counted()
    target = blocks.add(b"linked forty thousand times\n")
    encoded = dag_cbor.encode({"links": [target] * 40_000})
    many = blocks.add(encoded, DAG_CBOR)
    few = blocks.add(
        dag_cbor.encode({"links": [blocks.add(b"%d" % i) for i in range(500)]}), DAG_CBOR
    )
    blocks.gated = bytes(target)
    with serve(blocks) as url:
        status, _, body = fetch(url, f"/ipfs/{many}?format=dag-cbor")
        assert (status, body) == (200, encoded)
        seen: dict = {}
        reader = threading.Thread(
            target=lambda: seen.update(car=fetch(url, f"/ipfs/{many}?format=car&dag-scope=all"))
        )
        reader.start()
        assert blocks.waiting.wait(60)  # the CAR is being written, its linked block held back
        status, _, body = fetch(url, f"/ipfs/{few}", "GET")  # another request is answered
        assert status == 200
        blocks.gate.set()
        reader.join(60)
        status, _, car = seen["car"]
        assert status == 200 and car.count(b"linked forty thousand times\n") == 1

        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("GET", f"/ipfs/{many}", headers={"Accept": "text/html"})
        refused = conn.getresponse()
        assert refused.status == 406
        assert f"more than {MAX_PREVIEW_LINKS}".encode() in refused.read()
        conn.close()
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("GET", f"/ipfs/{few}", headers={"Accept": "text/html"})
        page = conn.getresponse()
        # each of the 500 links, and the block's own raw form
        assert page.status == 200 and page.read().count(b'<a href="/ipfs/') == 500 + 1
        conn.close()


def big_directory(blocks: Counted, count: int, distinct: int = 10_000) -> CID:
    """A HAMT directory of ``count`` entries over ``distinct`` files (each linked by
    several names: building 100,000 distinct blocks would take most of the test)."""
    files = [small_file(blocks, b"entry %d\n" % i) for i in range(distinct)]
    files = [files[i % distinct] for i in range(count)]

    def emit(node: PBNode) -> tuple[bytes, int]:
        data = encode_node(node)
        return bytes(blocks.add(data, DAG_PB)), len(data)

    links = [PBLink(bytes(c), f"e{i:06}", 1) for i, c in enumerate(files)]
    return to_cid(build_directory(links, emit)[0])  # a HAMT, as kubo makes it


def test_a_listing_of_100000_entries_comes_a_page_at_a_time():
    blocks = Counted()
    folder = big_directory(blocks, 100_000)
    with serve(blocks) as url:
        before = blocks.reads
        status, _, page = fetch(url, f"/ipfs/{folder}/")
        assert status == 200
        assert page.count(b'class="ipfs-hash"') == LISTING_PAGE
        assert b'rel="next" href="?page=2"' in page
        # the entries of one page, and the shards on the way: not the 10,000 files
        assert blocks.reads - before < LISTING_PAGE + 1000
        status, _, last = fetch(url, f"/ipfs/{folder}/?page={100_000 // LISTING_PAGE}")
        assert status == 200 and last.count(b'class="ipfs-hash"') == LISTING_PAGE
        assert b'rel="next"' not in last
        assert fetch(url, f"/ipfs/{folder}/?page=0")[0] == 400
        status, _, beyond = fetch(url, f"/ipfs/{folder}/?page=101")
        assert status == 200 and b'class="ipfs-hash"' not in beyond

    reader = DagReader(Chain([blocks]))
    entries = reader.entries(folder)
    before = blocks.reads
    first = [next(entries) for _ in range(10)]
    assert len({e.name for e in first}) == 10
    assert blocks.reads - before < 10 + 300  # ten entries and the shards: streamed


def test_ls_of_8000_entries_linking_one_big_block_reads_it_at_most_once(tmp_path):
    blocks = Counted()
    big_raw = blocks.add(bytes(8 << 20))
    data = bytes(8 << 20)
    big_node = small_file(blocks, data)
    raw_dir = pb(
        blocks, [(f"r{i}", big_raw) for i in range(8000)], UnixFSData(UnixFSType.DIRECTORY)
    )
    node_dir = pb(
        blocks, [(f"n{i}", big_node) for i in range(8000)], UnixFSData(UnixFSType.DIRECTORY)
    )
    reader = DagReader(Chain([blocks]))
    before = blocks.read
    assert len(reader.ls(raw_dir)) == 8000
    assert blocks.read - before < 1 << 20  # the raw block is never read
    before = blocks.read
    listed = reader.ls(node_dir)
    assert len(listed) == 8000 and {e.size for e in listed} == {8 << 20}
    assert blocks.read - before < (8 << 20) + (1 << 20)  # read once, not 8,000 times


def test_a_line_break_in_a_path_cannot_forge_a_log_line(caplog):
    blocks = Counted()
    with serve(blocks) as url, caplog.at_level(logging.INFO, logger="howto.gateway"):
        forged = "/ipfs/bafkqaaa/x%0AGET%20/ipfs/forged%20-%3E%20200"
        assert fetch(url, forged)[0] == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "howto.gateway"]
    assert lines and all("\n" not in line for line in lines)
    assert any("%0A" in line for line in lines)


def test_ls_lists_3000_entries_of_one_block(tmp_path):
    repo = Repo()
    names = [f"n{i:04}" for i in range(3000)]
    leaf = cid_bytes(b"same\n", RAW, 1)
    repo.put(leaf, b"same\n")
    node = PBNode(
        [PBLink(leaf, n, 5) for n in names], encode_unixfs(UnixFSData(UnixFSType.DIRECTORY))
    )
    data = encode_node(node)
    raw = cid_bytes(data, DAG_PB, 1)
    repo.put(raw, data)
    process = subprocess.Popen(
        [sys.executable, "-m", "howto.cli", "ls", "--offline", str(to_cid(raw))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert [line.split()[-1] for line in out.decode().splitlines()] == names
