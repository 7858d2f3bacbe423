"""CID helpers: parsing user input, building CIDs fast, and checking bytes against them.

``multiformats`` does the encoding work; the importer's hot path builds the binary form
directly because a ``CID`` object costs far more than hashing a chunk.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from multiformats import CID, multihash

from .dagpb import read_varint, varint
from .errors import IntegrityError

DAG_PB = 0x70
RAW = 0x55
DAG_CBOR = 0x71
SHA2_256 = 0x12
IDENTITY = 0x00

_PREFIX_V1 = {codec: bytes([0x01, codec, SHA2_256, 0x20]) for codec in (DAG_PB, RAW)}
_PREFIX_V1[DAG_CBOR] = bytes([0x01, 0x71, SHA2_256, 0x20])
_PREFIX_V0 = bytes([SHA2_256, 0x20])

_IPFS_PREFIX = re.compile(r"^(?:ipfs://|/ipfs/)")


def cid_bytes(data: bytes, codec: int, version: int) -> bytes:
    """Binary CID of ``data`` hashed with sha2-256 (CIDv0 only for dag-pb)."""
    digest = hashlib.sha256(data).digest()
    if version == 0:
        return _PREFIX_V0 + digest
    return _PREFIX_V1[codec] + digest


def to_cid(raw: bytes | CID | str) -> CID:
    """A ``CID`` object from its binary form, a string, or a CID."""
    cid = raw if isinstance(raw, CID) else CID.decode(raw)
    return cid if cid.version == 0 else cid.set(base="base32")


def parse_cid(text: str) -> tuple[CID, str]:
    """Split user input (``Qm…``, ``bafy…``, ``ipfs://…``, ``/ipfs/…``) into CID and path.

    Raises ``ValueError`` naming the input when it does not start with a valid CID.
    """
    if not isinstance(text, str):
        raise TypeError(f"a CID must be given as a string, not {type(text).__name__}")
    stripped = _IPFS_PREFIX.sub("", text.strip())
    head, _, path = stripped.partition("/")
    if not head:
        raise ValueError(f"not a CID: {text!r}")
    try:
        cid = CID.decode(head)
    except Exception as exc:  # multiformats raises several unrelated types
        raise ValueError(f"not a CID: {text!r} ({exc})") from None
    return cid, path.strip("/")


def verify_block(cid: CID, data: bytes) -> bytes:
    """Return ``data`` when it hashes to ``cid``, else raise ``IntegrityError``."""
    multihash_bytes = bytes(cid.digest)  # cheap, unlike ``cid.raw_digest`` (~0.2 ms)
    if multihash_bytes[:2] == _PREFIX_V0:  # sha2-256, 32 bytes: nearly every CID
        ok = hashlib.sha256(data).digest() == multihash_bytes[2:]
    else:
        try:
            fn = cid.hashfun
            if fn.code == 0x00:  # identity: the data is the digest
                ok = data == bytes(cid.raw_digest)
            else:
                ok = multihash.digest(data, fn.name) == cid.digest
        except KeyError as exc:
            raise IntegrityError(f"cannot verify {cid}: unsupported hash ({exc})") from None
    if not ok:
        raise IntegrityError(f"block {cid} does not match its hash")
    return data


def verify_raw(raw_cid: bytes, data: bytes | memoryview) -> None:
    """Check ``data`` against a binary CID, without building a ``CID`` for sha2-256.

    A ``CID`` object costs far more than hashing a small block, which matters when a CAR
    or a zarr hierarchy holds a hundred thousand of them.
    """
    if raw_cid[:2] == _PREFIX_V0:
        digest = raw_cid[2:]
    elif raw_cid[0] == 1 and raw_cid[2:4] == _PREFIX_V0 and raw_cid[1] < 0x80:
        digest = raw_cid[4:]
    else:
        verify_block(to_cid(raw_cid), bytes(data))
        return
    if hashlib.sha256(data).digest() != digest:
        raise IntegrityError(f"block {to_cid(raw_cid)} does not match its hash")


def v1_str(cid: CID) -> str:
    """The canonical CIDv1 base32 string of ``cid`` (CIDv0 is converted)."""
    return str(cid.set(version=1, base="base32") if cid.version == 0 else cid.set(base="base32"))


def raw_cid(cid: CID | bytes | str) -> bytes:
    """The binary form of a CID given in any form (bytes are taken as binary already)."""
    if isinstance(cid, bytes):
        return cid
    if isinstance(cid, CID):
        return bytes(cid)
    return bytes(CID.decode(cid))


def multihash_of(raw: bytes) -> bytes:
    """The multihash of a binary CID: all of a CIDv0, what follows version and codec in v1."""
    return raw if raw[0] != 1 else raw[read_varint(raw, 1)[1] :]


def inline_data(raw: bytes) -> bytes | None:
    """The block an identity CID carries in itself, else ``None``."""
    multihash = multihash_of(raw)
    if multihash[0] != IDENTITY:
        return None
    size, pos = read_varint(multihash, 1)
    return multihash[pos : pos + size]


def verify_multihash(multihash: bytes, data: bytes | memoryview) -> None:
    """Check ``data`` against a bare multihash (as the repository files blocks)."""
    verify_raw(bytes([1, RAW]) + multihash, data)


# multiformats validates every argument of every call: decoding or printing a CID takes
# ~0.25 ms, more than hashing a 64 KiB block.  The text forms below are memoised.


def cid_text(cid: CID | bytes) -> str:
    """The CID as text: base32 for CIDv1 (the form ``to_cid`` gives), base58 for CIDv0.

    Takes a ``CID`` or a binary CID; the one helper for turning CIDs into text.
    """
    if isinstance(cid, bytes):
        return _raw_text(cid)
    if cid.version == 0:
        return _v0_text(cid)
    return _v1_text(cid.codec.code, cid.digest)


@functools.lru_cache(maxsize=1 << 15)
def _v1_text(codec: int, multihash: bytes) -> str:
    return _raw_text(b"\x01" + varint(codec) + multihash)


@functools.lru_cache(maxsize=1 << 15)
def _raw_text(raw: bytes) -> str:
    if raw[0] != 1:
        return str(CID.decode(raw))
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


@functools.lru_cache(maxsize=1 << 12)
def _v0_text(cid: CID) -> str:
    return str(cid)
