"""dag-pb nodes and UnixFS metadata: the protobuf wire format, written by hand.

Field order follows go-codec-dagpb and boxo, because the order decides the CID:
a PBNode writes its Links (field 2) before Data (field 1); a PBLink writes Hash, Name
and Tsize; UnixFS ``blocksizes`` are not packed.  Specs: ipfs/specs, UnixFS and DAG-PB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class UnixFSType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass
class PBLink:
    hash: bytes
    name: str | None = ""
    tsize: int | None = None


@dataclass
class PBNode:
    links: list[PBLink] = field(default_factory=list)
    data: bytes | None = None


@dataclass
class UnixFSData:
    type: UnixFSType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = field(default_factory=list)
    hash_type: int | None = None
    fanout: int | None = None


def varint(n: int) -> bytes:
    """Unsigned LEB128, as protobuf and multiformats use."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _bytes_field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def _int_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def _fields(buf: bytes | memoryview):
    """Yield (field number, wire type, value) for a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated protobuf field")
            value = bytes(buf[pos : pos + size])
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def encode_node(node: PBNode) -> bytes:
    """Serialise a PBNode the way kubo does."""
    parts = []
    for link in node.links:
        body = _bytes_field(1, link.hash)
        if link.name is not None:
            body += _bytes_field(2, link.name.encode())
        if link.tsize is not None:
            body += _int_field(3, link.tsize)
        parts.append(_bytes_field(2, body))
    if node.data is not None:
        parts.append(_bytes_field(1, node.data))
    return b"".join(parts)


def decode_node(block: bytes) -> PBNode:
    """Parse a dag-pb block."""
    node = PBNode()
    for number, wire, value in _fields(block):
        if number == 1 and wire == 2:
            node.data = value
        elif number == 2 and wire == 2:
            link = PBLink(hash=b"", name=None)
            for n, w, v in _fields(value):
                if n == 1 and w == 2:
                    link.hash = v
                elif n == 2 and w == 2:
                    try:
                        link.name = v.decode()
                    except UnicodeDecodeError:
                        raise ValueError(f"dag-pb link name {v[:60]!r} is not UTF-8") from None
                elif n == 3 and w == 0:
                    link.tsize = v
            if not link.hash:
                raise ValueError("dag-pb link without a hash")
            node.links.append(link)
        else:
            raise ValueError(f"unexpected dag-pb field {number}")
    return node


def encode_unixfs(meta: UnixFSData) -> bytes:
    """Serialise UnixFS Data (fields 1–6) in field order."""
    out = _int_field(1, meta.type)
    if meta.data is not None:
        out += _bytes_field(2, meta.data)
    if meta.filesize is not None:
        out += _int_field(3, meta.filesize)
    for size in meta.blocksizes:
        out += _int_field(4, size)
    if meta.hash_type is not None:
        out += _int_field(5, meta.hash_type)
    if meta.fanout is not None:
        out += _int_field(6, meta.fanout)
    return out


def decode_unixfs(data: bytes) -> UnixFSData:
    """Parse the UnixFS Data carried in a dag-pb node."""
    meta = UnixFSData(type=UnixFSType.RAW)
    for number, wire, value in _fields(data):
        if number == 1:
            meta.type = UnixFSType(value)
        elif number == 2:
            meta.data = value
        elif number == 3:
            meta.filesize = value
        elif number == 4:
            if wire == 2:  # accept the packed form too
                pos = 0
                while pos < len(value):
                    size, pos = read_varint(value, pos)
                    meta.blocksizes.append(size)
            else:
                meta.blocksizes.append(value)
        elif number == 5:
            meta.hash_type = value
        elif number == 6:
            meta.fanout = value
    return meta


__all__ = [
    "PBLink",
    "PBNode",
    "UnixFSData",
    "UnixFSType",
    "decode_node",
    "decode_unixfs",
    "encode_node",
    "encode_unixfs",
    "read_varint",
    "varint",
]
