"""A small, fast DAG-CBOR codec and a light link type for the zarr-on-IPLD store.

``dag_cbor`` and ``multiformats`` validate every argument, which makes a ``CID`` object
cost a third of a millisecond: an array of 100 000 chunks would spend most of a minute
just decoding its links.  The store therefore keeps links as ``Link`` (the binary CID)
and uses this codec for the subset of DAG-CBOR it writes and reads: maps with string
keys, lists, strings, byte strings, integers, 64-bit floats, booleans, null and links
(tag 42).  The output is canonical (shortest heads, map keys sorted by length and then
bytewise, floats always 64 bits), so it is byte-for-byte what ``dag_cbor.encode`` gives.
Spec: ipld.io/specs/codecs/dag-cbor.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from multiformats import CID

from ..formats.cids import DAG_CBOR, RAW, cid_bytes, cid_text, to_cid, verify_raw
from ..formats.dagpb import read_varint

_FLOAT = struct.Struct(">d")
_LINK_TAG = b"\xd8\x2a"


class Link:
    """A link to a block: its binary CID, cheap to hash, compare and encode."""

    __slots__ = ("codec", "raw", "_text")

    def __init__(self, raw: bytes | CID | Link) -> None:
        if isinstance(raw, Link):
            raw = raw.raw
        elif isinstance(raw, CID):
            raw = bytes(raw)
        self.raw = raw = bytes(raw)
        self._text: str | None = None
        #: the multicodec of the linked block (dag-pb for a CIDv0)
        if raw[0] != 1:
            self.codec = 0x70
        else:
            self.codec = raw[1] if raw[1] < 0x80 else read_varint(raw, 1)[0]

    @classmethod
    def of(cls, data: bytes | memoryview, codec: int) -> Link:
        """The CIDv1 (sha2-256) that names ``data`` under ``codec``."""
        return cls(cid_bytes(data, codec, 1))

    @property
    def cid(self) -> CID:
        return to_cid(self.raw)

    def __str__(self) -> str:
        if self._text is None:
            self._text = cid_text(self.raw)
        return self._text

    def __repr__(self) -> str:
        return f"Link({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Link) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def as_link(value: Link | CID | str | bytes) -> Link:
    """A ``Link`` from a CID object, its string or binary form."""
    if isinstance(value, str):
        return Link(to_cid(value))
    return Link(value)


def check_block(link: Link, data: bytes) -> bytes:
    """Return ``data`` when it hashes to ``link``, else raise ``IntegrityError``."""
    verify_raw(link.raw, data)
    return data


def _head(major: int, n: int) -> bytes:
    base = major << 5
    if n < 24:
        return bytes((base | n,))
    if n < 0x100:
        return bytes((base | 24, n))
    if n < 0x10000:
        return bytes((base | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((base | 26,)) + n.to_bytes(4, "big")
    if n < 0x10000000000000000:
        return bytes((base | 27,)) + n.to_bytes(8, "big")
    raise ValueError(f"integer {n} does not fit in 64 bits")


def _key_bytes(key: object) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"DAG-CBOR map keys must be strings, not {type(key).__name__}")
    return key.encode()


def _encode(obj: Any, out: list[bytes]) -> None:
    if obj is None:
        out.append(b"\xf6")
    elif obj is True:
        out.append(b"\xf5")
    elif obj is False:
        out.append(b"\xf4")
    elif isinstance(obj, Link):
        out.append(_LINK_TAG + _head(2, len(obj.raw) + 1) + b"\x00" + obj.raw)
    elif isinstance(obj, str):
        data = obj.encode()
        out.append(_head(3, len(data)))
        out.append(data)
    elif isinstance(obj, dict):
        items = sorted(((_key_bytes(k), v) for k, v in obj.items()), key=_map_order)
        out.append(_head(5, len(items)))
        for key, value in items:
            out.append(_head(3, len(key)))
            out.append(key)
            _encode(value, out)
    elif isinstance(obj, list | tuple):
        out.append(_head(4, len(obj)))
        for value in obj:
            _encode(value, out)
    elif isinstance(obj, int):
        out.append(_head(0, obj) if obj >= 0 else _head(1, -1 - obj))
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("DAG-CBOR cannot hold NaN or infinite floats")
        out.append(b"\xfb" + _FLOAT.pack(obj))
    elif isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
        out.append(_head(2, len(data)))
        out.append(data)
    elif isinstance(obj, CID):
        _encode(Link(obj), out)
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as DAG-CBOR")


def _map_order(item: tuple[bytes, Any]) -> tuple[int, bytes]:
    return len(item[0]), item[0]


def encode(obj: Any) -> bytes:
    """Canonical DAG-CBOR bytes of ``obj`` (``Link`` and ``CID`` become tag-42 links)."""
    out: list[bytes] = []
    _encode(obj, out)
    return b"".join(out)


def decode(data: bytes) -> Any:
    """Decode one DAG-CBOR item; links come back as ``Link``.

    Raises ``ValueError`` for anything outside DAG-CBOR (indefinite lengths, other tags,
    short floats, non-string map keys, trailing bytes).
    """
    try:
        value, pos = _item(data, 0)
    except IndexError:
        raise ValueError("DAG-CBOR block is truncated") from None
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after the DAG-CBOR item")
    return value


_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}


def _item(data: bytes, pos: int) -> tuple[Any, int]:
    initial = data[pos]
    pos += 1
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        n = info
    elif major == 7:
        if info == 27:
            return _FLOAT.unpack_from(data, pos)[0], pos + 8
        raise ValueError(f"simple value or float width {info} is not DAG-CBOR")
    elif 24 <= info <= 27:
        width = 1 << (info - 24)
        if pos + width > len(data):
            raise IndexError
        n = int.from_bytes(data[pos : pos + width], "big")
        pos += width
    else:
        raise ValueError("indefinite lengths are not DAG-CBOR")
    if major == 3 or major == 2:
        end = pos + n
        if end > len(data):
            raise IndexError
        return (data[pos:end].decode() if major == 3 else bytes(data[pos:end])), end
    if major == 5:
        mapping = {}
        for _ in range(n):
            head = data[pos]
            if 0x60 <= head < 0x78:  # fast path: a short string key
                end = pos + 1 + head - 0x60
                if end > len(data):
                    raise IndexError
                key, pos = data[pos + 1 : end].decode(), end
            else:
                key, pos = _item(data, pos)
                if not isinstance(key, str):
                    raise ValueError("DAG-CBOR map keys must be strings")
            if data[pos : pos + 3] == b"\xd8\x2a\x58" and data[pos + 4] == 0:
                end = pos + 4 + data[pos + 3]  # fast path: a link with a short CID
                if end > len(data):
                    raise IndexError
                mapping[key], pos = Link(data[pos + 5 : end]), end
            else:
                mapping[key], pos = _item(data, pos)
        return mapping, pos
    if major == 6:
        if n != 42:
            raise ValueError(f"CBOR tag {n} is not allowed in DAG-CBOR")
        raw, pos = _item(data, pos)
        if not isinstance(raw, bytes) or raw[:1] != b"\x00":
            raise ValueError("a DAG-CBOR link must be a byte string starting with 0x00")
        return Link(raw[1:]), pos
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 4:
        items = []
        for _ in range(n):
            value, pos = _item(data, pos)
            items.append(value)
        return items, pos
    if initial in _SIMPLE:
        return _SIMPLE[initial], pos
    raise ValueError(f"simple value {info} is not DAG-CBOR")


def links_in(obj: Any) -> list[Link]:
    """Every link in a value from ``decode``, in encoding order."""
    found: list[Link] = []
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, Link):
            found.append(value)
        elif isinstance(value, dict):  # decoded maps keep the canonical key order
            stack.extend(reversed(value.values()))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return found


__all__ = ["DAG_CBOR", "RAW", "Link", "as_link", "check_block", "decode", "encode", "links_in"]
