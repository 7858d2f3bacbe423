"""CAR files against independent implementations from npm, as the CID tests use the importer.

- ``howto dag export`` writes CARs that @ipld/car (the reference JS library) and the
  ``ipfs-car`` command read: the same roots and blocks, every block hashed again in JS,
  and the files they unpack equal to the originals.
- CARs that ``ipfs-car pack`` and @ipld/car's writer make are imported by ``howto dag
  import`` and read back by ``howto cat``/``howto get``.  ipfs-car chunks its own way (1 MiB
  raw leaves, CIDv1), so contents are compared, not root CIDs.  Neither tool writes CARv2.
- The gateway's ``?format=car`` replies, for each ``dag-scope`` and an ``entity-bytes``
  range, are parsed by @ipld/car and every block is checked there.
- @helia/verified-fetch (node 22, installed from the npm registry) reads files through the
  gateway by trustless requests and gets the original bytes; the CARs it makes of what it
  read are imported by howto.

Specs: ipld/specs (CARv1), ipfs/specs http-gateways/trustless-gateway.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import install_fetch_oracle, install_oracle
from kubo_vectors import keystream, write_tree
from multiformats import CID, multihash

from howto.blocks.repo import Repo
from howto.formats.dagpb import (
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    decode_node,
    decode_unixfs,
    encode_node,
    encode_unixfs,
)
from howto.gateway.server import serve

DAG_PB, IDENTITY = 0x70, 0x00  # multicodec codes


@pytest.fixture(autouse=True)
def _local_only(no_configured_gateway):
    """howto reads only its own repository here: no gateway from the machine's settings."""


class CarTools:
    """The npm side: tests/oracle/car.mjs (@ipld/car, the UnixFS exporter and importer)
    and the ipfs-car command, both run by node."""

    def __init__(self, directory: Path) -> None:
        self.script = directory / "car.mjs"
        self.ipfs_car_bin = directory / "node_modules" / "ipfs-car" / "bin.js"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["node", *map(str, args)], capture_output=True, timeout=300, check=False
        )

    def read(self, car: Path) -> dict:
        """@ipld/car's view of a CAR: version, roots and blocks (``verified`` per block)."""
        done = self._run(self.script, "read", car)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)

    def cat(self, car: Path, target: str, offset: int | None = None, length: int = 0) -> bytes:
        """A file's bytes as the JS exporter reads them from the CAR's blocks alone."""
        extra = [] if offset is None else [str(offset), str(length)]
        done = self._run(self.script, "cat", car, target, *extra)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    def write(self, out: Path, source: Path, chunk: int, children: int) -> str:
        """Import ``source`` in JS and write its CAR with @ipld/car; the root CID."""
        done = self._run(self.script, "write", out, chunk, children, source)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    def ipfs_car(self, *args: str | Path) -> subprocess.CompletedProcess:
        return self._run(self.ipfs_car_bin, *args)


@pytest.fixture(scope="session")
def js() -> CarTools:
    script = install_oracle()
    return CarTools(script.parent)


def howto(
    *args: str, stdout=subprocess.PIPE, repo: Path | None = None
) -> subprocess.CompletedProcess:
    env = os.environ if repo is None else {**os.environ, "HOWTO_REPO": str(repo)}
    done = subprocess.run(
        [sys.executable, "-m", "howto.cli", "--offline", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done


def add(path: Path, *options: str) -> str:
    return howto("add", "-Q", *options, str(path)).stdout.decode().strip()


def export(target: str, car: Path) -> Path:
    with car.open("wb") as out:
        howto("dag", "export", target, stdout=out)
    return car


def key(cid: str | CID) -> bytes:
    """A CID's binary form: the same for a CIDv0 printed in base58 and its JS spelling."""
    return bytes(CID.decode(cid) if isinstance(cid, str) else cid)


def dag_blocks(root: CID) -> set[bytes]:
    """The blocks a whole-DAG CAR of ``root`` holds: every block reachable through dag-pb
    links, identity CIDs left out (they carry their block in themselves)."""
    repo, found, todo = Repo(), set(), [root]
    while todo:
        cid = todo.pop()
        if cid.hashfun.code == IDENTITY or bytes(cid) in found:
            continue
        found.add(bytes(cid))
        if cid.codec.code == DAG_PB:
            todo.extend(CID.decode(link.hash) for link in decode_node(repo.get(cid)).links)
    return found


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: files with their bytes, folders as None."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def assert_read_by_ipld_car(js: CarTools, car: Path, root: CID, blocks: set[bytes]) -> None:
    seen = js.read(car)
    assert seen["version"] == 1
    assert [key(r) for r in seen["roots"]] == [bytes(root)]
    assert [b["cid"] for b in seen["blocks"] if not b["verified"]] == []
    cids = [key(b["cid"]) for b in seen["blocks"]]
    assert len(cids) == len(set(cids)), "a block written twice"
    assert set(cids) == blocks


# --- 1. howto's CARs read by @ipld/car and ipfs-car -----------------------------------------


def several_block_file(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "several.bin"
    path.write_bytes(keystream("several blocks", 200_000))  # 196 leaves: two levels
    return path, ["--cid-version", "1", "--raw-leaves", "--chunker", "size-1024"]


def cidv0_file(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "v0.bin"
    path.write_bytes(keystream("cidv0", 50_000))  # dag-pb leaves, as kubo's default
    return path, ["--chunker", "size-4096"]


def directory(tmp: Path, empty_folder: bool = True) -> tuple[Path, list[str]]:
    root = write_tree(
        tmp / "folder",
        {
            "a.txt": "alpha\n",
            "empty": b"",
            "sub/b.bin": keystream("folder b", 9_000),
            "sub/deeper/c.txt": "gamma\n",
        },
    )
    if empty_folder:
        (root / "sub" / "nothing").mkdir()
    return root, ["-r", "--chunker", "size-2048"]


def hamt_directory(tmp: Path) -> tuple[Path, list[str]]:
    # names long enough that 1,000 entries pass kubo's 256 KiB estimate: a HAMT shard
    root = tmp / "sharded"
    root.mkdir()
    for i in range(1_000):
        (root / f"{i:04d}-{'n' * 230}").write_bytes(f"entry {i}\n".encode())
    return root, ["-r"]


CASES = {
    "file of several blocks, CIDv1": several_block_file,
    "CIDv0 file, dag-pb leaves": cidv0_file,
    "directory": directory,
    "HAMT directory": hamt_directory,
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_howto_export_is_read_by_ipld_car_and_ipfs_car(make, js, tmp_path):
    source, options = make(tmp_path)
    root = CID.decode(add(source, *options))
    car = export(str(root), tmp_path / "export.car")
    blocks = dag_blocks(root)
    assert len(blocks) > 2

    assert_read_by_ipld_car(js, car, root, blocks)

    roots = js.ipfs_car("roots", car)
    assert roots.returncode == 0, roots.stderr.decode()
    assert [key(r) for r in roots.stdout.decode().split()] == [bytes(root)]
    listed = js.ipfs_car("blocks", car)
    assert listed.returncode == 0, listed.stderr.decode()
    assert {key(c) for c in listed.stdout.decode().split()} == blocks

    out = tmp_path / "unpacked"
    unpacked = js.ipfs_car("unpack", car, "--output", out)
    assert unpacked.returncode == 0, unpacked.stderr.decode()
    if source.is_dir():
        assert tree(out) == tree(source)
    else:
        assert out.read_bytes() == source.read_bytes()


def test_the_hamt_case_is_a_hamt_and_ipfs_car_lists_every_name(js, tmp_path):
    source, options = hamt_directory(tmp_path)
    root = CID.decode(add(source, *options))
    meta = decode_unixfs(decode_node(Repo().get(root)).data)
    assert meta.type == UnixFSType.HAMT_SHARD
    car = export(str(root), tmp_path / "hamt.car")
    listing = js.ipfs_car("ls", car)
    assert listing.returncode == 0, listing.stderr.decode()
    names = {line.removeprefix("./") for line in listing.stdout.decode().split()} - {"."}
    assert names == {p.name for p in source.iterdir()}


def put(repo: Repo, codec: str, block: bytes) -> CID:
    cid = CID("base32", 1, codec, multihash.digest(block, "sha2-256"))
    repo.put(cid, block)
    return cid


@pytest.fixture
def identity_dag() -> tuple[CID, dict[str, bytes]]:
    """A folder linking an identity CID as a file, and a file whose first chunk is one.

    Returns its root and each entry's content.
    """
    repo = Repo()
    inline = b"carried in the CID"
    inline_cid = CID("base32", 1, "raw", ("identity", inline))
    leaf = b"an ordinary leaf, hashed with sha2-256"
    leaf_cid = put(repo, "raw", leaf)
    file_meta = UnixFSData(UnixFSType.FILE, filesize=len(inline + leaf))
    file_meta.blocksizes = [len(inline), len(leaf)]
    mixed = put(
        repo,
        "dag-pb",
        encode_node(
            PBNode(
                [
                    PBLink(bytes(inline_cid), "", len(inline)),
                    PBLink(bytes(leaf_cid), "", len(leaf)),
                ],
                encode_unixfs(file_meta),
            )
        ),
    )
    folder = [
        PBLink(bytes(inline_cid), "inline.txt", len(inline)),
        PBLink(bytes(mixed), "mixed.bin", len(inline + leaf) + 100),
        PBLink(bytes(leaf_cid), "plain.txt", len(leaf)),
    ]
    root = put(
        repo, "dag-pb", encode_node(PBNode(folder, encode_unixfs(UnixFSData(UnixFSType.DIRECTORY))))
    )
    return root, {"inline.txt": inline, "mixed.bin": inline + leaf, "plain.txt": leaf}


def test_a_dag_with_identity_links_is_read_by_the_js_exporter(identity_dag, js, tmp_path):
    """Every file of the CAR reads right in JS, the identity chunks resolved inline.

    ``ipfs-car unpack`` cannot be the judge here: it asks the CAR for an identity CID's
    block, then refuses the block (its validator knows no identity hash), so it fails on
    such a DAG whether or not the block is in the file.
    """
    root, files = identity_dag
    car = export(str(root), tmp_path / "identity.car")
    seen = js.read(car)
    assert [key(r) for r in seen["roots"]] == [bytes(root)]
    assert all(b["verified"] for b in seen["blocks"])
    assert dag_blocks(root) <= {key(b["cid"]) for b in seen["blocks"]}
    for name, content in files.items():
        assert js.cat(car, f"{root}/{name}") == content
    # ipfs-car's ls cannot judge either: it asks the CAR for the identity entries' blocks,
    # which the CAR spec says a CAR must not hold


def test_an_export_holds_no_identity_blocks(identity_dag, js, tmp_path):
    root, _ = identity_dag
    car = export(str(root), tmp_path / "identity.car")
    assert_read_by_ipld_car(js, car, root, dag_blocks(root))
    listed = js.ipfs_car("blocks", car)
    assert listed.returncode == 0, listed.stderr.decode()
    assert {key(c) for c in listed.stdout.decode().split()} == dag_blocks(root)


# --- 2. their CARs imported by howto -----------------------------------------------------------


def assert_howto_reads(root: str, source: Path, tmp: Path) -> None:
    """``howto cat``/``get`` of the imported DAG give back ``source``."""
    out = tmp / "got"
    howto("get", "-q", "-o", str(out), root)
    if source.is_dir():
        assert tree(out) == tree(source)
        for path in source.rglob("*"):
            if path.is_file():
                relative = path.relative_to(source).as_posix()
                assert howto("cat", f"{root}/{relative}").stdout == path.read_bytes()
    else:
        assert out.read_bytes() == source.read_bytes()
        assert howto("cat", root).stdout == source.read_bytes()


def test_a_file_packed_by_ipfs_car_is_imported(js, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(keystream("packed file", 2_500_000))  # three 1 MiB leaves
    car = tmp_path / "packed.car"
    packed = js.ipfs_car("pack", source, "--no-wrap", "--output", car)
    assert packed.returncode == 0, packed.stderr.decode()
    root = packed.stdout.decode().strip()
    assert len(js.read(car)["blocks"]) == 4
    howto("dag", "import", str(car))
    assert_howto_reads(root, source, tmp_path)


def test_a_folder_packed_by_ipfs_car_is_imported(js, tmp_path):
    # ipfs-car packs a folder's files (its root is the folder) and leaves out empty folders
    source, _ = directory(tmp_path, empty_folder=False)
    car = tmp_path / "packed.car"
    packed = js.ipfs_car("pack", source, "--output", car)
    assert packed.returncode == 0, packed.stderr.decode()
    root = packed.stdout.decode().strip()
    howto("dag", "import", str(car))
    assert_howto_reads(root, source, tmp_path)


def test_a_rootless_car_from_ipfs_car_on_stdout_is_imported(js, tmp_path):
    """Packing to stdout, ipfs-car cannot go back to the header, so it names no root (the
    root goes to stderr); kubo's ``dag import`` takes such CARs, and so does howto."""
    source = tmp_path / "streamed.bin"
    source.write_bytes(keystream("streamed", 1_500_000))
    car = tmp_path / "streamed.car"
    with car.open("wb") as out:
        packed = subprocess.run(
            ["node", str(js.ipfs_car_bin), "pack", str(source), "--no-wrap"],
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=300,
            check=False,
        )
    assert packed.returncode == 0, packed.stderr.decode()
    root = packed.stderr.decode().strip()
    assert js.read(car)["roots"] == []
    imported = howto("dag", "import", str(car)).stdout.decode()
    assert imported == f"imported 3 blocks from {car} (it names no root)\n"
    assert_howto_reads(root, source, tmp_path)


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_car_written_by_ipld_car_is_imported(kind, js, tmp_path):
    """Small chunks and four links a node make a deep DAG; @ipld/car writes it leaves first."""
    if kind == "file":
        source = tmp_path / "deep.bin"
        source.write_bytes(keystream("deep", 40_000))
    else:
        source, _ = directory(tmp_path)
    car = tmp_path / "written.car"
    root = js.write(car, source, chunk=1024, children=4)
    blocks = js.read(car)["blocks"]
    assert key(blocks[-1]["cid"]) == key(root), "the root comes last"
    howto("dag", "import", str(car))
    assert_howto_reads(root, source, tmp_path)


# --- 3. the gateway's CAR replies -------------------------------------------------------------

SIZE, CHUNK = 20_480, 1024  # twenty leaves of 1 KiB under one node


@pytest.fixture
def site(tmp_path) -> dict:
    """A folder with a file of twenty raw leaves, added with CIDv1; its CIDs and blocks."""
    source = write_tree(
        tmp_path / "site",
        {"big.bin": keystream("gateway big", SIZE), "note.txt": "a small note\n"},
    )
    root = CID.decode(
        add(source, "-r", "--cid-version", "1", "--raw-leaves", "--chunker", "size-1024")
    )
    repo = Repo()
    links = {link.name: CID.decode(link.hash) for link in decode_node(repo.get(root)).links}
    big = links["big.bin"]
    leaves = [CID.decode(link.hash) for link in decode_node(repo.get(big)).links]
    assert len(leaves) == SIZE // CHUNK
    return {"root": root, "big": big, "leaves": leaves, "bytes": (source / "big.bin").read_bytes()}


def gateway_car(url: str, path: str, query: str, out: Path) -> Path:
    with urllib.request.urlopen(f"{url}{path}?format=car&{query}", timeout=60) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/vnd.ipld.car")
        out.write_bytes(reply.read())
    return out


SCOPES = {
    "all of the folder": ("", "dag-scope=all", lambda s: dag_blocks(s["root"])),
    "entity of the folder": ("", "dag-scope=entity", lambda s: {bytes(s["root"])}),
    "block of the file": (
        "/big.bin",
        "dag-scope=block",
        lambda s: {bytes(s["root"]), bytes(s["big"])},
    ),
    "entity of the file": (
        "/big.bin",
        "dag-scope=entity",
        lambda s: {bytes(s["root"])} | dag_blocks(s["big"]),
    ),
    "entity-bytes 2048:4095": (
        "/big.bin",
        "entity-bytes=2048:4095",
        lambda s: {bytes(c) for c in (s["root"], s["big"], s["leaves"][2], s["leaves"][3])},
    ),
    "entity-bytes -1500:*": (
        "/big.bin",
        "entity-bytes=-1500:*",
        lambda s: {bytes(c) for c in (s["root"], s["big"], s["leaves"][18], s["leaves"][19])},
    ),
}


@pytest.mark.parametrize("scope", SCOPES.values(), ids=SCOPES.keys())
def test_gateway_car_replies_verify_in_ipld_car(scope, site, js, tmp_path):
    path, query, expected = scope
    with serve(Repo()) as url:
        car = gateway_car(url, f"/ipfs/{site['root']}{path}", query, tmp_path / "reply.car")
    assert_read_by_ipld_car(js, car, site["root"], expected(site))


@pytest.mark.parametrize(
    ("query", "start", "end"), [("2048:4095", 2048, 4096), ("-1500:*", SIZE - 1500, SIZE)]
)
def test_an_entity_bytes_reply_is_enough_for_the_js_exporter(query, start, end, site, js, tmp_path):
    """The range, and only what it needs, read in JS from the reply's blocks alone."""
    with serve(Repo()) as url:
        car = gateway_car(
            url, f"/ipfs/{site['root']}/big.bin", f"entity-bytes={query}", tmp_path / "range.car"
        )
    got = js.cat(car, f"{site['root']}/big.bin", start, end - start)
    assert got == site["bytes"][start:end]


@pytest.mark.parametrize("dups", ["y", "n"])
def test_dfs_order_with_and_without_duplicates_parses_in_ipld_car(dups, js, tmp_path):
    """A file whose chunks repeat: with dups=y every link's block comes again, in the
    order a depth-first walk meets them; with dups=n each block once."""
    source = tmp_path / "repeats.bin"
    source.write_bytes(b"A" * 6 * CHUNK + b"B" * 2 * CHUNK + b"A" * 3 * CHUNK)
    root = CID.decode(add(source, "--cid-version", "1", "--raw-leaves", "--chunker", "size-1024"))
    walk = [root] + [CID.decode(link.hash) for link in decode_node(Repo().get(root)).links]
    accept = f"application/vnd.ipld.car; version=1; order=dfs; dups={dups}"
    with serve(Repo()) as url:
        request = urllib.request.Request(f"{url}/ipfs/{root}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=60) as reply:
            assert reply.headers["Content-Type"] == accept
            (tmp_path / "reply.car").write_bytes(reply.read())
    seen = js.read(tmp_path / "reply.car")
    assert all(b["verified"] for b in seen["blocks"])
    order = [key(b["cid"]) for b in seen["blocks"]]
    expected = [bytes(c) for c in walk]
    assert order == (expected if dups == "y" else list(dict.fromkeys(expected)))
    assert js.cat(tmp_path / "reply.car", str(root)) == source.read_bytes()


def test_a_gateway_car_holds_no_identity_blocks(identity_dag, js, tmp_path):
    root, _ = identity_dag
    with serve(Repo()) as url:
        car = gateway_car(url, f"/ipfs/{root}", "dag-scope=all", tmp_path / "identity.car")
    assert_read_by_ipld_car(js, car, root, dag_blocks(root))
    listed = js.ipfs_car("blocks", car)
    assert listed.returncode == 0, listed.stderr.decode()


# --- 4. verified-fetch through the gateway ----------------------------------------------------


@pytest.fixture(scope="session")
def verified_fetch() -> tuple[Path, Path]:
    return install_fetch_oracle()


def fetch_verified(program: tuple[Path, Path], gateway: str, resource: str, *accept: str) -> bytes:
    node, script = program
    done = subprocess.run(
        [str(node), str(script), gateway, resource, *accept],
        capture_output=True,
        timeout=300,
        check=False,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_verified_fetch_reads_files_from_the_gateway(verified_fetch, tmp_path):
    source = write_tree(
        tmp_path / "served",
        {"docs/readme.txt": "read me\n", "data/big.bin": keystream("verified fetch", 200_000)},
    )
    root = add(source, "-r", "--cid-version", "1", "--raw-leaves", "--chunker", "size-1024")
    big = add(source / "data" / "big.bin", "--chunker", "size-1024")  # CIDv0, dag-pb leaves
    with serve(Repo()) as url:
        assert fetch_verified(verified_fetch, url, f"ipfs://{root}/docs/readme.txt") == b"read me\n"
        whole = (source / "data" / "big.bin").read_bytes()
        assert fetch_verified(verified_fetch, url, f"ipfs://{root}/data/big.bin") == whole
        assert fetch_verified(verified_fetch, url, f"ipfs://{big}") == whole


def test_verified_fetch_reads_identity_links_through_the_gateway(identity_dag, verified_fetch):
    root, files = identity_dag
    with serve(Repo()) as url:
        for name, content in files.items():
            assert fetch_verified(verified_fetch, url, f"ipfs://{root}/{name}") == content


def test_verified_fetch_cars_of_what_it_read_are_imported_by_howto(verified_fetch, tmp_path):
    """verified-fetch reads a folder and a file from the gateway by blocks and hands them
    back as CARs of its own (@helia/car); howto imports them into an empty repository."""
    source, _ = directory(tmp_path)
    big = tmp_path / "big.bin"
    big.write_bytes(keystream("fetched as a CAR", 100_000))
    folder = add(source, "-r", "--chunker", "size-2048")
    file = add(big, "--cid-version", "1", "--raw-leaves", "--chunker", "size-1024")
    elsewhere = tmp_path / "second-repo"
    with serve(Repo()) as url:
        for root, original in ((folder, source), (file, big)):
            car = tmp_path / f"{original.name}.car"
            accept = "application/vnd.ipld.car"
            car.write_bytes(fetch_verified(verified_fetch, url, f"ipfs://{root}", accept))
            imported = howto("dag", "import", str(car), repo=elsewhere).stdout.decode()
            assert imported.startswith(f"imported root {root} ")
            out = tmp_path / f"{original.name}.got"
            howto("get", "-q", "-o", str(out), root, repo=elsewhere)
            if original.is_dir():
                assert tree(out) == tree(original)
            else:
                assert out.read_bytes() == original.read_bytes()


def test_verified_fetch_walks_a_hamt_from_the_gateway(verified_fetch, tmp_path):
    source, options = hamt_directory(tmp_path)
    root = add(source, *options)
    with serve(Repo()) as url:
        for index in (0, 685, 999):
            name = f"{index:04d}-{'n' * 230}"
            got = fetch_verified(verified_fetch, url, f"ipfs://{root}/{name}")
            assert got == f"entry {index}\n".encode()
