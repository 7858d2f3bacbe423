"""Hostile input: data and requests made to mislead, crash or stall howto.

Each test builds its hostile input itself (weak hashes, odd ranges, lying CAR files,
deep DAGs, over-long strings) and checks the answer through the public interfaces: the
``howto`` command, the gateway over HTTP on 127.0.0.1, the file system and the readers.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from multiformats import CID

from howto import get_intake_catalog
from howto.blocks.repo import Repo
from howto.errors import HashPolicyError, IntegrityError
from howto.formats.car import CARError, read_car, write_car
from howto.formats.cids import check_cid, parse_cid, to_cid, verify_block, verify_raw
from howto.formats.dagpb import varint
from howto.fs import VerifiedIPFSFileSystem
from howto.gateway import serve
from howto.ipld.blocks import Blocks
from howto.ipld.codec import Link

HOWTO = [sys.executable, "-m", "howto.cli"]
RAW = 0x55


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*HOWTO, *map(str, args)], capture_output=True, timeout=300)


def fails(*args: str | Path) -> str:
    """The single stderr line of a command that must fail without a traceback."""
    result = run(*args)
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def fetch(address: str, headers: dict | None = None) -> tuple[int, object, bytes]:
    """(status, headers, body) of one GET, error statuses included."""
    request = urllib.request.Request(address, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def raw_cid(code: int, digest: bytes, codec: int = RAW) -> bytes:
    """A binary CIDv1 with any multihash, valid or not under the hash policy."""
    return b"\x01" + varint(codec) + varint(code) + varint(len(digest)) + digest


# --- hash policy ---------------------------------------------------------------------------

DATA = b"the block an attacker wants to replace\n"
WEAK = {
    "md5": raw_cid(0xD5, hashlib.md5(DATA).digest()),
    "sha1": raw_cid(0x11, hashlib.sha1(DATA).digest()),
    "blake2b-8": raw_cid(0xB201, hashlib.blake2b(DATA, digest_size=1).digest()),
    "sha2-256 cut to 16 bytes": raw_cid(0x12, hashlib.sha256(DATA).digest()[:16]),
    "blake3 (not computed here)": raw_cid(0x1E, bytes(32)),
    "identity of 129 bytes": raw_cid(0x00, b"x" * 129),
}
STRONG = {
    "sha2-512": raw_cid(0x13, hashlib.sha512(DATA).digest()),
    "sha3-256": raw_cid(0x16, hashlib.sha3_256(DATA).digest()),
    "blake2b-256": raw_cid(0xB220, hashlib.blake2b(DATA, digest_size=32).digest()),
    "blake2s-256": raw_cid(0xB260, hashlib.blake2s(DATA).digest()),
    "shake-256": raw_cid(0x19, hashlib.shake_256(DATA).digest(64)),
}


def test_a_one_byte_digest_no_longer_lets_a_substitute_through():
    """With one byte of blake2b, a different block with the same digest takes a few
    hundred tries to find; such a CID proves nothing and is refused, not verified."""
    cid = CID.decode(WEAK["blake2b-8"])
    target = hashlib.blake2b(DATA, digest_size=1).digest()
    substitute = next(
        candidate
        for i in range(100_000)
        if hashlib.blake2b(candidate := b"forged %d\n" % i, digest_size=1).digest() == target
    )
    with pytest.raises(HashPolicyError, match="blake2b-8"):
        verify_block(cid, substitute)
    with pytest.raises(HashPolicyError):
        verify_raw(WEAK["blake2b-8"], substitute)


@pytest.mark.parametrize("name", WEAK)
def test_weak_cids_are_refused_where_they_enter(name, tmp_path):
    raw = WEAK[name]
    text = str(CID.decode(raw).set(base="base32"))
    with pytest.raises(HashPolicyError):  # the one policy function
        check_cid(raw)
    with pytest.raises(ValueError):  # typed in (CLI, catalogs, fs): also a ValueError
        parse_cid(f"ipfs://{text}/a/path")
    with pytest.raises(IntegrityError):  # a block check (repository, gateway client)
        verify_block(CID.decode(raw), DATA)
    with pytest.raises(HashPolicyError):
        Repo(tmp_path / "repo").put(raw, DATA)
    with pytest.raises(HashPolicyError):  # the zarr-on-IPLD block layer
        Blocks({str(Link(raw)): DATA}).get(Link(raw))
    with pytest.raises(ValueError):
        get_intake_catalog(use_ipfs=text)
    with pytest.raises(ValueError):
        VerifiedIPFSFileSystem(gateway_addr="http://127.0.0.1:9", skip_instance_cache=True).cat(
            f"ipfs://{text}"
        )


@pytest.mark.parametrize("name", STRONG)
def test_secure_hashes_verify(name):
    raw = STRONG[name]
    parse_cid(str(CID.decode(raw)))
    assert verify_block(CID.decode(raw), DATA) == DATA
    verify_raw(raw, DATA)
    with pytest.raises(IntegrityError):
        verify_block(CID.decode(raw), DATA + b"!")


def test_small_identity_cids_carry_their_block():
    raw = raw_cid(0x00, b"x" * 128)
    assert verify_block(CID.decode(raw), b"x" * 128) == b"x" * 128
    with pytest.raises(IntegrityError):
        verify_block(CID.decode(raw), b"y" * 128)


def test_car_readers_refuse_weak_blocks_and_roots(tmp_path):
    weak = WEAK["md5"]
    strong = STRONG["sha2-512"]
    body = io.BytesIO()
    write_car(body, [strong], [(strong, DATA), (weak, DATA)])
    with pytest.raises(CARError, match="md5"):
        list(read_car(io.BytesIO(body.getvalue()))[1])
    body = io.BytesIO()
    write_car(body, [weak], [(strong, DATA)])
    with pytest.raises(CARError, match="md5"):
        read_car(io.BytesIO(body.getvalue()))
    path = tmp_path / "weak.car"
    body = io.BytesIO()
    write_car(body, [weak], [(weak, DATA)])
    path.write_bytes(body.getvalue())
    assert "md5" in fails("dag", "import", path)


def test_cli_and_gateway_refuse_weak_cids(tmp_path):
    for name in ("md5", "blake3 (not computed here)"):
        text = str(CID.decode(WEAK[name]).set(base="base32"))
        assert name.split()[0] in fails("cat", text)
        with serve(Repo(tmp_path / "repo")) as base:
            status, _, body = fetch(f"{base}/ipfs/{text}")
        assert status == 400
        assert name.split()[0].encode() in body


def test_over_long_cid_text_is_refused_in_linear_time():
    """Decoding base32/base58 text takes time growing with the square of its length: a
    400 kB string once took many seconds.  The length is checked before decoding."""
    for text in ("b" + "a" * 400_000, "z" + "a" * 400_000, "bafy" + "a/" * 200_000):
        start = time.perf_counter()
        with pytest.raises(ValueError, match="long"):
            parse_cid(text)
        assert time.perf_counter() - start < 0.05
    import intake  # noqa: F401  (imported first: the time measured is the CID check's)

    start = time.perf_counter()
    with pytest.raises(ValueError):
        get_intake_catalog(use_ipfs="b" + "a" * 400_000)
    assert time.perf_counter() - start < 0.5
    assert len(fails("cat", "b" + "a" * 100_000)) < 400  # and the message stays short


# --- ranges (RFC 9110, section 14) ---------------------------------------------------------

TEXT = b"0123456789abcdefghij"  # 20 bytes


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, dict[str, CID]]:
    """A gateway serving an empty file (as a raw leaf and as a dag-pb node) and 20 bytes."""
    from howto.unixfs.add import add

    base = tmp_path_factory.mktemp("ranges")
    repo = Repo(base / "repo")
    (base / "empty").write_bytes(b"")
    (base / "text").write_bytes(TEXT)
    cids = {
        "empty raw": add(base / "empty", repo=repo, cid_version=1, raw_leaves=True),
        "empty dag-pb": add(base / "empty", repo=repo),
        "text": add(base / "text", repo=repo, cid_version=1, raw_leaves=True),
    }
    with serve(repo) as url:
        yield url, cids


@pytest.mark.parametrize("kind", ["empty raw", "empty dag-pb"])
@pytest.mark.parametrize("spec", ["bytes=5-10", "bytes=0-", "bytes=0-0", "bytes=-5", "bytes=-0"])
def test_no_range_of_an_empty_file_is_satisfiable(files, kind, spec):
    url, cids = files
    status, headers, body = fetch(f"{url}/ipfs/{cids[kind]}", {"Range": spec})
    assert status == 416
    assert headers["Content-Range"] == "bytes */0"
    assert body == b""
    assert int(headers.get("Content-Length", "0")) == 0


@pytest.mark.parametrize(
    "spec",
    ["bytes=-0", "bytes=20-", "bytes=25-30", "bytes=7-3", "bytes=x-1", "bytes=-", "bytes=-1-2"],
)
def test_unsatisfiable_or_invalid_ranges_are_416(files, spec):
    url, cids = files
    status, headers, body = fetch(f"{url}/ipfs/{cids['text']}", {"Range": spec})
    assert status == 416
    assert headers["Content-Range"] == "bytes */20"
    assert body == b""


@pytest.mark.parametrize(
    "spec, start, stop",
    [
        ("bytes=19-", 19, 20),
        ("bytes=-1", 19, 20),
        ("bytes=-20", 0, 20),
        ("bytes=-99999999999999999999", 0, 20),
        ("bytes=3-3", 3, 4),
        ("bytes=5-99999", 5, 20),
        ("BYTES = 2-4", 2, 5),
    ],
)
def test_satisfiable_ranges_are_206(files, spec, start, stop):
    url, cids = files
    status, headers, body = fetch(f"{url}/ipfs/{cids['text']}", {"Range": spec})
    assert status == 206
    assert body == TEXT[start:stop]
    assert headers["Content-Range"] == f"bytes {start}-{stop - 1}/20"
    assert headers["Content-Length"] == str(stop - start)


@pytest.mark.parametrize("spec", ["items=0-4", "bytes", "bytes=" + ",".join(["0-0"] * 65)])
def test_ranges_the_gateway_may_ignore_give_the_whole_file(files, spec):
    url, cids = files
    status, headers, body = fetch(f"{url}/ipfs/{cids['text']}", {"Range": spec})
    assert (status, body, headers["Content-Length"]) == (200, TEXT, "20")


def test_several_ranges_are_one_multipart_reply(files):
    """RFC 9110, 14.6: each range that selects bytes becomes one part; the others drop."""
    url, cids = files
    status, headers, body = fetch(f"{url}/ipfs/{cids['text']}", {"Range": "bytes=0-1,5-6,90-"})
    assert status == 206
    kind, _, boundary = headers["Content-Type"].partition("; boundary=")
    assert kind == "multipart/byteranges"
    assert int(headers["Content-Length"]) == len(body)
    parts = body.split(f"--{boundary}".encode())
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    got = [part.strip(b"\r\n").split(b"\r\n\r\n") for part in parts[1:-1]]
    assert [data for _, data in got] == [TEXT[0:2], TEXT[5:7]]
    assert b"Content-Range: bytes 5-6/20" in got[1][0]


# --- honest dag import, CARv2 --------------------------------------------------------------


def car_bytes(roots: list, blocks: list) -> bytes:
    out = io.BytesIO()
    write_car(out, roots, blocks)
    return out.getvalue()


def carv2(v1: bytes, padding: int = 7, offset: int | None = None) -> bytes:
    """A CARv2 around ``v1``: pragma, header, padding, the CARv1, then an index stand-in."""
    import struct

    pragma = bytes.fromhex("0aa16776657273696f6e02")
    start = len(pragma) + 40 + padding
    header = struct.pack("<16sQQQ", bytes(16), start if offset is None else offset, len(v1), 0)
    return pragma + header + b"\0" * padding + v1 + b"index bytes, not read"


def a_block(text: bytes) -> tuple[bytes, bytes]:
    return raw_cid(0x12, hashlib.sha256(text).digest()), text


def test_dag_import_refuses_a_car_whose_root_it_does_not_hold(tmp_path, howto_repo):
    cid, data = a_block(b"a block\n")
    absent, _ = a_block(b"the root, absent\n")
    cases = {
        "absent root": (car_bytes([absent], [(cid, data)]), "neither in the CAR"),
        "no blocks": (car_bytes([cid], []), "no blocks"),
    }
    for name, (body, reason) in cases.items():
        path = tmp_path / f"{name}.car"
        path.write_bytes(body)
        err = fails("dag", "import", path)
        assert reason in err and str(path) in err, err
        assert not (howto_repo / "blocks").exists() or not any(
            p.is_file() for p in (howto_repo / "blocks").rglob("*")
        ), name  # nothing stored


def test_dag_import_accepts_a_root_already_in_the_repository(tmp_path, howto_repo):
    cid, data = a_block(b"the root\n")
    other = a_block(b"another block\n")
    Repo().put(cid, data)
    path = tmp_path / "more.car"
    path.write_bytes(car_bytes([cid], [other]))
    result = run("dag", "import", path)
    assert result.returncode == 0, result.stderr
    assert f"imported root {to_cid(cid)} ".encode() in result.stdout


def test_carv2_is_read_by_every_car_reader(tmp_path, howto_repo):
    from howto.retrieval.sources import CarBlocks

    cid, data = a_block(b"inside a CARv2\n")
    v1 = car_bytes([cid], [(cid, data), a_block(b"second\n")])
    body = carv2(v1)
    roots, blocks = read_car(io.BytesIO(body))
    assert roots == [CID.decode(cid)]
    assert [b for _, b in blocks] == [data, b"second\n"]
    path = tmp_path / "v2.car"
    path.write_bytes(body)
    assert CarBlocks([path]).get(CID.decode(cid)) == data
    result = run("dag", "import", path)
    assert result.returncode == 0, result.stderr
    assert Repo().get(cid) == data


def test_damaged_carv2_is_refused():
    cid, data = a_block(b"inside a CARv2\n")
    v1 = car_bytes([cid], [(cid, data)])
    with pytest.raises(CARError, match="offset"):
        read_car(io.BytesIO(carv2(v1, offset=20)))
    with pytest.raises(CARError, match="truncated"):
        read_car(io.BytesIO(carv2(v1)[:60]))
    with pytest.raises(CARError, match="truncated"):  # the data size cuts a block short
        list(read_car(io.BytesIO(carv2(v1)[: 51 + 7 + len(v1) - 3]))[1])
    tampered = carv2(v1.replace(b"inside", b"INSIDE"))
    with pytest.raises(CARError, match="does not match"):
        list(read_car(io.BytesIO(tampered))[1])


# --- deep DAGs -----------------------------------------------------------------------------

DEPTH = 3000  # far past Python's recursion limit


def store(txn, data: bytes, codec: int) -> CID:
    from howto.formats.cids import cid_bytes

    raw = cid_bytes(data, codec, 1)
    txn.put(raw, data)
    return to_cid(raw)


def file_node(child: CID, size: int) -> bytes:
    from howto.formats.dagpb import (
        PBLink,
        PBNode,
        UnixFSData,
        UnixFSType,
        encode_node,
        encode_unixfs,
    )

    meta = UnixFSData(UnixFSType.FILE, filesize=size, blocksizes=[size])
    return encode_node(PBNode([PBLink(bytes(child), "", size)], encode_unixfs(meta)))


def shard_node(links: list[tuple[str, CID]]) -> bytes:
    from howto.formats.dagpb import (
        PBLink,
        PBNode,
        UnixFSData,
        UnixFSType,
        encode_node,
        encode_unixfs,
    )

    meta = UnixFSData(UnixFSType.HAMT_SHARD, data=b"\xff" * 32, hash_type=0x22, fanout=256)
    return encode_node(PBNode([PBLink(bytes(c), n, 1) for n, c in links], encode_unixfs(meta)))


@pytest.fixture
def deep_file(howto_repo) -> CID:
    """A one-byte file under a chain of DEPTH single-child file nodes (valid UnixFS)."""
    with Repo().transaction() as txn:
        cid = store(txn, b"x", RAW)
        for _ in range(DEPTH):
            cid = store(txn, file_node(cid, 1), 0x70)
    return cid


def test_a_very_deep_file_is_read_without_recursion(deep_file):
    from howto.unixfs.resolver import Resolver

    assert Resolver(Repo()).cat(deep_file) == b"x"
    result = run("cat", deep_file)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"x", b"")
    with serve(Repo()) as url:
        status, _, body = fetch(f"{url}/ipfs/{deep_file}")
        assert (status, body) == (200, b"x")
        status, _, body = fetch(f"{url}/ipfs/{deep_file}?format=car&entity-bytes=0:0")
        assert status == 200
        assert len(list(read_car(io.BytesIO(body))[1])) == DEPTH + 1
        fs = VerifiedIPFSFileSystem(gateway_addr=url, skip_instance_cache=True)
        assert fs.cat(f"ipfs://{deep_file}") == b"x"


def test_hamt_shards_nested_past_the_name_hash_are_refused(howto_repo):
    """Eight levels use up the 64-bit name hash: a ninth is malformed, not a crash."""
    from howto.unixfs.hamt import shard_lookup_index

    name = "target.txt"
    with Repo().transaction() as txn:
        leaf = store(txn, b"found\n", RAW)
        shard = store(txn, shard_node([("00" + name, leaf)]), 0x70)
        for depth in reversed(range(8)):
            shard = store(
                txn, shard_node([(f"{shard_lookup_index(name, depth):02X}", shard)]), 0x70
            )
        root = store(txn, shard_node([("FF", shard)]), 0x70)  # and one more for listings
    assert "deeper" in fails("cat", f"{shard}/{name}")
    assert "deeper" in fails("ls", root)


def test_a_shard_link_to_a_file_is_refused(howto_repo):
    with Repo().transaction() as txn:
        leaf = store(txn, b"not a shard\n", RAW)
        root = store(txn, shard_node([("00", leaf)]), 0x70)
    assert "not one" in fails("ls", root)


def test_deeply_nested_dag_cbor_is_refused_in_one_line(howto_repo):
    import dag_cbor

    with Repo().transaction() as txn:
        leaf = store(txn, b"leaf\n", RAW)
        root = store(txn, b"\x81" * DEPTH + dag_cbor.encode(leaf), 0x71)  # [[[…[leaf]…]]]
    assert "too deeply" in fails("dag", "export", root)
    assert "too deeply" in fails("cat", f"{root}/0")


# --- one-line errors -----------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1", "eighty"])
def test_serve_refuses_a_bad_port_in_one_line(port):
    assert "port" in fails("serve", "--port", port)


def test_serve_on_a_port_in_use_fails_in_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert "in use" in fails("serve", "--port", str(taken.getsockname()[1]))


@pytest.mark.parametrize("code", [0x1B, 0x1E, 0x300000])  # keccak-256, blake3, unknown
def test_cat_of_an_unsupported_hash_fails_in_one_line(code):
    import base64

    text = "b" + base64.b32encode(raw_cid(code, bytes(32))).decode().lower().rstrip("=")
    fails("cat", text)


DROPPED = (http.client.HTTPException, ConnectionError, urllib.error.URLError)


def corrupt(repo_path: Path, data: bytes) -> None:
    """Alter, on disk, the stored block whose bytes are ``data``."""
    (stored,) = [p for p in repo_path.rglob("*") if p.is_file() and p.read_bytes() == data]
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


@pytest.fixture
def damaged(tmp_path, howto_repo) -> dict[str, CID]:
    """A small file whose only block is damaged, and a large one whose third leaf is."""
    from howto.unixfs.add import add

    big = bytes(range(256)) * 4096  # four 262144-byte leaves
    (tmp_path / "small").write_bytes(b"small file\n")
    (tmp_path / "big").write_bytes(big)
    cids = {
        "small": add(tmp_path / "small", cid_version=1, raw_leaves=True),
        "big": add(tmp_path / "big", cid_version=1, raw_leaves=True),
    }
    corrupt(howto_repo, b"small file\n")
    corrupt(howto_repo, big[2 * 262144 : 3 * 262144])
    return cids


def test_served_corrupt_blocks_give_502_naming_the_block_and_one_log_line(damaged):
    server = subprocess.Popen(
        [*HOWTO, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        url = re.search(r"http://[0-9.:]+", server.stdout.readline().decode()).group()
        status, _, body = fetch(f"{url}/ipfs/{damaged['small']}")
        assert status == 502
        assert body == f"block {damaged['small']} does not match its hash\n".encode()
        status, _, _ = fetch(f"{url}/ipfs/{damaged['small']}x")  # not a CID: 400
        assert status == 400
        with pytest.raises(DROPPED):  # the reply began: the connection is dropped early
            fetch(f"{url}/ipfs/{damaged['big']}")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    lines = err.decode().splitlines()
    assert "Traceback" not in err.decode()
    assert len(lines) == 3, lines
    assert " 502: block " in lines[0] and " 400: " in lines[1]
    assert " cut short: block " in lines[2] and "does not match" in lines[2]


def test_embedded_gateway_logs_failures_without_tracebacks(damaged, caplog):
    import logging

    with serve(Repo()) as url, caplog.at_level(logging.INFO, logger="howto.gateway"):
        assert fetch(f"{url}/ipfs/{damaged['small']}")[0] == 502
        with pytest.raises(DROPPED):
            fetch(f"{url}/ipfs/{damaged['big']}")
    records = [r for r in caplog.records if r.name.startswith("howto.gateway")]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)


def test_listing_links_are_percent_encoded(tmp_path):
    import html
    import urllib.parse

    from howto.unixfs.add import add

    names = ["a b.txt", "q?x=1", "h#1", "100%", "<b>&'\".txt", "ünï"]
    folder = tmp_path / "odd"
    folder.mkdir()
    for i, name in enumerate(names):
        (folder / name).write_bytes(b"entry %d\n" % i)
    repo = Repo(tmp_path / "repo")
    root = add(folder, repo=repo, cid_version=1, raw_leaves=True)
    with serve(repo) as url:
        status, _, page = fetch(f"{url}/ipfs/{root}/")
        assert status == 200
        every = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page.decode())]
        for href in every:  # also the breadcrumb and each entry's CID link (?filename=…)
            assert re.fullmatch(r"[A-Za-z0-9/%._~?=-]+", href), href
        hrefs = [h for h in every if h.startswith(f"/ipfs/{root}/")]  # the names
        assert len(hrefs) == len(names)
        for href in hrefs:
            assert re.fullmatch(r"[A-Za-z0-9/%._~-]+", href), href  # nothing left unencoded
            name = urllib.parse.unquote(href.rsplit("/", 1)[1])
            status, _, body = fetch(f"{url}{href}")
            assert (status, body) == (200, b"entry %d\n" % names.index(name))
        for name in names:
            assert html.escape(name).encode() in page
