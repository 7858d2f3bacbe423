"""CARv1 export and import: the byte format, whole DAGs, and refusal of damaged files.

The CARs are taken apart here with a small parser of our own and every block is re-hashed
with hashlib, so these checks do not lean on howto's reader.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import dag_cbor
import pytest
from kubo_vectors import keystream, write_tree
from multiformats import CID

from howto.blocks.repo import Repo
from howto.formats.car import CARError, read_car, read_car_raw, write_car
from howto.retrieval.transfer import export_car, import_car
from howto.unixfs.add import add

CHUNK = 262144


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def cid_length(buf: bytes, pos: int) -> int:
    """Length of the binary CID at ``pos`` (CIDv0 is a bare sha2-256 multihash)."""
    if buf[pos : pos + 2] == b"\x12\x20":
        return 34
    start = pos
    for _ in range(3):  # version, codec, multihash code
        _, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return pos + size - start


class Section:
    def __init__(self, start: int, cid: bytes, data_start: int, data: bytes) -> None:
        self.start, self.cid, self.data_start, self.data = start, cid, data_start, data

    @property
    def codec(self) -> int:
        return 0x70 if self.cid[:2] == b"\x12\x20" else self.cid[1]

    def hashes_right(self) -> bool:
        assert self.cid[-34:-32] == b"\x12\x20", "sha2-256 expected"
        return hashlib.sha256(self.data).digest() == self.cid[-32:]


def parse_car(car: bytes) -> tuple[object, list[Section]]:
    """The decoded header and the sections of a CARv1."""
    size, pos = read_varint(car, 0)
    header = dag_cbor.decode(car[pos : pos + size])
    pos += size
    sections = []
    while pos < len(car):
        start = pos
        length, pos = read_varint(car, pos)
        n = cid_length(car, pos)
        sections.append(Section(start, car[pos : pos + n], pos + n, car[pos + n : pos + length]))
        pos += length
    return header, sections


def stored_blocks(repo_path: Path) -> list[Path]:
    return sorted(p for p in (repo_path / "blocks").rglob("*") if p.is_file())


def staging_leftovers(repo_path: Path) -> list[Path]:
    return sorted((repo_path / "staging").rglob("*"))


def exported(root: CID) -> bytes:
    out = io.BytesIO()
    export_car(root, out, Repo())
    return out.getvalue()


def howto_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "howto.cli", *args], capture_output=True, text=True, timeout=120
    )


# --- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "root",
    [
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
    ],
)
def test_header_is_the_dag_cbor_the_spec_describes(root):
    """{"roots": [CID], "version": 1}: map(2), keys sorted by length, CID as tag 42."""
    raw = bytes(CID.decode(root))
    body = (
        b"\xa2"
        + b"\x65roots"
        + b"\x81\xd8\x2a\x58"
        + bytes([len(raw) + 1])
        + b"\x00"
        + raw
        + b"\x67version\x01"
    )
    out = io.BytesIO()
    written = write_car(out, [root], [])
    assert out.getvalue() == varint(len(body)) + body
    assert written == len(out.getvalue())


def test_sections_round_trip_and_are_length_prefixed():
    blocks = [b"one", b"", b"three" * 1000]
    cids = [CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(b).digest())) for b in blocks]
    out = io.BytesIO()
    write_car(out, [cids[0]], zip(cids, blocks, strict=True))
    header, sections = parse_car(out.getvalue())
    assert header == {"roots": [cids[0]], "version": 1}
    assert [(s.cid, s.data) for s in sections] == [
        (bytes(c), b) for c, b in zip(cids, blocks, strict=True)
    ]
    roots, read = read_car(io.BytesIO(out.getvalue()))
    assert roots == [cids[0]]
    assert [(bytes(c), d) for c, d in read] == [
        (bytes(c), b) for c, b in zip(cids, blocks, strict=True)
    ]


# --- exporting whole DAGs -------------------------------------------------------------


def test_export_of_a_raw_leaf_cidv1_dag(tmp_path, howto_repo):
    data = keystream("car-v1", 4 * CHUNK + 1000)
    (tmp_path / "f").write_bytes(data)
    root = add(tmp_path / "f", cid_version=1)
    header, sections = parse_car(exported(root))
    assert header["version"] == 1 and header["roots"] == [root]
    assert sections[0].cid == bytes(root)  # depth-first: the root comes first
    assert all(s.hashes_right() for s in sections)
    leaves = [s for s in sections if s.codec == 0x55]
    assert len(leaves) == 5 and len(sections) == 6
    assert all(s.cid[0] == 0x01 for s in sections)  # every CID is v1
    assert b"".join(s.data for s in leaves) == data  # raw leaves, in file order
    assert len(sections) == len(stored_blocks(howto_repo))


def test_export_of_a_cidv0_directory_dag(tmp_path, howto_repo):
    data = keystream("car-v0", 2 * CHUNK + 5)
    write_tree(tmp_path, {"d/a/data.bin": data, "d/b.txt": "bee\n", "d/c.txt": "sea\n"})
    root = add(tmp_path / "d")
    header, sections = parse_car(exported(root))
    assert header["roots"] == [root]
    assert sections[0].cid == bytes(root)
    assert all(len(s.cid) == 34 and s.cid[:2] == b"\x12\x20" for s in sections)
    assert all(s.hashes_right() for s in sections)
    assert len({s.cid for s in sections}) == len(sections)  # each block once
    # root, a/, data.bin's parent and 3 leaves, b.txt, c.txt
    assert len(sections) == 8 == len(stored_blocks(howto_repo))
    for i in range(3):  # the dag-pb leaves wrap the chunks in order
        piece = data[i * CHUNK : (i + 1) * CHUNK]
        assert piece in sections[3 + i].data


def test_export_of_a_path_inside_a_dag(tmp_path, howto_repo):
    write_tree(tmp_path, {"d/sub/x.txt": "x\n", "d/y.txt": "y\n"})
    root = add(tmp_path / "d", cid_version=1)
    out = subprocess.run(
        [sys.executable, "-m", "howto.cli", "dag", "export", f"{root}/sub"],
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    header, sections = parse_car(out.stdout)
    sub = add(tmp_path / "d/sub", cid_version=1, only_hash=True)
    assert header["roots"] == [sub]
    assert len(sections) == 2  # the directory and x.txt, nothing of y.txt
    assert sections[1].data == b"x\n"


# --- refusing damaged CARs ---------------------------------------------------------------


@pytest.fixture
def good_car(tmp_path, howto_repo) -> tuple[bytes, list[Section]]:
    """A valid CAR of 7 blocks (a directory, a small file, a 4-leaf file), the repo emptied."""
    write_tree(tmp_path, {"d/big": keystream("good-car", 3 * CHUNK + 7), "d/small": "s\n"})
    root = add(tmp_path / "d", cid_version=1)
    car = exported(root)
    for block in stored_blocks(howto_repo):
        block.unlink()
    _, sections = parse_car(car)
    assert len(sections) == 7
    return car, sections


def _import_fails(car: bytes, tmp_path: Path, howto_repo: Path) -> tuple[str, str]:
    """Import through the API and the CLI; both must refuse and store nothing."""
    with pytest.raises(CARError) as info:
        import_car(io.BytesIO(car), Repo())
    assert stored_blocks(howto_repo) == [] and staging_leftovers(howto_repo) == []
    path = tmp_path / "bad.car"
    path.write_bytes(car)
    result = howto_cli("dag", "import", str(path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    assert stored_blocks(howto_repo) == [] and staging_leftovers(howto_repo) == []
    return str(info.value), result.stderr


def _cid_text(section: Section) -> str:
    cid = CID.decode(section.cid)
    return str(cid if cid.version == 0 else cid.set(base="base32"))


def test_a_flipped_byte_in_a_block_is_refused(good_car, tmp_path, howto_repo):
    car, sections = good_car
    bad = sections[3]
    damaged = bytearray(car)
    damaged[bad.data_start + len(bad.data) // 2] ^= 0x40
    message, stderr = _import_fails(bytes(damaged), tmp_path, howto_repo)
    for text in (message, stderr):
        assert "#3" in text and _cid_text(bad) in text


def test_a_car_truncated_mid_block_is_refused(good_car, tmp_path, howto_repo):
    car, sections = good_car
    cut = sections[3]  # a 256 KiB leaf, cut in the middle of its data
    message, stderr = _import_fails(car[: cut.data_start + CHUNK // 2], tmp_path, howto_repo)
    for text in (message, stderr):
        assert "truncated" in text and "#3" in text and _cid_text(cut) in text


def test_a_car_truncated_inside_a_length_is_refused(good_car, tmp_path, howto_repo):
    car, sections = good_car
    message, _ = _import_fails(car + b"\x80", tmp_path, howto_repo)
    assert "truncated" in message and f"#{len(sections)}" in message


def test_a_damaged_cid_is_refused(good_car, tmp_path, howto_repo):
    car, sections = good_car
    damaged = bytearray(car)
    damaged[sections[2].data_start - 1] ^= 0x01  # last byte of the digest
    message, _ = _import_fails(bytes(damaged), tmp_path, howto_repo)
    assert "#2" in message


def test_an_absurd_section_length_is_refused(good_car, tmp_path, howto_repo):
    car, sections = good_car
    start = sections[1].start
    _, data_pos = read_varint(car, start)
    damaged = car[:start] + varint(1 << 50) + car[data_pos:]
    message, _ = _import_fails(damaged, tmp_path, howto_repo)
    assert "#1" in message


@pytest.mark.parametrize(
    "header",
    [
        b"\x05hello",  # not DAG-CBOR
        b"\x0a\xa1\x67version",  # truncated header
        b"\xff\xff\xff\xff\x0f",  # a length far beyond any header
        dag_cbor.encode({"roots": [], "version": 2}),
        dag_cbor.encode({"roots": ["not a cid"], "version": 1}),
        dag_cbor.encode({"version": 1}),
        dag_cbor.encode([1, 2, 3]),
    ],
)
def test_a_bad_header_is_refused(good_car, tmp_path, howto_repo, header):
    car, sections = good_car
    if header.startswith((b"\xa1", b"\xa2", b"\x83")):  # a DAG-CBOR value: add its length
        header = varint(len(header)) + header
    message, stderr = _import_fails(header + car[sections[0].start :], tmp_path, howto_repo)
    assert "CAR" in message and "CAR" in stderr


def test_an_empty_or_headless_file_is_refused(good_car, tmp_path, howto_repo):
    car, sections = good_car
    message, _ = _import_fails(b"", tmp_path, howto_repo)
    assert "empty" in message
    _import_fails(car[sections[0].start :], tmp_path, howto_repo)  # blocks without a header


def test_a_good_car_is_imported_whole(good_car, tmp_path, howto_repo):
    car, sections = good_car
    path = tmp_path / "good.car"
    path.write_bytes(car)
    result = howto_cli("dag", "import", str(path))
    assert result.returncode == 0, result.stderr
    root = CID.decode(sections[0].cid).set(base="base32")
    assert result.stdout.split()[:3] == ["imported", "root", str(root)]
    assert len(stored_blocks(howto_repo)) == len(sections)
    cat = howto_cli("cat", f"{root}/small")
    assert cat.stdout == "s\n"


# --- dag import: complete DAGs, stats --------------------------------------------------------


def without(car: bytes, sections: list[Section], *dropped: int) -> bytes:
    """``car`` with the given sections (by index) cut out."""
    kept, pos = [], 0
    for i in sorted(dropped):
        kept.append(car[pos : sections[i].start])
        pos = sections[i + 1].start if i + 1 < len(sections) else len(car)
    return b"".join(kept) + car[pos:]


def test_dag_import_reports_blocks_and_bytes_as_kubo_does(good_car, tmp_path, howto_repo):
    car, sections = good_car
    path = tmp_path / "good.car"
    path.write_bytes(car)
    result = howto_cli("dag", "import", "--stats", str(path))
    assert result.returncode == 0, result.stderr
    root = CID.decode(sections[0].cid).set(base="base32")
    size = sum(len(s.data) for s in sections)
    assert result.stdout.splitlines() == [
        f"imported root {root} (DAG complete)",
        f"Imported {len(sections)} blocks ({size} bytes)",
    ]


def test_an_incomplete_dag_is_refused_naming_the_first_missing_block(
    good_car, tmp_path, howto_repo
):
    car, sections = good_car
    holey = without(car, sections, 3, 6)  # the second leaf of "big", and "small"
    path = tmp_path / "holey.car"
    path.write_bytes(holey)
    with pytest.raises(CARError, match="incomplete DAG") as info:
        import_car(io.BytesIO(holey), Repo())
    assert _cid_text(sections[3]) in str(info.value)  # depth first: the leaf comes first
    assert _cid_text(sections[6]) not in str(info.value)
    assert stored_blocks(howto_repo) == [] and staging_leftovers(howto_repo) == []
    result = howto_cli("dag", "import", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert _cid_text(sections[3]) in result.stderr and str(path) in result.stderr
    assert stored_blocks(howto_repo) == [] and staging_leftovers(howto_repo) == []
    # asked for, an incomplete DAG is kept as it is
    kept = howto_cli("dag", "import", "--no-check", "--stats", str(path))
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.splitlines()[0].endswith("(DAG not checked)")
    assert kept.stdout.splitlines()[1].startswith(f"Imported {len(sections) - 2} blocks ")
    assert len(stored_blocks(howto_repo)) == len(sections) - 2


def test_the_missing_blocks_may_come_from_the_repository_or_another_car(
    good_car, tmp_path, howto_repo
):
    car, sections = good_car
    top = tmp_path / "top.car"
    top.write_bytes(without(car, sections, 2, 3, 4, 5))  # the four leaves elsewhere
    assert "incomplete DAG" in howto_cli("dag", "import", str(top)).stderr
    rest = tmp_path / "rest.car"
    leaves = [(CID.decode(s.cid), s.data) for s in sections[2:6]]
    with open(rest, "wb") as f:
        write_car(f, [leaves[0][0]], leaves)
    both = howto_cli("dag", "import", str(top), str(rest))  # one import, two files
    assert both.returncode == 0, both.stderr
    assert len(stored_blocks(howto_repo)) == len(sections)
    for block in stored_blocks(howto_repo):
        block.unlink()
    # the leaves already in the repository, the rest from a CAR
    Repo().put_many(leaves)
    roots, count = import_car(io.BytesIO(top.read_bytes()), Repo())
    assert roots == [CID.decode(sections[0].cid)] and count == len(sections) - 4
    assert howto_cli("cat", f"{roots[0]}/small").stdout == "s\n"


# --- hashing in a second thread ----------------------------------------------------------


class Pieces(io.RawIOBase):
    """A stream that hands out a CAR in pieces of awkward sizes, as a network does."""

    def __init__(self, data: bytes, sizes: tuple[int, ...] = (1, 3, 37, 4093, 65537)) -> None:
        self.data, self.pos, self.sizes, self.turn = data, 0, sizes, 0

    def read(self, n: int = -1) -> bytes:
        step = self.sizes[self.turn % len(self.sizes)]
        self.turn += 1
        n = min(len(self.data) - self.pos, step if n < 0 else min(n, step))
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def whole(stream: Pieces) -> Pieces:
    """Short reads are the stream's right, but the CAR reader asks for exact sizes: this
    wrapper keeps reading until a request is met (as a buffered stream does)."""

    class Exact:
        def read(self, n: int) -> bytes:
            parts = []
            while n > 0 and (part := stream.read(n)):
                parts.append(part)
                n -= len(part)
            return b"".join(parts)

    return Exact()


def test_blocks_hashed_in_a_second_thread_are_the_same_blocks_in_order(good_car):
    car, sections = good_car
    _, inline = read_car(io.BytesIO(car))
    _, behind = read_car_raw(whole(Pieces(car)), overlap=True)
    expected = [(bytes(CID.decode(s.cid)), s.data) for s in sections]
    assert [(bytes(c), d) for c, d in inline] == expected
    assert [(bytes(c), bytes(d)) for c, d in behind] == expected


def test_a_damaged_block_stops_the_blocks_hashed_behind_at_its_place(good_car):
    car, sections = good_car
    bad = sections[3]
    damaged = bytearray(car)
    damaged[bad.data_start + 5] ^= 0x01
    _, behind = read_car_raw(io.BytesIO(bytes(damaged)), overlap=True)
    given = []
    with pytest.raises(CARError, match="#3") as info:
        for cid, _ in behind:
            given.append(cid)
    assert _cid_text(bad) in str(info.value)
    assert given == [bytes(CID.decode(s.cid)) for s in sections[:3]]  # nothing past the lie
