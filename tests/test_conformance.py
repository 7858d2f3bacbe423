"""The gateway against the cases of the public gateway conformance suite, group by group.

The fixtures (CARs, IPNS records) are the suite's own, copied into ``tests/conformance``
(see SOURCE.md there); the checks are written here.  Each case is one entry of ``CASES``
with the group it belongs to, so the README's table (group, cases, passing) is the count
of this module's parameters.  Every request goes over HTTP to ``howto.gateway.serve`` on
127.0.0.1, serving a repository into which the fixtures were imported.
"""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from multiformats import CID, multihash

from howto.blocks.repo import Repo
from howto.errors import IpnsError
from howto.formats.car import read_car, read_car_raw
from howto.formats.cids import cid_bytes, to_cid
from howto.gateway import serve
from howto.names.ipns import RecordStore, parse_name, verify_record
from howto.unixfs.resolver import Resolver

FIXTURES = Path(__file__).parent / "conformance"
IMMUTABLE = "public, max-age=29030400, immutable"


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


class Served:
    """A gateway serving every fixture, and what the cases need to know about them."""

    def __init__(self, base: Path) -> None:
        self.repo = Repo(base / "repo")
        self.roots: dict[str, CID] = {}
        with self.repo.transaction() as txn:
            for car in sorted(FIXTURES.glob("*.car")):
                with car.open("rb") as f:
                    roots, blocks = read_car_raw(f)
                    for cid, data in blocks:
                        txn.put(cid, data)
                self.roots[car.stem] = to_cid(roots[0])
        self.resolver = Resolver(self.repo)
        self.url = ""
        # Records: the valid ones as 'howto routing put' keeps them; the others written
        # straight into the record folder, as if they had arrived there by other means,
        # so that the gateway's own check (on every read) is what refuses them.
        self.records = RecordStore(self.repo.path)
        self.names: dict[str, str] = {}
        for record in sorted((FIXTURES / "ipns").glob("*.ipns-record")):
            name, _, kind = record.stem.partition("_")
            self.names[kind or name] = name
            raw = record.read_bytes()
            try:
                self.records.put(raw, parse_name(name))
            except IpnsError:
                self.records.path.mkdir(parents=True, exist_ok=True)
                self.records.file(parse_name(name)).write_bytes(raw)

    def cid(self, fixture: str, *path: str) -> CID:
        return self.resolver.resolve(self.roots[fixture], "/".join(path))[-1]

    def data(self, fixture: str, *path: str) -> bytes:
        return self.repo.get(self.cid(fixture, *path))

    def file(self, fixture: str, *path: str) -> bytes:
        return self.resolver.cat(self.cid(fixture, *path))

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Reply:
        """One request, redirects not followed."""
        parsed = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        try:
            conn.request(method, urllib.parse.quote(path, safe="/?=&%:,*"), headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory) -> Served:
    served = Served(tmp_path_factory.mktemp("conformance"))
    with serve(served.repo) as url:
        served.url = url
        yield served


def car_blocks(body: bytes) -> tuple[list[CID], list[CID]]:
    roots, blocks = read_car(io.BytesIO(body))
    return roots, [cid for cid, _ in blocks]


CASES: list[tuple[str, str, Callable[[Served], None]]] = []


def case(group: str, name: str) -> Callable:
    def register(check: Callable[[Served], None]) -> Callable[[Served], None]:
        CASES.append((group, name, check))
        return check

    return register


# --- trustless gateway: single blocks ------------------------------------------------------

RAW_BLOCK = "gateway-raw-block"


@case("trustless block", "format=raw gives the block")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{cid}?format=raw")
    assert (r.status, r.body) == (200, gw.data(RAW_BLOCK, "dir", "ascii.txt"))


@case("trustless block", "Accept: application/vnd.ipld.raw gives the block")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{cid}", {"Accept": "application/vnd.ipld.raw"})
    assert (r.status, r.body) == (200, gw.data(RAW_BLOCK, "dir", "ascii.txt"))


@case("trustless block", "raw reply headers")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{cid}", {"Accept": "application/vnd.ipld.raw"})
    assert r.header("Content-Type") == "application/vnd.ipld.raw"
    assert r.header("Content-Length") == str(len(r.body))
    assert r.header("Content-Disposition").startswith(f'attachment; filename="{cid}.bin"')
    assert r.header("X-Content-Type-Options") == "nosniff"


@case("trustless block", "raw reply with ?filename=")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{cid}?filename=foobar.bin", {"Accept": "application/vnd.ipld.raw"})
    assert 'attachment; filename="foobar.bin"' in r.header("Content-Disposition")


@case("trustless block", "raw reply caching headers")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{cid}", {"Accept": "application/vnd.ipld.raw"})
    assert r.header("Etag") == f'"{cid}.raw"'
    assert r.header("X-Ipfs-Path") == f"/ipfs/{cid}"
    assert r.header("X-Ipfs-Roots") == str(cid)
    assert r.header("Cache-Control") == IMMUTABLE


@case("trustless block", "raw reply with a range")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    data = gw.data(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{cid}", {"Accept": "application/vnd.ipld.raw", "Range": "bytes=1-4"})
    assert (r.status, r.body) == (206, data[1:5])
    assert r.header("Content-Range") == f"bytes 1-4/{len(data)}"


@case("trustless block", "format=raw wins over Accept: CAR")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir")
    r = gw.get(f"/ipfs/{cid}?format=raw", {"Accept": "application/vnd.ipld.car"})
    assert r.header("Content-Type") == "application/vnd.ipld.raw"
    assert r.body == gw.data(RAW_BLOCK, "dir")


# --- trustless gateway: CAR ----------------------------------------------------------------

TWO = "subdir-with-two-single-block-files"
HAMT = "single-layer-hamt-with-multi-block-files"
CBOR_LINKS = "dir-with-dag-cbor-with-links"
MIXED = "subdir-with-mixed-block-files"
MISSING = "file-3k-and-3-blocks-missing-block"
DUPS = "dir-with-duplicate-files"


def _car(gw: Served, path: str, **query: str) -> tuple[Reply, list[CID], list[CID]]:
    q = "&".join(f"{k.replace('_', '-')}={v}" for k, v in {"format": "car", **query}.items())
    r = gw.get(f"{path}?{q}")
    assert r.status == 200, r.body
    roots, blocks = car_blocks(r.body)
    return r, roots, blocks


def _path_cids(gw: Served, fixture: str, *path: str) -> list[CID]:
    return gw.resolver.resolve(gw.roots[fixture], "/".join(path))


@case("trustless CAR", "pathing through a UnixFS directory")
def _(gw: Served) -> None:
    r, roots, blocks = _car(gw, f"/ipfs/{gw.roots[TWO]}/subdir/ascii.txt")
    assert r.header("Content-Type").startswith("application/vnd.ipld.car; version=1")
    assert roots == [gw.roots[TWO]]
    assert blocks == _path_cids(gw, TWO, "subdir", "ascii.txt")


@case("trustless CAR", "pathing through a HAMT-sharded directory")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[HAMT]}/685.txt")
    target = gw.cid(HAMT, "685.txt")
    assert blocks[0] == gw.roots[HAMT] and target in blocks
    assert gw.resolver.cat(target) == b"".join(
        gw.repo.get(c) for c in blocks if c.codec.name == "raw"
    )


@case("trustless CAR", "pathing from a DAG-CBOR root")
def _(gw: Served) -> None:
    document = gw.cid(CBOR_LINKS, "document")
    _, roots, blocks = _car(gw, f"/ipfs/{document}/files/single")
    assert roots == [document]
    assert blocks[0] == document and gw.cid(CBOR_LINKS, "document", "files", "single") in blocks


@case("trustless CAR", "a missing file is 404 (or a cut CAR)")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[TWO]}/subdir/i-do-not-exist?format=car")
    assert r.status == 404


@case("trustless CAR", "dag-scope=block of a directory on a path")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[TWO]}/subdir", dag_scope="block")
    assert blocks == _path_cids(gw, TWO, "subdir")


@case("trustless CAR", "dag-scope=block of a file on a path")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[TWO]}/subdir/ascii.txt", dag_scope="block")
    assert blocks == _path_cids(gw, TWO, "subdir", "ascii.txt")


@case("trustless CAR", "dag-scope=block of a file in a sharded directory")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[HAMT]}/1.txt", dag_scope="block")
    assert blocks[0] == gw.roots[HAMT] and blocks[-1] == gw.cid(HAMT, "1.txt")
    assert gw.repo.get(blocks[-1])  # the file's root block, not its leaves


@case("trustless CAR", "dag-scope=entity of a directory")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[TWO]}", dag_scope="entity")
    assert blocks == [gw.roots[TWO]]


@case("trustless CAR", "dag-scope=entity of a sharded directory")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[HAMT]}", dag_scope="entity")
    files = {e.cid for e in gw.resolver.ls(gw.roots[HAMT])}
    assert blocks[0] == gw.roots[HAMT] and not files & set(blocks)


@case("trustless CAR", "dag-scope=entity of a file")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[MIXED]}/subdir/ascii.txt", dag_scope="entity")
    assert blocks == _path_cids(gw, MIXED, "subdir", "ascii.txt")


@case("trustless CAR", "dag-scope=entity of a chunked file")
def _(gw: Served) -> None:
    path = ("subdir", "multiblock.txt")
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[MIXED]}/" + "/".join(path), dag_scope="entity")
    walked = [b.cid for b in gw.resolver.walk(gw.cid(MIXED, *path))]
    assert blocks == _path_cids(gw, MIXED, *path)[:-1] + walked


@case("trustless CAR", "dag-scope=entity of DAG-CBOR with links")
def _(gw: Served) -> None:
    document = gw.cid(CBOR_LINKS, "document")
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[CBOR_LINKS]}/document", dag_scope="entity")
    assert blocks == [gw.roots[CBOR_LINKS], document]


@case("trustless CAR", "dag-scope=all of a directory")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[MIXED]}/subdir", dag_scope="all")
    walked = [b.cid for b in gw.resolver.walk(gw.cid(MIXED, "subdir"))]
    assert blocks == [gw.roots[MIXED], *walked]


@case("trustless CAR", "dag-scope=all of a chunked file")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[MIXED]}/subdir/multiblock.txt", dag_scope="all")
    assert len(blocks) == 2 + 1 + 5  # root, subdir, the file's node and its five leaves


@case("trustless CAR", "entity-bytes with a missing block after the range")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[MISSING]}", dag_scope="entity", entity_bytes="0:1000")
    assert blocks[0] == gw.roots[MISSING] and len(blocks) >= 2


@case("trustless CAR", "entity-bytes with a missing block before the range")
def _(gw: Served) -> None:
    r, _, blocks = _car(gw, f"/ipfs/{gw.roots[MISSING]}", dag_scope="entity", entity_bytes="2200:*")
    assert blocks[0] == gw.roots[MISSING] and len(blocks) >= 2


def _multiblock(gw: Served, spec: str) -> list[CID]:
    cid = gw.cid(MIXED, "subdir", "multiblock.txt")
    return _car(gw, f"/ipfs/{cid}", dag_scope="entity", entity_bytes=spec)[2]


def _leaves(gw: Served) -> list[CID]:
    return [b.cid for b in gw.resolver.walk(gw.cid(MIXED, "subdir", "multiblock.txt"))][1:]


@case("trustless CAR", "entity-bytes=0:* is the whole file")
def _(gw: Served) -> None:
    assert _multiblock(gw, "0:*")[1:] == _leaves(gw)


@case("trustless CAR", "entity-bytes of a directory is its entity")
def _(gw: Served) -> None:
    _, _, blocks = _car(gw, f"/ipfs/{gw.roots[HAMT]}", dag_scope="entity", entity_bytes="0:*")
    assert blocks[0] == gw.roots[HAMT]


@case("trustless CAR", "entity-bytes=512:* (middle to end)")
def _(gw: Served) -> None:
    assert _multiblock(gw, "512:*")[1:] == _leaves(gw)[2:]


@case("trustless CAR", "entity-bytes=512:1023 (middle)")
def _(gw: Served) -> None:
    assert _multiblock(gw, "512:1023")[1:] == _leaves(gw)[2:4]


@case("trustless CAR", "entity-bytes=512:-256 (negative end)")
def _(gw: Served) -> None:
    assert _multiblock(gw, "512:-256")[1:] == _leaves(gw)[2:4]


@case("trustless CAR", "entity-bytes=-5:* (suffix)")
def _(gw: Served) -> None:
    assert _multiblock(gw, "-5:*")[1:] == _leaves(gw)[3:]


@case("trustless CAR", "entity-bytes=-9999:* (suffix past the start)")
def _(gw: Served) -> None:
    assert _multiblock(gw, "-9999:*")[1:] == _leaves(gw)


@case("trustless CAR", "entity-bytes=-9999:-3")
def _(gw: Served) -> None:
    assert _multiblock(gw, "-9999:-3")[1:] == _leaves(gw)[:4]  # not the 2-byte last leaf


@case("trustless CAR", "entity-bytes=0:0 (first byte)")
def _(gw: Served) -> None:
    assert _multiblock(gw, "0:0")[1:] == _leaves(gw)[:1]


def _dups(gw: Served, accept: str, query: str = "") -> tuple[Reply, list[CID]]:
    r = gw.get(f"/ipfs/{gw.roots[DUPS]}{query}", {"Accept": accept})
    assert r.status == 200
    return r, car_blocks(r.body)[1]


@case("trustless CAR", "order=dfs; dups=y repeats duplicate blocks")
def _(gw: Served) -> None:
    r, blocks = _dups(gw, "application/vnd.ipld.car; version=1; order=dfs; dups=y")
    assert "order=dfs" in r.header("Content-Type") and "dups=y" in r.header("Content-Type")
    assert len(blocks) > len(set(blocks))
    assert blocks == [b.cid for b in gw.resolver.walk(gw.roots[DUPS], dups=True)]


@case("trustless CAR", "order=dfs; dups=n gives each block once")
def _(gw: Served) -> None:
    r, blocks = _dups(gw, "application/vnd.ipld.car; version=1; order=dfs; dups=n")
    assert "dups=n" in r.header("Content-Type")
    assert len(blocks) == len(set(blocks))


@case("trustless CAR", "order=unk is answered")
def _(gw: Served) -> None:
    r, _ = _dups(gw, "application/vnd.ipld.car; version=1; order=unk")
    assert "order=" in r.header("Content-Type")


@case("trustless CAR", "dups=y of an identity CID")
def _(gw: Served) -> None:
    identity = "bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa"
    r = gw.get(f"/ipfs/{identity}", {"Accept": "application/vnd.ipld.car; dups=y"})
    assert r.status == 200 and "dups=y" in r.header("Content-Type")
    # gateway-conformance: identity blocks are never sent, not even with dups=y
    assert car_blocks(r.body)[1] == []


@case("trustless CAR", "?format=car keeps the Accept parameters")
def _(gw: Served) -> None:
    r, _ = _dups(gw, "application/vnd.ipld.car; version=1; order=dfs; dups=y", "?format=car")
    assert "order=dfs" in r.header("Content-Type") and "dups=y" in r.header("Content-Type")


@case("trustless CAR", "?car-order= wins over Accept")
def _(gw: Served) -> None:
    r, _ = _dups(gw, "application/vnd.ipld.car; order=unk", "?format=car&car-order=dfs")
    assert "order=dfs" in r.header("Content-Type")


@case("trustless CAR", "?car-dups= wins over Accept")
def _(gw: Served) -> None:
    r, _ = _dups(gw, "application/vnd.ipld.car; dups=n", "?format=car&car-dups=y")
    assert "dups=y" in r.header("Content-Type")


@case("trustless CAR", "format=car wins over Accept: raw")
def _(gw: Served) -> None:
    r = gw.get(
        f"/ipfs/{gw.cid(RAW_BLOCK, 'dir')}?format=car", {"Accept": "application/vnd.ipld.raw"}
    )
    assert r.header("Content-Type").startswith("application/vnd.ipld.car")


@case("trustless CAR", "CAR replies say Accept-Ranges: none")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[TWO]}?format=car")
    assert r.header("Accept-Ranges") == "none"


# --- path gateway: UnixFS ------------------------------------------------------------------

LISTING = "dir-listing"
CACHE = "gateway-cache"


@case("path UnixFS", "a listing of the root has no link to its parent")
def _(gw: Served) -> None:
    root = gw.roots[LISTING]
    r = gw.get(f"/ipfs/{root}/")
    assert "Index of" in r.body.decode() and f'href="/ipfs/{root}/.."' not in r.body.decode()


@case("path UnixFS", "a folder without trailing slash redirects")
def _(gw: Served) -> None:
    root = gw.roots[LISTING]
    r = gw.get(f"/ipfs/{root}/ą/ę")
    assert r.status == 301
    assert r.header("Location") == f"/ipfs/{root}/%C4%85/%C4%99/"


@case("path UnixFS", "listing: breadcrumbs, parent, names and CIDs")
def _(gw: Served) -> None:
    root = gw.roots[LISTING]
    r = gw.get(f"/ipfs/{root}/ą/ę/")
    page = r.body.decode()
    assert r.header("Etag").startswith('"DirIndex-')
    assert f'<a href="/ipfs/{root}/%C4%85">ą</a>/<a href="/ipfs/{root}/%C4%85/%C4%99">ę</a>' in page
    assert f'<a href="/ipfs/{root}/%C4%85/%C4%99/..">..</a>' in page
    assert f'<a href="/ipfs/{root}/%C4%85/%C4%99/file-%C5%BA%C5%82.txt">file-źł.txt</a>' in page
    file = gw.cid(LISTING, "ą", "ę", "file-źł.txt")
    assert f'href="/ipfs/{file}?filename=file-%25C5%25BA%25C5%2582.txt"' in page


@case("path UnixFS", "a missing file is 404")
def _(gw: Served) -> None:
    assert gw.get(f"/ipfs/{gw.roots[LISTING]}/i-do-not-exist").status == 404


@case("path UnixFS", "listing headers: path, roots, DirIndex Etag, short cache")
def _(gw: Served) -> None:
    root = gw.roots[CACHE]
    r = gw.get(f"/ipfs/{root}/root2/root3/")
    assert r.status == 200
    assert r.header("X-Ipfs-Path") == f"/ipfs/{root}/root2/root3/"
    roots = _path_cids(gw, CACHE, "root2", "root3")
    assert r.header("X-Ipfs-Roots") == ",".join(map(str, roots))
    assert r.header("Etag").endswith(f'_CID-{roots[-1]}"') and "DirIndex-" in r.header("Etag")
    assert r.header("Cache-Control") in (
        "",
        "public, max-age=604800, stale-while-revalidate=2678400",
    )


@case("path UnixFS", "a folder with index.html gives the page")
def _(gw: Served) -> None:
    root = gw.roots[CACHE]
    r = gw.get(f"/ipfs/{root}/root2/root3/root4/")
    roots = _path_cids(gw, CACHE, "root2", "root3", "root4")
    assert r.status == 200 and r.header("Cache-Control") == IMMUTABLE
    assert r.header("X-Ipfs-Roots") == ",".join(map(str, roots))
    assert r.header("Etag") == f'"{roots[-1]}"'
    assert r.body == gw.file(CACHE, "root2", "root3", "root4", "index.html")


@case("path UnixFS", "a file: headers and Etag")
def _(gw: Served) -> None:
    root = gw.roots[CACHE]
    r = gw.get(f"/ipfs/{root}/root2/root3/root4/index.html")
    cid = gw.cid(CACHE, "root2", "root3", "root4", "index.html")
    assert r.status == 200 and r.header("Etag") == f'"{cid}"'
    assert r.header("Cache-Control") == IMMUTABLE
    assert r.header("Content-Type").startswith("text/html")


@case("path UnixFS", "a folder as a raw block")
def _(gw: Served) -> None:
    root = gw.roots[CACHE]
    r = gw.get(f"/ipfs/{root}/root2/root3?format=raw")
    assert r.status == 200 and r.body == gw.data(CACHE, "root2", "root3")
    assert r.header("Etag") == f'"{gw.cid(CACHE, "root2", "root3")}.raw"'


@case("path UnixFS", "HEAD with only-if-cached, held: 200")
def _(gw: Served) -> None:
    r = gw.get(
        f"/ipfs/{gw.roots[CACHE]}/root2/root3/root4/index.html",
        {"Cache-Control": "only-if-cached"},
        "HEAD",
    )
    assert r.status == 200 and r.body == b""


@case("path UnixFS", "HEAD with only-if-cached, not held: 412")
def _(gw: Served) -> None:
    absent = to_cid(cid_bytes(b"not held anywhere", 0x55, 1))
    r = gw.get(f"/ipfs/{absent}", {"Cache-Control": "only-if-cached"}, "HEAD")
    assert r.status == 412


@case("path UnixFS", "GET with only-if-cached, held: 200")
def _(gw: Served) -> None:
    r = gw.get(
        f"/ipfs/{gw.roots[CACHE]}/root2/root3/root4/index.html", {"Cache-Control": "only-if-cached"}
    )
    assert r.status == 200 and r.body


@case("path UnixFS", "GET with only-if-cached, not held: 412")
def _(gw: Served) -> None:
    absent = to_cid(cid_bytes(b"not held anywhere", 0x55, 1))
    assert gw.get(f"/ipfs/{absent}", {"Cache-Control": "only-if-cached"}).status == 412


def _index(gw: Served) -> tuple[str, CID]:
    return f"/ipfs/{gw.roots[CACHE]}/root2/root3/root4/index.html", gw.cid(
        CACHE, "root2", "root3", "root4", "index.html"
    )


@case("path UnixFS", "If-None-Match with the file's Etag: 304")
def _(gw: Served) -> None:
    path, cid = _index(gw)
    assert gw.get(path, {"If-None-Match": f'"{cid}"'}).status == 304


@case("path UnixFS", "If-None-Match on a folder with index.html: 304")
def _(gw: Served) -> None:
    cid = gw.cid(CACHE, "root2", "root3", "root4")
    r = gw.get(f"/ipfs/{gw.roots[CACHE]}/root2/root3/root4/", {"If-None-Match": f'"{cid}"'})
    assert r.status == 304


@case("path UnixFS", "If-None-Match matching the third tag: 304")
def _(gw: Served) -> None:
    path, cid = _index(gw)
    assert gw.get(path, {"If-None-Match": f'"fakeEtag1", "fakeEtag2", "{cid}"'}).status == 304


@case("path UnixFS", "If-None-Match with a weak tag: 304")
def _(gw: Served) -> None:
    path, cid = _index(gw)
    assert gw.get(path, {"If-None-Match": f'W/"{cid}"'}).status == 304


@case("path UnixFS", "If-None-Match: * gives 304")
def _(gw: Served) -> None:
    path, _ = _index(gw)
    assert gw.get(path, {"If-None-Match": "*"}).status == 304


@case("path UnixFS", "listing Etag, strong and weak, gives 304")
def _(gw: Served) -> None:
    path = f"/ipfs/{gw.roots[CACHE]}/root2/root3/"
    etag = gw.get(path).header("Etag").strip('"')
    assert gw.get(path, {"If-None-Match": f'"{etag}"'}).status == 304
    assert gw.get(path, {"If-None-Match": f'W/"{etag}"'}).status == 304


@case("path UnixFS", "a listing names a symlink and its target")
def _(gw: Served) -> None:
    page = gw.get(f"/ipfs/{gw.roots['symlink']}/").body.decode()
    assert ">foo<" in page and ">bar<" in page


@case("path UnixFS", "a symlinked folder as a raw block")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots['symlink']}?format=raw")
    assert (r.status, r.body) == (200, gw.data("symlink"))


@case("path UnixFS", "a symlink gives its target path")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots['symlink']}/bar")
    assert (r.status, r.body) == (200, b"foo")


@case("path UnixFS", "a file name with percent-encoded characters")
def _(gw: Served) -> None:
    root = gw.roots["dir-with-percent-encoded-filename"]
    name = next(e.name for e in gw.resolver.ls(root))
    r = gw.get(f"/ipfs/{root}/{urllib.parse.quote(name, safe='')}")
    assert (r.status, r.body) == (200, gw.file("dir-with-percent-encoded-filename", name))


@case("path UnixFS", "X-Content-Type-Options: nosniff")
def _(gw: Served) -> None:
    path, _ = _index(gw)
    assert gw.get(path).header("X-Content-Type-Options") == "nosniff"


@case("path UnixFS", "HEAD has the headers and no body")
def _(gw: Served) -> None:
    path, cid = _index(gw)
    r = gw.get(path, method="HEAD")
    assert (r.status, r.body, r.header("Etag")) == (200, b"", f'"{cid}"')
    assert r.header("Content-Length") == str(len(gw.resolver.cat(cid)))


@case("path UnixFS", "the identity CID bafkqaaa is an empty file")
def _(gw: Served) -> None:
    r = gw.get("/ipfs/bafkqaaa")
    assert (r.status, r.body) == (200, b"")


@case("path UnixFS", "inline (identity) data is served")
def _(gw: Served) -> None:
    r = gw.get("/ipfs/bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa")
    assert (r.status, r.body) == (200, b"hello i am inlined cid\n")


@case("path UnixFS", "?filename= and ?download=true set Content-Disposition")
def _(gw: Served) -> None:
    path, _ = _index(gw)
    assert (
        gw.get(f"{path}?filename=a.html").header("Content-Disposition")
        == 'inline; filename="a.html"'
    )
    r = gw.get(f"{path}?filename=a.html&download=true")
    assert r.header("Content-Disposition") == 'attachment; filename="a.html"'


# --- path gateway: raw ---------------------------------------------------------------------


@case("path raw", "format=raw gives the block")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[RAW_BLOCK]}/dir/ascii.txt?format=raw")
    assert (r.status, r.body) == (200, gw.data(RAW_BLOCK, "dir", "ascii.txt"))


@case("path raw", "Accept: raw gives the block")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[RAW_BLOCK]}/dir/ascii.txt", {"Accept": "application/vnd.ipld.raw"})
    assert (r.status, r.body) == (200, gw.data(RAW_BLOCK, "dir", "ascii.txt"))


@case("path raw", "Accept: raw with a range")
def _(gw: Served) -> None:
    data = gw.data(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(
        f"/ipfs/{gw.roots[RAW_BLOCK]}/dir/ascii.txt",
        {"Accept": "application/vnd.ipld.raw", "Range": "bytes=6-16"},
    )
    assert (r.status, r.body) == (206, data[6:17])


@case("path raw", "raw reply headers on a path")
def _(gw: Served) -> None:
    cid = gw.cid(RAW_BLOCK, "dir", "ascii.txt")
    r = gw.get(f"/ipfs/{gw.roots[RAW_BLOCK]}/dir/ascii.txt", {"Accept": "application/vnd.ipld.raw"})
    assert r.header("Content-Type") == "application/vnd.ipld.raw"
    assert r.header("Content-Length") == str(len(r.body))
    assert f'filename="{cid}.bin"' in r.header("Content-Disposition")
    assert r.header("X-Content-Type-Options") == "nosniff"


@case("path raw", "raw reply with ?filename= on a path")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[RAW_BLOCK]}/dir/ascii.txt?filename=foobar.bin&format=raw")
    assert 'attachment; filename="foobar.bin"' in r.header("Content-Disposition")


@case("path raw", "raw caching headers on a path")
def _(gw: Served) -> None:
    root = gw.roots[RAW_BLOCK]
    r = gw.get(f"/ipfs/{root}/dir/ascii.txt", {"Accept": "application/vnd.ipld.raw"})
    cids = _path_cids(gw, RAW_BLOCK, "dir", "ascii.txt")
    assert r.header("Etag") == f'"{cids[-1]}.raw"'
    assert r.header("X-Ipfs-Path") == f"/ipfs/{root}/dir/ascii.txt"
    assert r.header("X-Ipfs-Roots") == ",".join(map(str, cids))
    assert r.header("Cache-Control") == IMMUTABLE


# --- path gateway: tar ---------------------------------------------------------------------

TAR = "path-gateway-tar"


def _untar(body: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {
            m.name.rstrip("/"): archive.extractfile(m).read() if m.isfile() else None
            for m in archive.getmembers()
        }


@case("path tar", "format=tar of a file")
def _(gw: Served) -> None:
    cid = gw.cid(TAR, "ą", "ę", "file-źł.txt")
    r = gw.get(f"/ipfs/{cid}?format=tar")
    assert r.status == 200
    assert r.header("Content-Disposition").startswith("attachment;")
    assert r.header("Etag").startswith(f'W/"{cid}.x-tar')
    assert r.header("Content-Type").startswith("application/x-tar")
    assert _untar(r.body) == {str(cid): b"I am a txt file on path with utf8\n"}


@case("path tar", "Accept: application/x-tar")
def _(gw: Served) -> None:
    cid = gw.cid(TAR, "ą", "ę", "file-źł.txt")
    r = gw.get(f"/ipfs/{cid}", {"Accept": "application/x-tar"})
    assert r.status == 200 and r.header("Content-Type").startswith("application/x-tar")
    assert _untar(r.body)


@case("path tar", "a folder is archived under its CID")
def _(gw: Served) -> None:
    root = gw.roots[TAR]
    files = _untar(gw.get(f"/ipfs/{root}?format=tar").body)
    assert files[f"{root}/ą/ę/file-źł.txt"] == b"I am a txt file on path with utf8\n"


@case("path tar", "?filename= with a non-ASCII name")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[TAR]}?filename=testтест.tar&format=tar")
    assert r.header("Content-Disposition") == (
        "attachment; filename=\"test____.tar\"; filename*=UTF-8''test%D1%82%D0%B5%D1%81%D1%82.tar"
    )


@case("path tar", "names that leave the root are refused")
def _(gw: Served) -> None:
    assert 400 <= gw.get(f"/ipfs/{gw.roots['outside-root']}?format=tar").status < 600


@case("path tar", "relative links inside the root are archived")
def _(gw: Served) -> None:
    root = gw.roots["inside-root"]
    r = gw.get(f"/ipfs/{root}?format=tar")
    assert r.status == 200 and f"{root}/foobar/file" in _untar(r.body)


# --- path gateway: ranges ------------------------------------------------------------------

FILES = "dir-with-files"


@case("path range", "a file says Accept-Ranges: bytes")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[FILES]}/ascii.txt")
    assert r.header("Accept-Ranges") == "bytes" and r.body == gw.file(FILES, "ascii.txt")


@case("path range", "a single range")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[FILES]}/ascii.txt", {"Range": "bytes=6-16"})
    assert (r.status, r.header("Content-Range")) == (206, "bytes 6-16/31")
    assert r.body == gw.file(FILES, "ascii.txt")[6:17]


@case("path range", "a suffix range")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[FILES]}/ascii.txt", {"Range": "bytes=-3"})
    assert (r.status, r.header("Content-Range")) == (206, "bytes 28-30/31")
    assert r.body == gw.file(FILES, "ascii.txt")[28:31]


@case("path range", "several ranges as multipart/byteranges")
def _(gw: Served) -> None:
    data = gw.file(FILES, "ascii.txt")
    r = gw.get(f"/ipfs/{gw.roots[FILES]}/ascii.txt", {"Range": "bytes=6-16,0-4"})
    assert r.status == 206 and "multipart/byteranges" in r.header("Content-Type")
    assert b"Content-Range: bytes 6-16/31" in r.body and data[6:17] in r.body
    assert b"Content-Range: bytes 0-4/31" in r.body and data[0:5] in r.body


@case("path range", "a range before a missing block")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[MISSING]}", {"Range": "bytes=997-1000"})
    assert (r.status, r.header("Content-Range")) == (206, "bytes 997-1000/3072")


@case("path range", "a range after a missing block")
def _(gw: Served) -> None:
    r = gw.get(f"/ipfs/{gw.roots[MISSING]}", {"Range": "bytes=2200-2201"})
    assert (r.status, r.header("Content-Range")) == (206, "bytes 2200-2201/3072")


# --- path gateway: DAG-JSON, DAG-CBOR, JSON, CBOR ------------------------------------------

JSON_CBOR = "gateway-json-cbor"


@case("path DAG", "a file of JSON, by CID alone, is application/json")
def _(gw: Served) -> None:
    cid = gw.cid(JSON_CBOR, "ą", "ę", "t.json")
    r = gw.get(f"/ipfs/{cid}")
    assert (r.status, r.header("Content-Type")) == (200, "application/json")
    assert r.body == gw.file(JSON_CBOR, "ą", "ę", "t.json")


@case("path DAG", "a file of JSON with Accept: application/json is the file")
def _(gw: Served) -> None:
    cid = gw.cid(JSON_CBOR, "ą", "ę", "t.json")
    r = gw.get(f"/ipfs/{cid}", {"Accept": "application/json"})
    assert (r.status, r.header("Content-Type")) == (200, "application/json")
    assert r.body == gw.file(JSON_CBOR, "ą", "ę", "t.json")


@case("path DAG", "a raw block of JSON: format=json wins over Accept: raw")
def _(gw: Served) -> None:
    cid = gw.cid(JSON_CBOR, "ą", "ę", "t.json")
    r = gw.get(f"/ipfs/{cid}?format=json", {"Accept": "application/vnd.ipld.raw"})
    assert (r.status, r.header("Content-Type")) == (200, "application/json")
    assert r.body == gw.file(JSON_CBOR, "ą", "ę", "t.json")


@case("path DAG", "a raw block of JSON: format=raw wins over Accept: json")
def _(gw: Served) -> None:
    cid = gw.cid(JSON_CBOR, "ą", "ę", "t.json")
    r = gw.get(f"/ipfs/{cid}?format=raw", {"Accept": "application/json"})
    assert r.header("Content-Type") == "application/vnd.ipld.raw"


def _conversion_refused(path: str, headers: dict | None = None) -> Callable[[Served], None]:
    def check(gw: Served) -> None:
        fixture, _, rest = path.partition(":")
        cid = gw.roots[fixture] if fixture != "file" else gw.cid(JSON_CBOR, "ą", "ę", "file-źł.txt")
        assert gw.get(f"/ipfs/{cid}{rest}", headers).status == 406

    return check


for _name, _path, _headers in [
    ("dag-pb file as format=dag-json: 406", "file:?format=dag-json", None),
    ("dag-pb file as format=dag-cbor: 406", "file:?format=dag-cbor", None),
    ("dag-pb file with Accept dag-json: 406", "file:", {"Accept": "application/vnd.ipld.dag-json"}),
    ("DAG-JSON as format=dag-cbor: 406", "dag-json-traversal:?format=dag-cbor", None),
    ("DAG-CBOR as format=dag-json: 406", "dag-cbor-traversal:?format=dag-json", None),
    (
        "DAG-CBOR with Accept dag-json: 406",
        "dag-cbor-traversal:",
        {"Accept": "application/vnd.ipld.dag-json"},
    ),
]:
    case("path DAG", _name)(_conversion_refused(_path, _headers))


def _plain(kind: str, disposition: str, how: str) -> Callable[[Served], None]:
    def check(gw: Served) -> None:
        cid = gw.roots[f"plain-{kind}"]
        headers = {"Accept": f"application/{kind}"} if how == "accept" else None
        query = f"?format={kind}" if how == "format" else ""
        r = gw.get(f"/ipfs/{cid}{query}", headers)
        assert (r.status, r.body) == (200, gw.data(f"plain-{kind}"))
        assert r.header("Content-Type") == f"application/{kind}"
        assert f'{disposition}; filename="{cid}.{kind}"' in r.header("Content-Disposition")
        ranged = gw.get(f"/ipfs/{cid}{query}", {**(headers or {}), "Range": "bytes=1-3"})
        assert (ranged.status, ranged.body) == (206, r.body[1:4])

    return check


for _kind, _disposition in [("json", "inline"), ("cbor", "attachment")]:
    for _how in ("plain", "format", "accept"):
        case("path DAG", f"plain {_kind} codec, {_how}: as stored, with ranges")(
            _plain(_kind, _disposition, _how)
        )


def _traversal(kind: str) -> None:
    fixture = f"dag-{kind}-traversal"

    @case("path DAG", f"DAG-{kind.upper()}: a path ending inside a block is 501")
    def _(gw: Served) -> None:
        assert gw.get(f"/ipfs/{gw.roots[fixture]}/foo?format=dag-{kind}").status == 501

    @case("path DAG", f"DAG-{kind.upper()}: a path through several links")
    def _(gw: Served) -> None:
        r = gw.get(f"/ipfs/{gw.roots[fixture]}/foo/link/bar?format=dag-{kind}")
        assert r.status == 200
        if kind == "json":
            assert json.loads(r.body) == {"hello": "this is not a link"}
        else:
            import dag_cbor

            assert dag_cbor.decode(r.body) == {"hello": "this is not a link"}

    @case("path DAG", f"DAG-{kind.upper()}: a missing link is 404")
    def _(gw: Served) -> None:
        assert gw.get(f"/ipfs/{gw.roots[fixture]}/foo/i-do-not-exist").status == 404

    def native(how: str, fmt: str) -> Callable[[Served], None]:
        def check(gw: Served) -> None:
            cid = gw.roots[fixture]
            headers = {"Accept": f"application/{fmt}"} if how == "accept" else {}
            query = f"?format={fmt.removeprefix('vnd.ipld.')}" if how == "format" else ""
            r = gw.get(f"/ipfs/{cid}{query}", headers)
            assert (r.status, r.body) == (200, gw.data(fixture))
            want = "application/" + (fmt if how != "plain" else f"vnd.ipld.dag-{kind}")
            assert r.header("Content-Type") == want
            assert r.header("Content-Length") == str(len(r.body))
            disposition = "inline" if kind == "json" else "attachment"
            assert f'{disposition}; filename="{cid}.{kind}"' in r.header("Content-Disposition")

        return check

    for how, fmt in [
        ("plain", f"vnd.ipld.dag-{kind}"),
        ("format", f"vnd.ipld.dag-{kind}"),
        ("accept", f"vnd.ipld.dag-{kind}"),
        ("format", kind),
        ("accept", kind),
    ]:
        case("path DAG", f"DAG-{kind.upper()} {how} {fmt}: the block as stored")(native(how, fmt))

    @case("path DAG", f"DAG-{kind.upper()}: ?filename= and ?download=true")
    def _(gw: Served) -> None:
        cid = gw.roots[fixture]
        accept = {"Accept": f"application/vnd.ipld.dag-{kind}"}
        disposition = "inline" if kind == "json" else "attachment"
        r = gw.get(f"/ipfs/{cid}?filename=foobar.{kind}", accept)
        assert f'{disposition}; filename="foobar.{kind}"' in r.header("Content-Disposition")
        r = gw.get(f"/ipfs/{cid}?filename=foobar.{kind}&download=true", accept)
        assert f'attachment; filename="foobar.{kind}"' in r.header("Content-Disposition")

    @case("path DAG", f"DAG-{kind.upper()}: caching headers")
    def _(gw: Served) -> None:
        cid = gw.roots[fixture]
        r = gw.get(f"/ipfs/{cid}", {"Accept": f"application/vnd.ipld.dag-{kind}"})
        assert f"{cid}.dag-{kind}" in r.header("Etag")
        assert r.header("X-Ipfs-Path") and r.header("X-Ipfs-Roots")
        assert r.header("Cache-Control") == IMMUTABLE

    @case("path DAG", f"DAG-{kind.upper()}: HEAD, with and without format")
    def _(gw: Served) -> None:
        cid = gw.roots[fixture]
        for query in ("", f"?format=dag-{kind}"):
            r = gw.get(f"/ipfs/{cid}{query}", method="HEAD")
            assert (r.status, r.body) == (200, b"")
            assert r.header("Content-Type") == f"application/vnd.ipld.dag-{kind}"
            assert r.header("Content-Length") == str(len(gw.data(fixture)))

    @case("path DAG", f"DAG-{kind.upper()}: HEAD only-if-cached of a missing block is 412")
    def _(gw: Served) -> None:
        digest = multihash.digest(b"{}", "sha2-256")
        absent = CID("base32", 1, "dag-cbor" if kind == "cbor" else "dag-json", digest)
        r = gw.get(f"/ipfs/{absent}", {"Cache-Control": "only-if-cached"}, "HEAD")
        assert r.status == 412

    @case("path DAG", f"DAG-{kind.upper()}: Accept text/html gives a preview page")
    def _(gw: Served) -> None:
        r = gw.get(f"/ipfs/{gw.roots[fixture]}/", {"Accept": "text/html"})
        assert r.status == 200 and r.header("Content-Type").startswith("text/html")
        assert "DagIndex-" in r.header("Etag") and not r.header("Content-Disposition")
        assert r.body.rstrip().endswith(b"</html>")

    @case("path DAG", f"DAG-{kind.upper()}: ranges of the block")
    def _(gw: Served) -> None:
        cid = gw.roots[fixture]
        data = gw.data(fixture)
        for headers in (
            {},
            {"Accept": f"application/vnd.ipld.dag-{kind}"},
            {"Accept": f"application/{kind}"},
        ):
            r = gw.get(f"/ipfs/{cid}/", {**headers, "Range": "bytes=2-5"})
            assert (r.status, r.body) == (206, data[2:6])


_traversal("json")
_traversal("cbor")


# --- trustless gateway: IPNS records ------------------------------------------------------

RECORD = "application/vnd.ipfs.ipns-record"


def _record_reply(kind: str, how: str) -> Callable[[Served], None]:
    def check(gw: Served) -> None:
        name = gw.names[kind]
        if how == "format":
            r = gw.get(f"/ipns/{name}?format=ipns-record")
        else:
            r = gw.get(f"/ipns/{name}", {"Accept": RECORD})
        assert r.status == 200
        assert r.header("Content-Disposition").startswith("attachment;")
        assert r.header("Content-Type") == RECORD
        assert "public, max-age=1800" in r.header("Cache-Control")
        held = verify_record((FIXTURES / "ipns" / f"{name}_{kind}.ipns-record").read_bytes(), name)
        assert verify_record(r.body, name).value == held.value

    return check


for _kind in ("v1-v2", "v2"):
    for _how in ("format", "accept"):
        case("trustless IPNS", f"the {_kind} record by {_how}, valid for its name")(
            _record_reply(_kind, _how)
        )


@case("trustless IPNS", "?filename= names the record file")
def _(gw: Served) -> None:
    r = gw.get(f"/ipns/{gw.names['v1-v2']}?format=ipns-record&filename=testтест.ipns-record")
    assert r.header("Content-Disposition") == (
        'attachment; filename="test____.ipns-record"; '
        "filename*=UTF-8''test%D1%82%D0%B5%D1%81%D1%82.ipns-record"
    )


# --- path gateway: IPNS names --------------------------------------------------------------


def _raw_identity(value: str) -> bytes:
    return bytes(CID.decode(value.removeprefix("/ipfs/")).raw_digest)


def _refused(kind: str) -> Callable[[Served], None]:
    def check(gw: Served) -> None:
        assert 500 <= gw.get(f"/ipns/{gw.names[kind]}").status < 600

    return check


def _served(kind: str) -> Callable[[Served], None]:
    def check(gw: Served) -> None:
        name = gw.names[kind]
        record = verify_record(gw.records.raw(parse_name(name)), name)
        r = gw.get(f"/ipns/{name}")
        assert (r.status, r.body) == (200, _raw_identity(record.value))

    return check


for _name, _kind, _check in [
    ("a V1-only record fails with 5XX", "v1", _refused),
    ("V1 and V2 values that disagree fail with 5XX", "v1-v2-broken-v1-value", _refused),
    ("a valid V2 beside a broken V1 signature is served", "v1-v2-broken-signature-v1", _served),
    ("valid V1 and V2 signatures are served", "v1-v2", _served),
    ("a V2-only record is served", "v2", _served),
    (
        "a valid V1 beside a broken V2 signature fails with 5XX",
        "v1-v2-broken-signature-v2",
        _refused,
    ),
]:
    case("path IPNS", _name)(_check(_kind))


@case("path IPNS", "a base58 ed25519 peer ID redirects to base36")
def _(gw: Served) -> None:
    r = gw.get("/ipns/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK/root2/")
    assert r.status == 302
    assert r.header("Location") == (
        "/ipns/k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8/root2/"
    )


@case("path IPNS", "a base58 RSA key hash redirects to base36")
def _(gw: Served) -> None:
    r = gw.get("/ipns/QmcJM7PRfkSbcM5cf1QugM5R37TLRKyJGgBEhXjLTB8uA2/root2/")
    assert r.status == 302
    assert r.header("Location") == (
        "/ipns/k2k4r8ol4m8kkcqz509c1rcjwunebj02gcnm5excpx842u736nja8ger/root2/"
    )


@case("path IPNS", "a record whose value has a sub-path")
def _(gw: Served) -> None:
    name = "k51qzi5uqu5djokp3m1keo36hoxtd6u3a1d2rg1camf6al7p3huy63dojlm57c"
    r = gw.get(f"/ipns/{name}/root3/root4/index.html")
    assert (r.status, r.body) == (200, b"hello\n")


CACHE_NAME = "k51qzi5uqu5dlxdsdu5fpuu7h69wu4ohp32iwm9pdt9nq3y5rpn3ln9j12zfhe"


@case("path IPNS", "a listing under a name")
def _(gw: Served) -> None:
    r = gw.get(f"/ipns/{CACHE_NAME}/root2/root3/")
    assert r.status == 200 and r.header("X-Ipfs-Path") == f"/ipns/{CACHE_NAME}/root2/root3/"
    roots = _path_cids(gw, CACHE, "root2", "root3")
    assert r.header("X-Ipfs-Roots") == ",".join(map(str, roots))
    assert "DirIndex-" in r.header("Etag")


@case("path IPNS", "a folder with index.html under a name")
def _(gw: Served) -> None:
    r = gw.get(f"/ipns/{CACHE_NAME}/root2/root3/root4/")
    assert r.status == 200 and r.body == gw.file(CACHE, "root2", "root3", "root4", "index.html")
    assert r.header("Etag") == f'"{gw.cid(CACHE, "root2", "root3", "root4")}"'
    assert r.header("Cache-Control").startswith("public, max-age=")
    assert "immutable" not in r.header("Cache-Control")  # a name can change


@case("path IPNS", "a file under a name, with its Etag")
def _(gw: Served) -> None:
    path = f"/ipns/{CACHE_NAME}/root2/root3/root4/index.html"
    cid = gw.cid(CACHE, "root2", "root3", "root4", "index.html")
    r = gw.get(path)
    assert r.status == 200 and r.header("Etag") == f'"{cid}"'
    assert gw.get(path, {"If-None-Match": f'"{cid}"'}).status == 304


@case("path IPNS", "a folder as a raw block under a name")
def _(gw: Served) -> None:
    r = gw.get(f"/ipns/{CACHE_NAME}/root2/root3?format=raw")
    assert (r.status, r.body) == (200, gw.data(CACHE, "root2", "root3"))


def _dag_under_a_name(kind: str) -> None:
    name = {
        "json": "k51qzi5uqu5dhjghbwdvbo6mi40htrq6e2z4pwgp15pgv3ho1azvidttzh8yy2",
        "cbor": "k51qzi5uqu5dghjous0agrwavl8vzl64xckoqzwqeqwudfr74kfd11zcyk3b7l",
    }[kind]
    fixture = f"dag-{kind}-traversal"
    label = f"DAG-{kind.upper()}"

    @case("path IPNS", f"{label} under a name: the same bytes as under /ipfs")
    def _(gw: Served) -> None:
        assert gw.get(f"/ipns/{name}").body == gw.get(f"/ipfs/{gw.roots[fixture]}").body

    @case("path IPNS", f"{label} under a name with format=: the same bytes as under /ipfs")
    def _(gw: Served) -> None:
        query = f"?format=dag-{kind}"
        r = gw.get(f"/ipns/{name}{query}")
        assert r.body == gw.get(f"/ipfs/{gw.roots[fixture]}{query}").body == gw.data(fixture)

    @case("path IPNS", f"{label} under a name: headers")
    def _(gw: Served) -> None:
        r = gw.get(f"/ipns/{name}", {"Accept": f"application/vnd.ipld.dag-{kind}"})
        assert r.header("Content-Type") == f"application/vnd.ipld.dag-{kind}"
        assert r.header("Etag") == f'"{gw.roots[fixture]}.dag-{kind}"'
        assert r.header("X-Ipfs-Path") and r.header("X-Ipfs-Roots")

    @case("path IPNS", f"{label} under a name: HTML preview")
    def _(gw: Served) -> None:
        r = gw.get(f"/ipns/{name}/", {"Accept": "text/html"})
        assert r.status == 200 and r.header("Content-Type").startswith("text/html")
        assert "DagIndex-" in r.header("Etag") and not r.header("Content-Disposition")
        assert b"</html>" in r.body


_dag_under_a_name("json")
_dag_under_a_name("cbor")


@pytest.mark.parametrize("group, name, check", CASES, ids=[f"{g}: {n}" for g, n, _ in CASES])
def test_case(gw: Served, group: str, name: str, check: Callable[[Served], None]) -> None:
    check(gw)


def groups() -> dict[str, int]:
    """Cases per group, for the README's table."""
    counts: dict[str, int] = {}
    for group, _, _ in CASES:
        counts[group] = counts.get(group, 0) + 1
    return counts


def test_readme_table_counts_these_cases():
    """The README's table (group, cases, passing) names every group with its count."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in groups():
            rows[cells[0]] = (int(cells[1]), int(cells[2]))
    assert rows == {group: (count, count) for group, count in groups().items()}
