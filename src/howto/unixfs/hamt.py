"""Directory nodes: a basic dag-pb directory, or a HAMT shard once it grows too large.

kubo switches to a HAMT when the estimated size of the basic node (for every link, the
name's bytes plus the CID's bytes) is *greater than* 262144 bytes; kubo 0.40 changed the
comparison from ``>=`` to ``>``.  Shards use fanout 256 and murmur3-x64-64 (the first
64-bit half of murmur3 x64 128 with seed 0); each level consumes one byte of that hash,
most significant first.  A slot holds one entry (link name ``%02X`` + entry name) or, when
two or more names share it, a sub-shard (link name ``%02X``).  Specs: ipfs/specs UnixFS.
"""

from __future__ import annotations

from collections.abc import Callable

import mmh3

from ..formats.dagpb import PBLink, PBNode, UnixFSData, UnixFSType, encode_unixfs

Emit = Callable[[PBNode], tuple[bytes, int]]

SHARD_THRESHOLD = 262144
FANOUT = 256
MURMUR3_X64_64 = 0x22


def estimated_size(links: list[PBLink]) -> int:
    """kubo's estimate of a basic directory's size (``links-bytes``)."""
    return sum(len(link.name.encode()) + len(link.hash) for link in links)


def name_hash(name: str) -> bytes:
    """The 8 bytes that place ``name`` in a HAMT, most significant first."""
    h1 = mmh3.hash128(name.encode(), 0, True, False) & 0xFFFFFFFFFFFFFFFF
    return h1.to_bytes(8, "big")


def build_directory(
    links: list[PBLink], emit: Emit, threshold: int = SHARD_THRESHOLD
) -> tuple[bytes, int]:
    """Emit a directory holding ``links``; return its CID and Tsize."""
    if estimated_size(links) > threshold:
        return _build_shard([(name_hash(link.name), link) for link in links], 0, emit)
    links = sorted(links, key=lambda link: link.name.encode())
    cid, blen = emit(PBNode(links, encode_unixfs(UnixFSData(UnixFSType.DIRECTORY))))
    return cid, blen + sum(link.tsize for link in links)


def _build_shard(entries: list[tuple[bytes, PBLink]], depth: int, emit: Emit) -> tuple[bytes, int]:
    if depth >= 8:
        raise ValueError("HAMT hash exhausted: too many names collide")
    slots: dict[int, list[tuple[bytes, PBLink]]] = {}
    for entry in entries:
        slots.setdefault(entry[0][depth], []).append(entry)
    links = []
    for index in sorted(slots):
        group = slots[index]
        if len(group) == 1:
            link = group[0][1]
            links.append(PBLink(link.hash, f"{index:02X}{link.name}", link.tsize))
        else:
            cid, tsize = _build_shard(group, depth + 1, emit)
            links.append(PBLink(cid, f"{index:02X}", tsize))
    bits = sum(1 << index for index in slots)
    meta = UnixFSData(
        UnixFSType.HAMT_SHARD,
        data=bits.to_bytes(max(1, (bits.bit_length() + 7) // 8), "big"),
        hash_type=MURMUR3_X64_64,
        fanout=FANOUT,
    )
    cid, blen = emit(PBNode(links, encode_unixfs(meta)))
    return cid, blen + sum(link.tsize for link in links)


def shard_problem(data: UnixFSData) -> str:
    """Why a HAMT shard's parameters cannot be read ("" when they can): howto reads what
    kubo writes, fanout 256 and murmur3-x64-64, and a shard always has a bitfield."""
    if data.hash_type != MURMUR3_X64_64:
        return f"uses hash function {_short_number(data.hash_type)}, not murmur3-x64-64 (0x22)"
    if data.fanout != FANOUT:
        return f"has fanout {_short_number(data.fanout)}, and only {FANOUT} is read"
    if not data.data:
        return "has an empty bitfield"
    return ""


def slot_of(link_name: str) -> int | None:
    """The slot a shard's link name starts with (two upper-case hex digits), else ``None``."""
    head = link_name[:2]
    if len(head) != 2 or any(c not in "0123456789ABCDEF" for c in head):
        return None
    return int(head, 16)


def _short_number(value: int | None) -> str:
    text = "none" if value is None else hex(value)
    return text if len(text) <= 24 else text[:20] + "…"


def shard_lookup_index(name: str, depth: int) -> int:
    """The slot ``name`` occupies at ``depth`` of a shard, for readers walking a HAMT."""
    return name_hash(name)[depth]


__all__ = [
    "FANOUT",
    "MURMUR3_X64_64",
    "SHARD_THRESHOLD",
    "build_directory",
    "estimated_size",
    "name_hash",
    "shard_lookup_index",
    "shard_problem",
    "slot_of",
]
