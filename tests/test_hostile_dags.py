"""Hostile DAGs: blocks that hash right but lie, made by hand with ``howto.formats.dagpb``.

Each test builds its DAG itself (duplicate names, symlinks, sizes that do not add up,
identity CIDs, names with terminal escapes) in the test's own repository, and checks the
answer through the ``howto`` command, the gateway over HTTP on 127.0.0.1, the file system
and the readers: nothing is written outside the output folder, no declared size is
believed that the bytes do not bear out, and no error repeats a hostile input whole.
"""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import sys
import tarfile
import urllib.parse
from pathlib import Path

import pytest
from multiformats import CID

from howto.blocks.repo import Repo
from howto.errors import IntegrityError
from howto.formats.car import read_car_raw
from howto.formats.cids import cid_bytes, multihash_of, to_cid
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
from howto.gateway.server import serve
from howto.unixfs.hamt import shard_lookup_index
from howto.unixfs.resolver import Resolver

HOWTO = [sys.executable, "-m", "howto.cli"]
RAW, DAG_PB = 0x55, 0x70


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HOWTO, *map(str, args)], capture_output=True, timeout=300, cwd=cwd)


def fails(*args: str | Path, cwd: Path | None = None) -> str:
    """The single stderr line of a command that must fail without a traceback."""
    quiet = ("-q",) if args[0] == "get" else ()  # no progress bar on stderr
    result = run(*args, *quiet, cwd=cwd)
    err = result.stderr.decode()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in err and "MemoryError" not in err, err
    assert len(err.splitlines()) == 1, err
    return err.strip()


# --- building blocks by hand ---------------------------------------------------------------


def put(data: bytes, codec: int = RAW) -> CID:
    raw = cid_bytes(data, codec, 1)
    Repo().put(raw, data)
    return to_cid(raw)


def node(links: list[tuple[str | None, CID | bytes, int]], meta: UnixFSData) -> CID:
    pb = PBNode([PBLink(bytes(c), n, size) for n, c, size in links], encode_unixfs(meta))
    return put(encode_node(pb), DAG_PB)


def directory(*entries: tuple[str | None, CID]) -> CID:
    return node([(n, c, 1) for n, c in entries], UnixFSData(UnixFSType.DIRECTORY))


def hamt(*entries: tuple[str, CID]) -> CID:
    """A one-level HAMT shard holding ``entries`` (repeated names land in one slot)."""
    links = [(f"{shard_lookup_index(n, 0):02X}{n}", c, 1) for n, c in entries]
    bitfield = bytes(32)  # not consulted when reading; kubo writes the used slots here
    meta = UnixFSData(UnixFSType.HAMT_SHARD, data=bitfield, hash_type=0x22, fanout=256)
    return node(links, meta)


def symlink(target: str) -> CID:
    return node([], UnixFSData(UnixFSType.SYMLINK, data=target.encode()))


def file_node(
    children: list[tuple[CID, int]], filesize: int | None = None, data: bytes | None = None
) -> CID:
    """A UnixFS file over ``children`` (CID, size it claims for that child)."""
    sizes = [size for _, size in children]
    if filesize is None:
        filesize = len(data or b"") + sum(sizes)
    meta = UnixFSData(UnixFSType.FILE, data=data, filesize=filesize, blocksizes=sizes)
    return node([("", c, size) for c, size in children], meta)


def untouched(outside: Path) -> None:
    assert outside.read_bytes() == b"not yours\n"


# --- 1. nothing written outside the output folder ------------------------------------------


@pytest.fixture
def outside(tmp_path) -> Path:
    """A file the DAG must not reach, and an empty folder beside it."""
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "elsewhere" / "victim.txt"
    path.write_bytes(b"not yours\n")
    return path


@pytest.mark.parametrize("shape", ["directory", "hamt"])
@pytest.mark.parametrize("order", ["file first", "symlink first"])
def test_get_refuses_a_file_and_a_symlink_of_one_name(tmp_path, outside, shape, order):
    payload = put(b"written through the link\n")
    link = symlink(str(outside))
    pair = [("a", payload), ("a", link)]
    root = (directory if shape == "directory" else hamt)(
        *(pair if order == "file first" else pair[::-1])
    )
    work = tmp_path / "work"
    work.mkdir()
    err = fails("get", root, "-o", "out", "--offline", cwd=work)
    assert "two entries named 'a'" in err and str(root) in err, err
    untouched(outside)
    assert os.listdir(work) == []  # neither the output nor a partial folder is left


def test_get_does_not_follow_a_fresh_link_to_a_missing_file(tmp_path):
    """The symlink points at a file that does not exist yet: writing through it would
    create that file outside."""
    target = tmp_path / "created_outside.txt"
    root = directory(("a", put(b"bytes\n")), ("a", symlink(str(target))))
    fails("get", root, "-o", tmp_path / "out", "--offline")
    assert not target.exists() and not target.is_symlink()


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../escape", "a\0b", None])
def test_get_refuses_unsafe_entry_names(tmp_path, name):
    root = directory((name, put(b"x\n")))
    err = fails("get", root, "-o", tmp_path / "out", "--offline")
    assert "unsafe entry name" in err and str(root) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


def test_get_still_saves_a_tree_with_symlinks(tmp_path, outside):
    root = directory(("link", symlink(str(outside))), ("sub", directory(("f", put(b"f\n")))))
    result = run("get", root, "-o", tmp_path / "out", "--offline", "-q")
    assert result.returncode == 0, result.stderr
    assert os.readlink(tmp_path / "out" / "link") == str(outside)
    assert (tmp_path / "out" / "sub" / "f").read_bytes() == b"f\n"
    untouched(outside)


def get(url: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """Status and body of one GET, read in pieces (a declared length may be huge); the
    status is negated when the server closed the connection before the body was whole."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = b""
        try:
            while piece := response.read(1 << 16):
                body += piece
        except http.client.IncompleteRead as cut:
            return -response.status, body + cut.partial
        declared = response.headers.get("Content-Length")
        if declared is not None and len(body) != int(declared):
            return -response.status, body
        return response.status, body
    finally:
        conn.close()


def tar_of(url: str, root: CID) -> tuple[int, bytes]:
    """Status and body (as much as came) of ``?format=tar``."""
    return get(url, f"/ipfs/{root}?format=tar")


def extract_everywhere(body: bytes, into: Path) -> None:
    """Extract ``body`` with tarfile (data filter and the legacy default) and GNU tar,
    ignoring their errors: what counts is what they wrote."""
    for how in ("data", "fully_trusted"):
        folder = into / how
        folder.mkdir(parents=True)
        try:
            with tarfile.open(fileobj=io.BytesIO(body)) as archive:
                archive.extractall(folder, filter=how)
        except (tarfile.TarError, OSError):
            pass
    folder = into / "gnu"
    folder.mkdir()
    subprocess.run(["tar", "-xf", "-", "-C", str(folder)], input=body, capture_output=True)


@pytest.mark.parametrize("case", ["link to a folder, then link/x", "link a, then file a"])
def test_tar_refuses_members_below_or_over_a_symlink(tmp_path, outside, case):
    if case.startswith("link to a folder"):
        members = [("link", symlink(str(outside.parent))), ("link/x", put(b"escaped\n"))]
        escaped = outside.parent / "x"
    else:
        members = [("a", symlink(str(outside))), ("a", put(b"escaped\n"))]
        escaped = outside
    root = directory(*members)
    with serve(Repo()) as url:
        status, body = tar_of(url, root)
    assert status == 400, body
    assert b"escaped" not in body
    extract_everywhere(body, tmp_path / "x")
    untouched(outside)
    assert not (escaped.parent / "x").exists() or escaped == outside


def test_tar_keeps_a_symlink_that_nothing_goes_through(tmp_path, outside):
    root = directory(("link", symlink(str(outside))), ("f", put(b"f\n")))
    with serve(Repo()) as url:
        status, body = tar_of(url, root)
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert {m.name: m.issym() for m in archive.getmembers()} == {
            str(root): False,
            f"{root}/link": True,
            f"{root}/f": False,
        }


def test_a_file_declaring_fewer_bytes_cannot_smuggle_tar_headers(tmp_path):
    """The leaf is a tar header for ``../outside_tar.txt`` and an absolute path; the file
    node says it holds one byte, so an archive believing it would read the rest as
    members of its own."""
    smuggled = io.BytesIO()
    with tarfile.open(fileobj=smuggled, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in ("../outside_tar.txt", str(tmp_path / "absolute_tar.txt")):
            info = tarfile.TarInfo(name)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"pwn\n"))
    leaf = b"\0" * 511 + b"\0" + smuggled.getvalue()[:-1024]  # one byte, padding, headers
    lying = file_node([(put(leaf), 1)])
    root = directory(("f", lying))
    with serve(Repo()) as url:
        status, body = tar_of(url, root)
    assert status != 200  # an error, or a reply cut short
    assert b"outside_tar" not in body and b"absolute_tar" not in body
    work = tmp_path / "deep" / "er"
    extract_everywhere(body, work)
    for where in (tmp_path, tmp_path / "deep", work):
        assert not (where / "outside_tar.txt").exists()
    assert not (tmp_path / "absolute_tar.txt").exists()


# --- 2. sizes that lie -----------------------------------------------------------------------


def test_a_tiny_node_declaring_an_exabyte_gives_one_line(tmp_path):
    """14 bytes of data, ``filesize`` 2**60: nothing may allocate from that number."""
    huge = node([], UnixFSData(UnixFSType.FILE, data=b"fourteen bytes", filesize=2**60))
    for command in (("cat", huge), ("get", huge, "-o", tmp_path / "out")):
        err = fails(*command, "--offline")
        assert str(huge) in err and "declares" in err, err
    assert not (tmp_path / "out").exists()
    fs = VerifiedIPFSFileSystem(offline=True, skip_instance_cache=True)
    with pytest.raises(IntegrityError, match=str(huge)):
        fs.cat_file(f"ipfs://{huge}")
    with serve(Repo()) as url:
        status, body = tar_of(url, directory(("f", huge)))
        assert status == 502 and str(huge).encode() in body  # refused before any header
        status, body = get(url, f"/ipfs/{huge}")
        assert status == 502 and str(huge).encode() in body


def test_consistent_but_false_sizes_fail_while_reading(tmp_path):
    """The node's sizes add up (2**60 in one child) but the child holds 14 bytes."""
    huge = file_node([(put(b"fourteen bytes"), 2**60)])
    err = fails("cat", huge, "--offline")
    assert str(huge) in err and "holds 14" in err, err
    fs = VerifiedIPFSFileSystem(offline=True, skip_instance_cache=True)
    with pytest.raises(IntegrityError, match=str(huge)):
        fs.cat_file(f"ipfs://{huge}")
    with serve(Repo()) as url:  # too large to look at first: the reply starts, then stops
        status, body = get(url, f"/ipfs/{huge}")
        assert status == -200 and len(body) < 2**20  # closed, not left open


@pytest.mark.parametrize(
    "claims", [(10, [10]), (10, [15]), (15, [10])], ids=["leaf", "blocksizes", "filesize"]
)
def test_a_file_declaring_ten_bytes_never_gives_fifteen(claims):
    filesize, sizes = claims
    lying = file_node([(put(b"fifteen bytes!\n"), sizes[0])], filesize=filesize)
    with pytest.raises(IntegrityError, match=str(lying)):
        Resolver(Repo()).cat(lying)
    err = fails("cat", lying, "--offline")
    assert str(lying) in err
    with serve(Repo()) as url:
        status, body = tar_of(url, lying)
        assert status != 200 and b"fifteen" not in body


def test_range_reads_agree_with_the_full_read():
    """A file of own data, a nested node and raw leaves: every range, through the
    resolver, the file system and the gateway, is the same slice of the whole."""
    inner = file_node([(put(b"0123456789"), 10), (put(b"abcde"), 5)], data=b"INNER")
    root = file_node([(put(b"first leaf|"), 11), (inner, 20)], data=b"ROOT:")
    whole = b"ROOT:first leaf|INNER0123456789abcde"
    assert Resolver(Repo()).cat(root) == whole
    fs = VerifiedIPFSFileSystem(offline=True, skip_instance_cache=True)
    spans = [(s, e) for s in range(0, len(whole) + 2, 3) for e in range(s, len(whole) + 3, 4)]
    for start, end in spans:
        assert b"".join(Resolver(Repo()).read(root, start, end - start)) == whole[start:end]
        assert fs.cat_file(f"ipfs://{root}", start, end) == whole[start:end]
    with serve(Repo()) as url:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        for start, end in [(0, 4), (5, 20), (14, 30), (30, len(whole) - 1)]:
            conn.request("GET", f"/ipfs/{root}", headers={"Range": f"bytes={start}-{end}"})
            response = conn.getresponse()
            assert (response.status, response.read()) == (206, whole[start : end + 1])
        conn.close()


def test_a_range_over_a_lying_leaf_fails_like_the_full_read():
    """The node says its first leaf holds 5 bytes; it holds 10.  A full read refuses;
    so does any range that reads that leaf, instead of giving other bytes than the
    same offsets of the full read."""
    root = file_node([(put(b"AAAAAAAAAA"), 5), (put(b"0123456789"), 10)])
    with pytest.raises(IntegrityError, match=str(root)):
        Resolver(Repo()).cat(root)
    fs = VerifiedIPFSFileSystem(offline=True, skip_instance_cache=True)
    for start, end in [(0, 15), (3, 8), (4, 6)]:
        with pytest.raises(IntegrityError, match=str(root)):
            fs.cat_file(f"ipfs://{root}", start, end)
    with serve(Repo()) as url:  # small: looked at before the headers (its type), so a 502
        for spec in ("bytes=0-14", "bytes=3-7"):
            status, body = get(url, f"/ipfs/{root}", {"Range": spec})
            assert status == 502 and str(root).encode() in body


# --- 3. identity CIDs ------------------------------------------------------------------------


def is_identity(raw: bytes) -> bool:
    return raw[0] == 1 and multihash_of(raw)[0] == 0


def identity(data: bytes, codec: int = RAW) -> CID:
    return to_cid(b"\x01" + varint(codec) + b"\x00" + varint(len(data)) + data)


def test_identity_blocks_are_inline_and_never_in_cars(tmp_path):
    small = identity(b"carried in the CID\n")
    inner = identity(
        encode_node(
            PBNode(
                [PBLink(bytes(small), "deep", 19)], encode_unixfs(UnixFSData(UnixFSType.DIRECTORY))
            )
        ),
        DAG_PB,
    )
    root = directory(("id.txt", small), ("inline-dir", inner), ("plain", put(b"plain\n")))
    result = run("cat", f"{root}/inline-dir/deep", "--offline")
    assert (result.returncode, result.stdout) == (0, b"carried in the CID\n"), result.stderr
    export = run("dag", "export", root, "--offline")
    assert export.returncode == 0, export.stderr
    roots, blocks = read_car_raw(io.BytesIO(export.stdout))
    held = [raw for raw, _ in blocks]
    assert len(held) == 2 and not any(is_identity(raw) for raw in held)
    with serve(Repo()) as url:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        for query in ("format=car", "format=car&dag-scope=block", "format=car&dag-scope=entity"):
            for path in ("", "/id.txt", "/inline-dir/deep"):
                conn.request("GET", f"/ipfs/{root}{path}?{query}")
                response = conn.getresponse()
                assert response.status == 200
                _, blocks = read_car_raw(io.BytesIO(response.read()))
                assert not any(is_identity(raw) for raw, _ in blocks), (path, query)
        conn.close()
    # an empty repository and the exported CAR: what is inline needs no block
    other = tmp_path / "other"
    (tmp_path / "x.car").write_bytes(export.stdout)
    env = {**os.environ, "HOWTO_REPO": str(other)}
    imported = subprocess.run(
        [*HOWTO, "dag", "import", tmp_path / "x.car"], env=env, capture_output=True
    )
    assert imported.returncode == 0, imported.stderr
    again = subprocess.run(
        [*HOWTO, "cat", f"{root}/id.txt", "--offline"], env=env, capture_output=True
    )
    assert again.stdout == b"carried in the CID\n", again.stderr


# --- 4. what errors and listings repeat ------------------------------------------------------


def test_a_huge_identity_cid_is_not_echoed(tmp_path):
    """A 256 KiB identity CID (over the 128-byte limit) as a link and in a CAR."""
    from howto.formats.car import encode_header

    huge = b"\x01\x55\x00" + varint(256 * 1024) + b"x" * (256 * 1024)
    root = node([("big", huge, 1)], UnixFSData(UnixFSType.DIRECTORY))
    for command in (("cat", f"{root}/big"), ("ls", root), ("get", root, "-o", tmp_path / "o")):
        err = fails(*command, "--offline")
        assert len(err) < 600 and "identity CID of 262144 bytes" in err, err[:300]
    car = tmp_path / "huge.car"
    car.write_bytes(encode_header([root]) + varint(len(huge) + 3) + huge + b"abc")
    err = fails("dag", "import", car)
    assert len(err) < 600 and "262144" in err, err[:300]
    err = fails("serve", "--car", car, "--port", "0")  # refused before it serves
    assert len(err) < 600 and "262144" in err, err[:300]


def test_a_car_naming_20000_roots_is_imported_and_each_root_said_once(tmp_path):
    """The CARv1 spec sets no limit on roots, and kubo imports such a CAR; it must not
    take time out of proportion (it took 14 s here, mostly making CID objects)."""
    from howto.formats.car import encode_header, encode_section

    blocks = [b"root %d\n" % i for i in range(20_000)]
    raws = [cid_bytes(b, RAW, 1) for b in blocks]
    car = tmp_path / "roots.car"
    with open(car, "wb") as f:
        f.write(encode_header([CID.decode(r) for r in raws]))
        for raw, data in zip(raws, blocks, strict=True):
            f.write(encode_section(raw, data))
    result = run("dag", "import", car)
    assert result.returncode == 0, result.stderr[-300:]
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 20_000 == len(set(lines))
    assert lines[0] == f"imported root {to_cid(raws[0])} (DAG complete)"


def test_a_long_entity_bytes_is_not_echoed():
    root = put(b"some bytes\n")
    with serve(Repo()) as url:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", f"/ipfs/{root}?format=car&entity-bytes={'9' * 5000}:*")
        response = conn.getresponse()
        body = response.read()
        conn.close()
    assert response.status == 400 and len(body) < 400, body[:300]


EVIL = "evil\x1b[2J\x1b]0;title\x07\nforged line\u202e"


def test_control_characters_in_names_are_escaped(tmp_path):
    root = directory((EVIL, put(b"x\n")), ("fine", put(b"y\n")))
    result = run("ls", root, "--offline")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert len(out.splitlines()) == 2
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "evil\\x1b[2J" in out and "\\nforged line\\u202e" in out
    # an error that names the entry escapes it too
    twice = directory((EVIL, put(b"x\n")), (EVIL, put(b"y\n")))
    err = fails("get", twice, "-o", tmp_path / "out", "--offline")
    assert "\x1b" not in err and "evil\\x1b" in err


def test_name_resolve_escapes_the_value(howto_repo):
    from howto.names.ipns import KeyStore, RecordStore, create_record, name_text

    keys = KeyStore()
    name = keys.generate("evil")
    value = f"/ipfs/{put(b'target')}/{EVIL}"
    RecordStore().put(create_record(keys.load("evil"), value, 1), name)
    result = run("name", "resolve", name_text(name), "--offline")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in out and "\u202e" not in out and len(out.splitlines()) == 1
    assert out.endswith("/evil\\x1b[2J\\x1b]0;title\\x07\\nforged line\\u202e\n"), out


# --- 5. malformed nodes ----------------------------------------------------------------------


def test_a_hamt_link_without_a_name_is_one_line_and_not_a_500(tmp_path):
    meta = UnixFSData(UnixFSType.HAMT_SHARD, data=bytes(32), hash_type=0x22, fanout=256)
    root = node([(None, put(b"x\n"), 1)], meta)
    for command in (("ls", root), ("get", root, "-o", tmp_path / "o"), ("cat", f"{root}/x")):
        assert "without a proper name" in fails(*command, "--offline")
    with serve(Repo()) as url:
        for path in ("/", "/x", "?format=tar"):
            parts = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            conn.request("GET", f"/ipfs/{root}{path}")
            response = conn.getresponse()
            assert response.status in range(400, 500) or response.status == 502, path
            conn.close()


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"fanout": 0}, "has fanout 0x0, and only 256 is read"),
        ({"fanout": 2**40}, "has fanout 0x10000000000, and only 256 is read"),
        ({"data": b""}, "has an empty bitfield"),
        ({"hash_type": 0x12}, "uses hash function 0x12, not murmur3-x64-64"),
    ],
)
def test_hamt_parameters_howto_cannot_read_are_refused_in_one_line(tmp_path, fields, said):
    meta = {"data": bytes(32), "hash_type": 0x22, "fanout": 256, **fields}
    name = "x"
    links = [(f"{shard_lookup_index(name, 0):02X}{name}", put(b"x\n"), 1)]
    root = node(links, UnixFSData(UnixFSType.HAMT_SHARD, **meta))
    for command in (("ls", root), ("get", root, "-o", tmp_path / "o"), ("cat", f"{root}/x")):
        err = fails(*command, "--offline")
        assert f"HAMT shard {root} {said}" in err, err


def test_a_hamt_entry_in_the_wrong_slot_is_refused_as_path_lookup_misses_it(tmp_path):
    wrong = f"{(shard_lookup_index('lost', 0) + 1) % 256:02X}lost"
    right = f"{shard_lookup_index('kept', 0):02X}kept"
    meta = UnixFSData(UnixFSType.HAMT_SHARD, data=bytes(32), hash_type=0x22, fanout=256)
    root = node([(right, put(b"kept\n"), 5), (wrong, put(b"lost\n"), 5)], meta)
    assert run("cat", f"{root}/kept", "--offline").stdout == b"kept\n"
    assert "no link named 'lost'" in fails("cat", f"{root}/lost", "--offline")
    for command in (("ls", root), ("get", root, "-o", tmp_path / "o")):
        assert "holds 'lost' in a slot its name does not hash to" in fails(*command, "--offline")
    assert not (tmp_path / "o").exists()
    # a sub-shard's entries must also share the sub-shard's slot
    sub = node([(f"{shard_lookup_index('deep', 1):02X}deep", put(b"deep\n"), 5)], meta)
    other = (shard_lookup_index("deep", 0) + 7) % 256
    root = node([(f"{other:02X}", sub, 1)], meta)
    assert "does not hash to" in fails("ls", root, "--offline")


def test_a_link_name_that_is_not_utf8_is_one_line_and_not_a_500(tmp_path):
    child = put(b"x\n")
    body = bytes(child)
    link = b"\x0a" + varint(len(body)) + body + b"\x12\x02\xff\xfe" + b"\x18\x01"
    data = encode_unixfs(UnixFSData(UnixFSType.DIRECTORY))
    root = put(b"\x12" + varint(len(link)) + link + b"\x0a" + varint(len(data)) + data, DAG_PB)
    for command in (("ls", root), ("get", root, "-o", tmp_path / "o")):
        err = fails(*command, "--offline")
        assert "not UTF-8" in err and str(root) in err, err
    with serve(Repo()) as url:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", f"/ipfs/{root}/")
        response = conn.getresponse()
        assert response.status == 502 and b"not UTF-8" in response.read()
        conn.close()


def test_add_of_a_folder_1500_levels_deep_and_back(tmp_path):
    """Deeper than Python's call stack: added, listed, read and saved again by loops."""
    top = folder = tmp_path / "deep"
    top.mkdir()
    for _ in range(1500):  # one level at a time: mkdir(parents=True) recurses
        folder = folder / "d"
        folder.mkdir()
    (folder / "f").write_bytes(b"at the bottom\n")
    try:
        added = run("add", "-r", "-Q", top)
        assert added.returncode == 0 and not added.stderr, added.stderr[-500:]
        root = added.stdout.decode().strip()
        inner = "/".join(["d"] * 1500)
        assert run("cat", f"{root}/{inner}/f", "--offline").stdout == b"at the bottom\n"
        saved = run("get", root, "-o", tmp_path / "out", "--offline", "-q")
        assert saved.returncode == 0, saved.stderr[-500:]
        assert (tmp_path / "out" / inner / "f").read_bytes() == b"at the bottom\n"
    finally:  # pytest removes old temporary folders with a recursion this depth breaks
        for tree in (top, tmp_path / "out"):
            if tree.exists():
                _remove_deep(tree)


def _remove_deep(top: Path) -> None:
    """Remove a chain of folders deeper than Python's call stack, bottom up, in a loop."""
    folder = top
    while subfolders := [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]:
        folder = subfolders[0]
    while True:
        for item in folder.iterdir():
            if not item.is_dir() or item.is_symlink():
                item.unlink()
        folder.rmdir()
        if folder == top:
            return
        folder = folder.parent


def test_identity_leaves_are_read_inline_through_a_gateway(tmp_path, no_configured_gateway):
    """A gateway sends no identity blocks (the spec forbids it): a reader must not ask."""
    root = file_node([(identity(b"inline "), 7), (put(b"and stored\n"), 11)])
    folder = directory(("f", root), ("id", identity(b"only inline\n")))
    with serve(Repo()) as url:
        env = {**os.environ, "HOWTO_REPO": str(tmp_path / "empty"), "IPFS_GATEWAY": url}
        for path, expected in ((root, b"inline and stored\n"), (f"{folder}/id", b"only inline\n")):
            result = subprocess.run([*HOWTO, "cat", str(path)], env=env, capture_output=True)
            assert (result.returncode, result.stdout) == (0, expected), result.stderr
        fs = VerifiedIPFSFileSystem(gateway_addr=url, skip_instance_cache=True)
        assert fs.cat_file(f"ipfs://{folder}/f") == b"inline and stored\n"
