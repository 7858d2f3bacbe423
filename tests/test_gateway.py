"""The embedded gateway over HTTP: path and trustless responses, and unmodified ipfsspec.

Everything runs on 127.0.0.1 against ``howto.gateway.serve``.  Expected CIDs and block
sets are worked out independently of the gateway: by adding sub-trees on their own and by
hashing file chunks directly.
"""

from __future__ import annotations

import hashlib
import io
import random
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import fsspec
import ipfsspec
import numpy as np
import pytest
import xarray as xr
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multiformats import CID

from howto.blocks.repo import Repo
from howto.errors import IntegrityError
from howto.formats.car import CARError, read_car
from howto.formats.cids import RAW, cid_bytes, to_cid
from howto.formats.dagpb import UnixFSType, decode_node, decode_unixfs
from howto.fs import VerifiedIPFSFileSystem
from howto.gateway import serve
from howto.names.ipns import RecordStore, create_record, name_of, name_text
from howto.unixfs.add import add

CHUNK = 262144
BIG_SIZE = 700_000  # three leaves: two full chunks and one of 175712 bytes
HELLO = b"hello, gateway\n"
NESTED = b"nested file\n"
SHARD_FILES = 1300  # long names: the directory passes kubo's 256 KiB limit and is sharded


def shard_name(i: int) -> str:
    return f"{i:04d}-" + "n" * 200 + ".txt"


def shard_content(i: int) -> bytes:
    return f"entry {i}\n".encode()


def add_tree(path: Path, repo: Repo) -> CID:
    return add(path, repo=repo, cid_version=1, raw_leaves=True, hidden=True)


class Site:
    """What the module's gateway serves, with independently computed expectations."""

    def __init__(self, base: Path) -> None:
        self.repo = Repo(base / "repo")
        self.big = random.Random(7).randbytes(BIG_SIZE)
        tree = base / "site"
        (tree / "sub").mkdir(parents=True)
        (tree / "hello.txt").write_bytes(HELLO)
        (tree / "big.bin").write_bytes(self.big)
        (tree / "sub" / "nested.txt").write_bytes(NESTED)
        ds = xr.Dataset(
            {"t": (("x", "y"), np.arange(2000.0).reshape(40, 50))},
            coords={"x": np.arange(40)},
        )
        ds.to_zarr(tree / "data.zarr", zarr_format=2, encoding={"t": {"chunks": (10, 25)}})
        self.dataset = ds
        self.root = add_tree(tree, self.repo)
        self.hello = add_tree(tree / "hello.txt", self.repo)
        self.big_cid = add_tree(tree / "big.bin", self.repo)
        self.sub = add_tree(tree / "sub", self.repo)
        self.nested = add_tree(tree / "sub" / "nested.txt", self.repo)
        self.leaves = [
            to_cid(cid_bytes(self.big[i : i + CHUNK], RAW, 1)) for i in range(0, BIG_SIZE, CHUNK)
        ]

        sharded = base / "sharded"
        (sharded / "names").mkdir(parents=True)
        for i in range(SHARD_FILES):
            (sharded / "names" / shard_name(i)).write_bytes(shard_content(i))
        self.sharded = add_tree(sharded, self.repo)
        self.names = add_tree(sharded / "names", self.repo)


def dag(repo: Repo, cid: CID, only_shards: bool = False) -> set[CID]:
    """Every CID under ``cid`` (or a HAMT's own nodes), read straight from the repository."""
    found = {cid}
    if cid.codec.name != "dag-pb":
        return found
    node = decode_node(repo.get(cid))
    for link in node.links:
        if only_shards and len(link.name) != 2:
            continue
        found |= dag(repo, to_cid(link.hash), only_shards)
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return Site(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="module")
def url(site) -> str:
    with serve(site.repo) as base:
        yield base


def fetch(address: str, method: str = "GET", headers: dict | None = None):
    """(status, headers, body) of one request, error statuses included."""
    request = urllib.request.Request(address, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def raw_get(base: str, target: str) -> bytes:
    """The status line for a request path sent verbatim (no client-side normalisation)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


def car_cids(body: bytes) -> tuple[list[CID], list[CID]]:
    """Roots and block CIDs of a CAR (read_car checks every block against its CID)."""
    roots, blocks = read_car(io.BytesIO(body))
    return roots, [cid for cid, _ in blocks]


# --- files -------------------------------------------------------------------------------


def test_single_block_file(url, site):
    status, headers, body = fetch(f"{url}/ipfs/{site.root}/hello.txt")
    assert status == 200
    assert body == HELLO
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["Content-Length"] == str(len(HELLO))
    assert headers["Accept-Ranges"] == "bytes"


def test_multi_block_file_by_path_and_by_cid(url, site):
    assert len(site.leaves) == 3
    for address in (f"{url}/ipfs/{site.root}/big.bin", f"{url}/ipfs/{site.big_cid}"):
        status, headers, body = fetch(address)
        assert status == 200
        assert body == site.big
        assert headers["Content-Type"] == "application/octet-stream"


def test_cidv0_and_other_bases_name_the_same_content(url, site):
    v0 = CID("base58btc", 0, "dag-pb", site.big_cid.digest)
    status, _, body = fetch(f"{url}/ipfs/{v0}")
    assert status == 200 and body == site.big
    status, _, body = fetch(f"{url}/ipfs/{site.hello.encode('base58btc')}")
    assert status == 200 and body == HELLO


# --- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, start, stop",
    [
        ("bytes=262100-262200", 262100, 262201),  # across the first leaf boundary
        ("bytes=0-0", 0, 1),
        ("bytes=524287-", 524287, BIG_SIZE),  # open-ended, starting in the last leaf
        ("bytes=-1000", BIG_SIZE - 1000, BIG_SIZE),  # suffix
        ("bytes=-9999999", 0, BIG_SIZE),  # suffix longer than the file
        ("bytes=699000-9999999", 699000, BIG_SIZE),  # end past the file
    ],
)
def test_range(url, site, spec, start, stop):
    status, headers, body = fetch(f"{url}/ipfs/{site.big_cid}", headers={"Range": spec})
    assert status == 206
    assert body == site.big[start:stop]
    assert headers["Content-Range"] == f"bytes {start}-{stop - 1}/{BIG_SIZE}"
    assert headers["Content-Length"] == str(stop - start)


@pytest.mark.parametrize("spec", [f"bytes={BIG_SIZE}-", f"bytes={BIG_SIZE + 5}-{BIG_SIZE + 9}"])
def test_unsatisfiable_range(url, site, spec):
    status, headers, body = fetch(f"{url}/ipfs/{site.big_cid}", headers={"Range": spec})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{BIG_SIZE}"
    assert body == b""


# --- headers -----------------------------------------------------------------------------


def test_head_has_headers_and_no_body(url, site):
    status, headers, body = fetch(f"{url}/ipfs/{site.root}/big.bin", method="HEAD")
    assert status == 200
    assert body == b""
    assert headers["Content-Length"] == str(BIG_SIZE)
    assert headers["Etag"] == f'"{site.big_cid}"'
    assert headers["X-Ipfs-Roots"] == f"{site.root},{site.big_cid}"
    status, headers, body = fetch(f"{url}/ipfs/{site.hello}?format=raw", method="HEAD")
    assert status == 200 and body == b""
    assert headers["Content-Length"] == str(len(HELLO))


def test_etag_and_if_none_match(url, site):
    address = f"{url}/ipfs/{site.root}/hello.txt"
    status, headers, _ = fetch(address)
    etag = headers["Etag"]
    assert status == 200 and etag == f'"{site.hello}"'
    status, headers, body = fetch(address, headers={"If-None-Match": etag})
    assert status == 304
    assert body == b""
    status, _, body = fetch(address, headers={"If-None-Match": f'"other", {etag}'})
    assert status == 304
    status, _, body = fetch(address, headers={"If-None-Match": '"something-else"'})
    assert status == 200 and body == HELLO
    # The raw block and the file are different representations: different Etags.
    _, raw_headers, _ = fetch(f"{address}?format=raw")
    assert raw_headers["Etag"] != etag


def test_cache_control_is_immutable(url, site):
    for suffix in ("/hello.txt", "/hello.txt?format=raw", "/hello.txt?format=car"):
        _, headers, _ = fetch(f"{url}/ipfs/{site.root}{suffix}")
        assert "immutable" in headers["Cache-Control"]
        assert "max-age=" in headers["Cache-Control"]
    # A listing is HTML that howto generates: it may change with howto, so it is kept
    # for a week rather than forever (path gateway spec, Cache-Control).
    _, headers, _ = fetch(f"{url}/ipfs/{site.root}/")
    assert headers["Cache-Control"] == "public, max-age=604800, stale-while-revalidate=2678400"


def test_x_ipfs_path_and_one_root_per_segment(url, site):
    _, headers, body = fetch(f"{url}/ipfs/{site.root}/sub/nested.txt")
    assert body == NESTED
    assert headers["X-Ipfs-Path"] == f"/ipfs/{site.root}/sub/nested.txt"
    assert headers["X-Ipfs-Roots"].split(",") == [str(site.root), str(site.sub), str(site.nested)]
    _, headers, _ = fetch(f"{url}/ipfs/{site.root}")
    assert headers["X-Ipfs-Roots"] == str(site.root)


# --- trustless responses -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["query", "accept"])
def test_raw_block_hashes_to_its_cid(url, site, how):
    for path, cid in [(f"{site.root}", site.root), (f"{site.root}/big.bin", site.big_cid)]:
        if how == "query":
            status, headers, body = fetch(f"{url}/ipfs/{path}?format=raw")
        else:
            accept = {"Accept": "application/vnd.ipld.raw"}
            status, headers, body = fetch(f"{url}/ipfs/{path}", headers=accept)
        assert status == 200
        assert headers["Content-Type"] == "application/vnd.ipld.raw"
        assert hashlib.sha256(body).digest() == cid.raw_digest
        assert body == site.repo.get(cid)
    # The root of a multi-block file is one dag-pb node, not the file's bytes.
    assert len(body) < 1000


def car(url: str, path: str, **params: str) -> tuple[list[CID], list[CID], object]:
    query = "&".join(f"{k.replace('_', '-')}={v}" for k, v in {"format": "car", **params}.items())
    status, headers, body = fetch(f"{url}/ipfs/{path}?{query}")
    assert status == 200, body
    roots, cids = car_cids(body)
    return roots, cids, headers


def test_car_content_type_and_roots(url, site):
    roots, cids, headers = car(url, f"{site.root}/big.bin", dag_scope="block")
    assert headers["Content-Type"].startswith("application/vnd.ipld.car")
    assert roots == [site.root]
    assert cids[0] == site.root  # depth-first from the requested root
    _, cids, _ = car(url, f"{site.root}/sub", dag_scope="block")
    assert len(cids) == len(set(cids))  # no duplicates


def test_car_with_accept_header(url, site):
    status, headers, body = fetch(
        f"{url}/ipfs/{site.big_cid}", headers={"Accept": "application/vnd.ipld.car"}
    )
    assert status == 200
    assert set(car_cids(body)[1]) == {site.big_cid, *site.leaves}


def test_dag_scope_block_is_path_and_target(url, site):
    _, cids, _ = car(url, f"{site.root}/big.bin", dag_scope="block")
    assert set(cids) == {site.root, site.big_cid}
    _, cids, _ = car(url, f"{site.root}/sub/nested.txt", dag_scope="block")
    assert set(cids) == {site.root, site.sub, site.nested}


def test_dag_scope_entity_of_a_file_is_all_its_blocks(url, site):
    _, cids, _ = car(url, f"{site.root}/big.bin", dag_scope="entity")
    assert set(cids) == {site.root, site.big_cid, *site.leaves}
    assert set(cids) == {site.root} | dag(site.repo, site.big_cid)


def test_dag_scope_entity_of_a_directory_is_its_node(url, site):
    _, cids, _ = car(url, f"{site.root}/sub", dag_scope="entity")
    assert set(cids) == {site.root, site.sub}


def test_dag_scope_all(url, site):
    _, cids, _ = car(url, f"{site.root}/sub", dag_scope="all")
    assert set(cids) == {site.root, site.sub, site.nested}
    _, everything, _ = car(url, str(site.root))  # dag-scope defaults to all
    assert set(everything) == dag(site.repo, site.root)
    assert site.leaves[2] in everything


@pytest.mark.parametrize(
    "spec, leaves",
    [
        ("300000:400000", [1]),  # inside the second leaf
        ("0:10", [0]),
        ("262143:262144", [0, 1]),  # one byte on each side of a boundary
        ("-10:*", [2]),  # the last ten bytes
        ("600000:-1", [2]),
        ("0:*", [0, 1, 2]),
    ],
)
def test_entity_bytes_sends_only_the_blocks_needed(url, site, spec, leaves):
    _, cids, _ = car(url, f"{site.root}/big.bin", entity_bytes=spec)
    assert set(cids) == {site.root, site.big_cid, *(site.leaves[i] for i in leaves)}


# --- HAMT-sharded directories ------------------------------------------------------------


def test_large_directory_is_a_multi_level_hamt(site):
    node = decode_node(site.repo.get(site.names))
    assert decode_unixfs(node.data).type == UnixFSType.HAMT_SHARD
    assert any(len(link.name) == 2 for link in node.links)  # sub-shards below the root


def test_hamt_listing(url, site):
    status, headers, body = fetch(f"{url}/ipfs/{site.sharded}/names")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert all(shard_name(i) in page for i in range(SHARD_FILES))


@pytest.mark.parametrize("i", [0, 17, 640, SHARD_FILES - 1])
def test_path_resolution_through_shards(url, site, i):
    name = shard_name(i)
    status, headers, body = fetch(f"{url}/ipfs/{site.sharded}/names/{name}")
    assert status == 200
    assert body == shard_content(i)
    expected = to_cid(cid_bytes(shard_content(i), RAW, 1))
    assert headers["X-Ipfs-Roots"].split(",") == [str(site.sharded), str(site.names), str(expected)]
    # The proof for the path carries the shard nodes walked through on the way.
    _, cids, _ = car(url, f"{site.sharded}/names/{name}", dag_scope="block")
    assert {site.sharded, site.names, expected} < set(cids)
    assert set(cids) - {site.sharded, expected} <= dag(site.repo, site.names, only_shards=True)


def test_hamt_entity_is_its_shard_nodes(url, site):
    _, cids, _ = car(url, f"{site.sharded}/names", dag_scope="entity")
    shards = dag(site.repo, site.names, only_shards=True)
    assert len(shards) > 1
    assert set(cids) == {site.sharded} | shards


def test_missing_name_in_hamt_is_404(url, site):
    status, _, _ = fetch(f"{url}/ipfs/{site.sharded}/names/absent.txt")
    assert status == 404


# --- errors and confinement ----------------------------------------------------------------


def test_absent_content_is_404(url, site):
    absent = to_cid(cid_bytes(b"never added", RAW, 1))
    for suffix in ("", "?format=raw", "?format=car"):
        status, _, _ = fetch(f"{url}/ipfs/{absent}{suffix}")
        assert status == 404
    status, _, _ = fetch(f"{url}/ipfs/{site.root}/no-such-file")
    assert status == 404
    status, _, _ = fetch(f"{url}/ipfs/{site.root}/hello.txt/deeper")
    assert status == 404


def test_damaged_block_is_sent_as_stored_only_to_a_verifying_reader(tmp_path):
    """Trustless replies (raw, CAR) leave the hashing to their reader, as kubo does; a file
    served as plain bytes is checked here, since its reader cannot check it."""
    repo = Repo(tmp_path / "repo")
    (tmp_path / "note.txt").write_bytes(HELLO)
    cid = add_tree(tmp_path / "note.txt", repo)
    (stored,) = [p for p in (repo.path / "blocks").rglob("*") if p.is_file()]
    stored.write_bytes(b"HELLO" + HELLO[5:])  # damaged on disk
    with serve(repo) as base:
        status, _, body = fetch(f"{base}/ipfs/{cid}?format=raw")
        assert (status, body) == (200, b"HELLO" + HELLO[5:])
        status, _, body = fetch(f"{base}/ipfs/{cid}?format=car")
        assert status == 200 and body.endswith(b"HELLO" + HELLO[5:])
        with pytest.raises(CARError):
            list(read_car(io.BytesIO(body))[1])
        assert fetch(f"{base}/ipfs/{cid}")[0] == 502  # names the block: see test_hostile
        with pytest.raises(IntegrityError):
            VerifiedIPFSFileSystem(gateway_addr=base, skip_instance_cache=True).cat(str(cid))


@pytest.mark.parametrize("head", ["not-a-cid", "bafy", "Qm123", "b" + "a" * 58])
def test_malformed_cid_is_400(url, head):
    status, _, _ = fetch(f"{url}/ipfs/{head}")
    assert status == 400


def test_relative_segments_are_rejected(url, site):
    assert b" 400 " in raw_get(url, f"/ipfs/{site.root}/sub/../hello.txt")
    assert b" 400 " in raw_get(url, f"/ipfs/{site.root}/./hello.txt")
    assert b" 400 " in raw_get(url, f"/ipfs/{site.root}/sub/%2e%2e/hello.txt")
    assert b" 400 " in raw_get(url, "/ipfs/../../etc/passwd")


def test_only_cids_are_served(url, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"a file on this machine, never added\n")
    assert b" 404 " in raw_get(url, "/etc/passwd")
    assert b" 404 " in raw_get(url, str(secret))
    status, _, _ = fetch(f"{url}/ipfs/{add(secret, only_hash=True, cid_version=1)}")
    assert status == 404  # known CID, but the bytes are not in what is served


@pytest.mark.parametrize(
    "query", ["format=zip", "format=car&dag-scope=most", "format=car&entity-bytes=a:b"]
)
def test_unknown_parameters_are_400(url, site, query):
    status, _, _ = fetch(f"{url}/ipfs/{site.big_cid}?{query}")
    assert status == 400


# --- unmodified ipfsspec -----------------------------------------------------------------


@pytest.fixture
def plain_ipfsspec():
    """``ipfs://`` handled by ipfsspec itself, even if howto's enable() ran in this process."""
    before = fsspec.get_filesystem_class("ipfs")
    fsspec.register_implementation("ipfs", ipfsspec.AsyncIPFSFileSystem, clobber=True)
    yield
    fsspec.register_implementation("ipfs", before, clobber=True)


def test_ipfsspec_ls_info_cat_open(url, site):
    fs = ipfsspec.AsyncIPFSFileSystem(gateway_addr=url)
    root = str(site.root)
    assert sorted(fs.ls(root, detail=False)) == sorted(
        f"{root}/{n}" for n in ("big.bin", "data.zarr", "hello.txt", "sub")
    )
    entries = {e["name"]: e for e in fs.ls(root)}
    assert entries[f"{root}/big.bin"]["size"] == BIG_SIZE
    assert entries[f"{root}/sub"]["type"] == "directory"
    info = fs.info(f"{root}/big.bin")
    assert info["type"] == "file" and info["size"] == BIG_SIZE
    assert info["CID"] == str(site.big_cid)
    assert fs.info(f"{root}/sub/nested.txt")["CID"] == str(site.nested)
    assert fs.cat(f"{root}/big.bin") == site.big
    assert fs.cat_file(f"{root}/big.bin", start=262000, end=263000) == site.big[262000:263000]
    with fs.open(f"{root}/sub/nested.txt") as f:
        assert f.read() == NESTED
    with pytest.raises(FileNotFoundError):
        fs.info(f"{root}/missing")


def test_ipfsspec_open_zarr(url, site, plain_ipfsspec):
    assert type(fsspec.filesystem("ipfs", gateway_addr=url)) is ipfsspec.AsyncIPFSFileSystem
    got = xr.open_zarr(f"ipfs://{site.root}/data.zarr", storage_options={"gateway_addr": url})
    xr.testing.assert_identical(got.load(), site.dataset)


# --- HEAD, for every kind of reply -------------------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [
        "/",  # a listing
        "/hello.txt",
        "/big.bin?format=raw",
        "/big.bin?format=car",
        "?format=tar",
        "/sub/nested.txt?format=tar",
        "/big.bin?filename=a.bin&download=true",
    ],
)
def test_head_answers_like_get_without_a_body(url, site, suffix):
    """HEAD gives the status and headers GET would, and no body (path gateway spec)."""
    address = f"{url}/ipfs/{site.root}{suffix}"
    got = fetch(address)
    status, headers, body = fetch(address, method="HEAD")
    assert (status, body) == (got[0], b"") and status == 200
    for name in ("Content-Type", "Etag", "X-Ipfs-Roots", "Cache-Control", "Content-Disposition"):
        assert headers.get(name) == got[1].get(name), name


def test_tar_of_a_folder_holds_its_files(url, site):
    import tarfile

    status, headers, body = fetch(f"{url}/ipfs/{site.root}/sub?format=tar")
    assert status == 200 and headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}
    assert files == {f"{site.sub}/nested.txt": NESTED}


def test_ipns_chains_and_loops_at_the_gateway(tmp_path):
    """An /ipns/ name whose record points at another name is served from the end of the
    chain (cached no longer than its shortest TTL); names that point at each other are a
    one-line 502 naming the loop."""
    repo = Repo(tmp_path / "repo")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.txt").write_bytes(HELLO)
    root = add_tree(tmp_path / "site", repo)
    records = RecordStore(repo.path)
    first, second = Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256K1())
    loop_a, loop_b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()

    def put(key, value: str, minutes: int = 60) -> None:
        records.put(create_record(key, value, 0, ttl=timedelta(minutes=minutes)), name_of(key))

    put(first, f"/ipns/{name_text(name_of(second))}", 60)
    put(second, f"/ipfs/{root}", 7)
    put(loop_a, f"/ipns/{name_text(name_of(loop_b))}")
    put(loop_b, f"/ipns/{name_text(name_of(loop_a))}")
    with serve(repo) as base:
        status, headers, body = fetch(f"{base}/ipns/{name_text(name_of(first))}/a.txt")
        assert (status, body) == (200, HELLO)
        assert "max-age=420" in headers["Cache-Control"]
        status, _, body = fetch(f"{base}/ipns/{name_text(name_of(loop_a))}/a.txt")
        assert status == 502 and body.count(b"\n") == 1 and b"loop" in body
        assert name_text(name_of(loop_b)).encode() in body
