"""CARv1 archives: write a DAG's blocks, read them back with every block hash-checked.

Format: a varint-prefixed DAG-CBOR header ``{"roots": [...], "version": 1}``, then one
section per block, ``varint(len(cid) + len(data)) || cid || data``.  Spec: ipfs/specs,
transports/CARv1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

import dag_cbor
from multiformats import CID

from .cids import to_cid, verify_block
from .dagpb import read_varint, varint
from .errors import IntegrityError


class CARError(IntegrityError):
    """A CAR file that is malformed, truncated or holds a block not matching its CID."""


def encode_header(roots: Iterable[CID | bytes | str]) -> bytes:
    header = dag_cbor.encode({"roots": [to_cid(r) for r in roots], "version": 1})
    return varint(len(header)) + header


def encode_section(cid: CID | bytes, data: bytes) -> bytes:
    raw = cid if isinstance(cid, bytes) else bytes(cid)
    return varint(len(raw) + len(data)) + raw + data


def write_car(
    out: BinaryIO, roots: Iterable[CID | bytes | str], blocks: Iterable[tuple[CID | bytes, bytes]]
) -> int:
    """Write a CARv1 to ``out``; return the number of bytes written."""
    written = out.write(encode_header(roots))
    for cid, data in blocks:
        written += out.write(encode_section(cid, data))
    return written


def _split_cid(section: bytes) -> int:
    """Length of the CID at the start of a CAR section."""
    if section[:2] == b"\x12\x20":
        return 34
    pos = 0
    for _ in range(3):  # version, codec, hash function
        _, pos = read_varint(section, pos)
    size, pos = read_varint(section, pos)
    return pos + size


def _read_varint_stream(stream: BinaryIO) -> int | None:
    value = shift = 0
    while True:
        b = stream.read(1)
        if not b:
            if shift:
                raise CARError("CAR truncated inside a section length")
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CARError("CAR section length is not a valid varint")


def read_car(stream: BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse a CARv1: its roots and an iterator of verified ``(cid, block)`` pairs.

    Every block is checked against its CID; any fault raises ``CARError`` naming the block.
    """
    size = _read_varint_stream(stream)
    if size is None:
        raise CARError("empty CAR file")
    raw = stream.read(size)
    if len(raw) != size:
        raise CARError("CAR truncated inside its header")
    try:
        header = dag_cbor.decode(raw)
        roots = [to_cid(r) for r in header["roots"]]
        if header.get("version") != 1:
            raise CARError(f"unsupported CAR version {header.get('version')!r}")
    except (KeyError, TypeError, ValueError, dag_cbor.decoding.DAGCBORDecodingError) as exc:
        raise CARError(f"CAR header is not valid: {exc}") from None

    def blocks() -> Iterator[tuple[CID, bytes]]:
        index = 0
        while (length := _read_varint_stream(stream)) is not None:
            section = stream.read(length)
            if len(section) != length:
                raise CARError(f"CAR truncated in block #{index}")
            try:
                split = _split_cid(section)
                cid = to_cid(section[:split])
            except Exception as exc:
                raise CARError(f"block #{index} has no valid CID: {exc}") from None
            data = section[split:]
            try:
                verify_block(cid, data)
            except IntegrityError:
                raise CARError(f"block #{index} ({cid}) does not match its CID") from None
            yield cid, data
            index += 1

    return roots, blocks()
