"""CAR archives: write a DAG's blocks as CARv1, read CARv1 or CARv2 with every block
hash-checked.

CARv1: a varint-prefixed DAG-CBOR header ``{"roots": [...], "version": 1}``, then one
section per block, ``varint(len(cid) + len(data)) || cid || data``.  CARv2 wraps a CARv1:
a fixed 11-byte pragma (a CARv1-style header that says ``{"version": 2}``), a 40-byte
header (16 bytes of characteristics, then little-endian 64-bit data offset, data size and
index offset), and the inner CARv1 at the data offset; the index is not needed to read
every block, so it is skipped.  Specs: ipld.io, specs/transport/car (carv1, carv2).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import dag_cbor
from dag_cbor.decoding.err import CBORDecodingError
from multiformats import CID

from ..errors import IntegrityError
from .cids import check_cid, to_cid, verify_raw
from .dagpb import read_varint, varint

# Limits from go-car: a larger header or section is a corrupt length, not a real block.
MAX_HEADER_SIZE = 32 << 20
MAX_SECTION_SIZE = 32 << 20
#: What follows the length byte of a CARv2 pragma: DAG-CBOR ``{"version": 2}``.
CARV2_PRAGMA = bytes.fromhex("a16776657273696f6e02")
#: Blocks read ahead of the one being checked, at most (``overlap=True``).
CHECKS_AHEAD = 64
CARV2_HEADER = struct.Struct("<16sQQQ")  # characteristics, data offset, size, index offset


class CARError(IntegrityError):
    """A CAR file that is malformed, truncated or holds a block not matching its CID."""


def encode_header(roots: Iterable[CID | bytes | str]) -> bytes:
    header = dag_cbor.encode({"roots": [to_cid(r) for r in roots], "version": 1})
    return varint(len(header)) + header


def encode_section(cid: CID | bytes, data: bytes) -> bytes:
    return section_head(cid, len(data)) + data


def section_head(cid: CID | bytes, size: int) -> bytes:
    """What precedes a block of ``size`` bytes in a CAR: the section length and the CID.

    Writing it and the block separately spares a copy of the block."""
    raw = cid if isinstance(cid, bytes) else bytes(cid)
    return varint(len(raw) + size) + raw


def write_car(
    out: BinaryIO, roots: Iterable[CID | bytes | str], blocks: Iterable[tuple[CID | bytes, bytes]]
) -> int:
    """Write a CARv1 to ``out``; return the number of bytes written."""
    written = out.write(encode_header(roots))
    for cid, data in blocks:
        written += out.write(encode_section(cid, data))
    return written


def cid_length(section: bytes) -> int:
    """Length of the CID at the start of a CAR section."""
    if section[:2] == b"\x12\x20":
        return 34
    pos = 0
    for _ in range(3):  # version, codec, hash function
        _, pos = read_varint(section, pos)
    size, pos = read_varint(section, pos)
    return pos + size


def _read_varint_stream(stream: BinaryIO, what: str) -> int | None:
    value = shift = 0
    while True:
        b = stream.read(1)
        if not b:
            if shift:
                raise CARError(f"CAR truncated inside the length of {what}")
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CARError(f"the length of {what} is not a valid varint")


def _read_section(stream: BinaryIO, length: int, index: int) -> tuple[bytes, bytes]:
    """The CID and the block of a section of ``length`` bytes.

    A sha2-256 CID (nearly all of them) is read first, on its own, so that the block is
    then read in one piece: from a stream that hands out views, with no copy.  The CID is
    always ``bytes``; the block is whatever the stream gave (``bytes`` or a view)."""
    head = stream.read(min(length, 4))
    if head[:2] == b"\x12\x20":
        split = 34
    elif len(head) == 4 and head[0] == 1 and head[1] < 0x80 and head[2:] == b"\x12\x20":
        split = 36
    else:
        split = 0  # any other CID: the whole section, split once it is read
    if split and length >= split:
        cid = bytes(head) + bytes(stream.read(split - len(head)))
        data = stream.read(length - split) if len(cid) == split else b""
        if len(cid) + len(data) == length:
            return cid, data
        section = cid + bytes(data)
    else:
        section = bytes(head) + bytes(stream.read(length - len(head)))
    if len(section) != length:
        raise CARError(
            f"CAR truncated in {_describe(index, section)}: "
            f"{len(section)} of {length} bytes present"
        )
    try:
        split = cid_length(section)
        if split > len(section) or split < 2:
            raise ValueError("the section is shorter than its CID")
    except Exception as exc:
        raise CARError(f"block #{index} has no valid CID: {exc}") from None
    return section[:split], section[split:]


def _describe(index: int, section: bytes) -> str:
    """``block #index``, with its CID when the section starts with a readable one."""
    try:
        return f"block #{index} ({to_cid(section[: cid_length(section)])})"
    except Exception:  # a damaged CID: the index is all there is to go by
        return f"block #{index}"


class _Window:
    """The next ``size`` bytes of a stream, read as a stream of their own."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream = stream
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.stream.read(n)
        self.left -= len(data)
        return data


def _skip(stream: BinaryIO, n: int) -> None:
    """Read past ``n`` bytes (a little at a time: ``n`` comes from the file)."""
    while n > 0:
        got = len(stream.read(min(n, 1 << 20)))
        if not got:
            raise CARError("CARv2 truncated before its data")
        n -= got


def _carv2_payload(stream: BinaryIO) -> _Window:
    """After a CARv2 pragma: the inner CARv1, as a stream of exactly its bytes."""
    header = stream.read(CARV2_HEADER.size)
    if len(header) != CARV2_HEADER.size:
        raise CARError("CARv2 truncated inside its header")
    _, offset, size, _ = CARV2_HEADER.unpack(header)
    start = 1 + len(CARV2_PRAGMA) + CARV2_HEADER.size
    if offset < start:
        raise CARError(f"CARv2 data offset {offset} points into its own header")
    _skip(stream, offset - start)
    return _Window(stream, size)


def read_car_raw(
    stream: BinaryIO, roots: bool = True, overlap: bool = False
) -> tuple[list[CID], Iterator[tuple[bytes, bytes]]]:
    """Parse a CAR (v1, or v2 holding a v1): roots and verified ``(binary CID, block)``.

    Every block is checked against its CID; any fault raises ``CARError`` naming the block.
    The CIDs stay binary, which keeps large CARs fast; ``read_car`` gives ``CID`` objects.
    ``roots=False`` skips decoding the header (gateway clients ignore its roots anyway).
    ``overlap=True`` hashes in a second thread while the next blocks are read, for streams
    that wait on a network.
    """
    return _read_v1(stream, roots, overlap, inner=False)


def _read_v1(
    stream: BinaryIO, roots: bool, overlap: bool, inner: bool
) -> tuple[list[CID], Iterator[tuple[bytes, bytes]]]:
    size = _read_varint_stream(stream, "the header")
    if size is None:
        raise CARError("empty CAR file" if not inner else "CARv2 holds no CARv1 data")
    if size > MAX_HEADER_SIZE:
        raise CARError(f"CAR header claims {size} bytes: not a CAR file, or a corrupt one")
    raw = bytes(stream.read(size))
    if len(raw) != size:
        raise CARError("CAR truncated inside its header")
    if raw == CARV2_PRAGMA and not inner:
        return _read_v1(_carv2_payload(stream), roots, overlap, inner=True)
    try:
        header = dag_cbor.decode(raw) if roots else {"roots": [], "version": 1}
        root_cids = [to_cid(r) for r in header["roots"]]
        for root in root_cids:
            check_cid(root)
        if header.get("version") != 1:
            raise CARError(f"unsupported CAR version {header.get('version')!r}")
    except (AttributeError, KeyError, TypeError, ValueError, CBORDecodingError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CARError(f"CAR header is not valid: {reason}") from None

    def sections() -> Iterator[tuple[int, bytes, bytes]]:
        index = 0
        while (length := _read_varint_stream(stream, f"block #{index}")) is not None:
            if length > MAX_SECTION_SIZE:
                raise CARError(f"block #{index} claims {length} bytes: the CAR is corrupt")
            yield index, *_read_section(stream, length, index)
            index += 1

    if overlap:
        return root_cids, _checked_behind(sections())
    return root_cids, (_checked(*section) for section in sections())


def _checked(index: int, cid: bytes, data: bytes) -> tuple[bytes, bytes]:
    try:
        verify_raw(cid, data)
    except IntegrityError as exc:  # the message names the CID
        raise CARError(f"CAR block #{index}: {exc}") from None
    except Exception as exc:  # an unknown codec or hash function
        raise CARError(f"block #{index} has no valid CID: {exc}") from None
    return cid, data


def _checked_behind(sections: Iterator[tuple[int, bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """``sections`` checked by a second thread while this one reads on (hashing releases
    the GIL); each block is still given out only once it is checked, in order."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="car-hash") as pool:
        try:
            for section in sections:
                pending.append(pool.submit(_checked, *section))
                while pending and (pending[0].done() or len(pending) > CHECKS_AHEAD):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def read_car(stream: BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse a CAR (v1 or v2): its roots and an iterator of verified ``(cid, block)``."""
    roots, blocks = read_car_raw(stream)
    return roots, ((to_cid(cid), data) for cid, data in blocks)


def check_roots(roots: list[CID]) -> list[CID]:
    """The roots of a CAR header as ``ipfs dag import`` takes them, shared by ``howto dag
    import`` and ``howto serve --car`` so that both take the same files.  Each root was
    checked by the reader; none at all is taken too, as kubo takes it (go-car's block
    reader allows it, the CARv1 spec leaves the number of roots unresolved, and
    ``ipfs-car pack`` writes such CARs when it streams to stdout)."""
    return list(roots)


__all__ = [
    "MAX_HEADER_SIZE",
    "MAX_SECTION_SIZE",
    "CARError",
    "check_roots",
    "cid_length",
    "encode_header",
    "encode_section",
    "section_head",
    "read_car",
    "read_car_raw",
    "write_car",
]
