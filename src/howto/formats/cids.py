"""CID helpers: parsing user input, building CIDs fast, and checking bytes against them.

``multiformats`` does the encoding work; the importer's hot path builds the binary form
directly because a ``CID`` object costs far more than hashing a chunk.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

from multiformats import CID

from ..errors import HashPolicyError, IntegrityError
from .dagpb import read_varint, varint

DAG_PB = 0x70
RAW = 0x55
DAG_CBOR = 0x71
DAG_JSON = 0x0129
JSON = 0x0200
CBOR = 0x51
SHA2_256 = 0x12
IDENTITY = 0x00

_PREFIX_V1 = {codec: bytes([0x01, codec, SHA2_256, 0x20]) for codec in (DAG_PB, RAW)}
_PREFIX_V1[DAG_CBOR] = bytes([0x01, 0x71, SHA2_256, 0x20])
_PREFIX_V0 = bytes([SHA2_256, 0x20])
#: How every binary CIDv1 of a raw block begins (version 1, codec raw).
RAW_CID_PREFIX = bytes([0x01, RAW])

_IPFS_PREFIX = re.compile(r"^(?:ipfs://|/ipfs/)")

# --- which hashes may name a block ---------------------------------------------------------
# The limits follow kubo's CID check (boxo, package verifcid: DefaultMinDigestSize 20,
# DefaultMaxDigestSize 128, DefaultMaxIdentityDigestSize 128, and its allowlist of hash
# functions).  Of that list, howto computes those hashlib has; the others (keccak, blake3)
# are refused as unsupported rather than let through unchecked.
MIN_DIGEST = 20
MAX_DIGEST = 128
MAX_IDENTITY = 128
_BLAKE2B = 0xB200  # blake2b-8 is 0xb201: the code is the base plus the digest size in bytes
_BLAKE2S = 0xB240


def _hashlib(name: str) -> Callable[[bytes, int], bytes]:
    return lambda data, _size: hashlib.new(name, data).digest()


def _double_sha256(data: bytes, _size: int) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


#: multihash code → (name, function of (data, declared size) giving the digest; only
#: shake-256 has an output as long as asked)
_HASHES: dict[int, tuple[str, Callable[[bytes, int], bytes]]] = {
    0x12: ("sha2-256", _hashlib("sha256")),
    0x13: ("sha2-512", _hashlib("sha512")),
    0x14: ("sha3-512", _hashlib("sha3_512")),
    0x15: ("sha3-384", _hashlib("sha3_384")),
    0x16: ("sha3-256", _hashlib("sha3_256")),
    0x17: ("sha3-224", _hashlib("sha3_224")),
    0x19: ("shake-256", lambda data, size: hashlib.shake_256(data).digest(size)),
    0x56: ("dbl-sha2-256", _double_sha256),
}
for _size in range(20, 65):  # blake2b-160 … blake2b-512: the output size is in the code
    _HASHES[_BLAKE2B + _size] = (
        f"blake2b-{8 * _size}",
        lambda data, _, n=_size: hashlib.blake2b(data, digest_size=n).digest(),
    )
for _size in range(20, 33):  # blake2s-160 … blake2s-256
    _HASHES[_BLAKE2S + _size] = (
        f"blake2s-{8 * _size}",
        lambda data, _, n=_size: hashlib.blake2s(data, digest_size=n).digest(),
    )
#: secure, accepted by kubo, but not computed here
_UNSUPPORTED = {0x1A: "keccak-224", 0x1B: "keccak-256", 0x1C: "keccak-384", 0x1D: "keccak-512"}
_UNSUPPORTED[0x1E] = "blake3"
#: well-known hashes refused as insecure, named in the refusal
_INSECURE = {0xD5: "md5", 0xD4: "md4", 0x11: "sha1", 0x22: "murmur3-x64-64", 0x23: "murmur3-32"}


def _split_multihash(mh: bytes) -> tuple[int, int, int]:
    """(function code, declared digest size, position of the digest) of a multihash."""
    code, pos = read_varint(mh, 0)
    size, pos = read_varint(mh, pos)
    if len(mh) - pos != size:
        raise HashPolicyError(f"a multihash declares {size} digest bytes but holds {len(mh) - pos}")
    return code, size, pos


def check_multihash(mh: bytes, what: object = "a CID") -> None:
    """Raise ``HashPolicyError`` unless the multihash ``mh`` can safely name a block.

    Allowed: the secure functions howto computes, with digests of 20 to 128 bytes, and
    identity multihashes of at most 128 bytes (their "digest" is the block itself).
    """
    if mh[:2] == b"\x12\x20":  # sha2-256, 32 bytes: nearly every CID
        return
    code, size, _ = _split_multihash(mh)
    if code == IDENTITY:
        if size > MAX_IDENTITY:
            raise HashPolicyError(
                f"{what} is an identity CID of {size} bytes; at most {MAX_IDENTITY} are allowed"
            )
        return
    if code in _HASHES:
        if not MIN_DIGEST <= size <= MAX_DIGEST:
            raise HashPolicyError(
                f"{what} has a {size}-byte {_HASHES[code][0]} digest; "
                f"{MIN_DIGEST} to {MAX_DIGEST} bytes are required"
            )
        return
    if code in _UNSUPPORTED:
        raise HashPolicyError(
            f"{what} uses {_UNSUPPORTED[code]}, a hash function howto cannot compute"
        )
    raise HashPolicyError(f"{what} uses {_hash_name(code)}, which is not a secure hash")


def _hash_name(code: int) -> str:
    if code in _INSECURE:
        return _INSECURE[code]
    if _BLAKE2B < code <= _BLAKE2B + 64:
        return f"blake2b-{8 * (code - _BLAKE2B)}"
    if _BLAKE2S < code <= _BLAKE2S + 32:
        return f"blake2s-{8 * (code - _BLAKE2S)}"
    return f"the hash function 0x{code:x}"


def check_cid(cid: CID | bytes) -> None:
    """Raise ``HashPolicyError`` (a ``ValueError`` and an ``IntegrityError``) unless the
    hash of ``cid`` (a ``CID`` or its binary form) can safely name a block.

    The one place the hash policy lives: CIDs typed in, asked of the gateway, found in
    CAR files, links and IPLD all pass through it (through ``parse_cid`` and the block
    checks ``verify_block``/``verify_raw``).
    """
    if isinstance(cid, CID):
        mh = bytes(cid.digest)
    elif cid[:2] == b"\x12\x20":  # CIDv0
        mh = bytes(cid)
    else:
        try:
            version, pos = read_varint(cid, 0)
            _, pos = read_varint(cid, pos)
        except ValueError as exc:
            raise HashPolicyError(f"not a binary CID: {exc}") from None
        if version != 1:
            raise HashPolicyError(f"not a binary CID: version {version}")
        mh = bytes(cid[pos:])
    try:
        check_multihash(mh, _Named(cid))
    except ValueError as exc:
        if isinstance(exc, HashPolicyError):
            raise
        raise HashPolicyError(f"a CID has a malformed multihash: {exc}") from None


class _Named:
    """Formats a CID for a message only when one is raised (formatting is slow)."""

    def __init__(self, cid: CID | bytes) -> None:
        self.cid = cid

    def __str__(self) -> str:
        raw = bytes(self.cid)
        if len(raw) > 60:  # only the start, in linear time (decoding a long CID is not)
            start = base32(raw[:40])
            return f"the CID b{start}… ({len(raw)} bytes)"
        try:
            return str(to_cid(raw))
        except Exception:  # a CID too damaged to print
            return "a CID"


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


#: The longest CID text accepted: a 128-byte digest with its prefix in base16 is ~270
#: characters.  Checked before decoding, whose cost grows with the square of the length.
MAX_CID_TEXT = 512
#: The longest path after the CID (Linux's PATH_MAX).
MAX_PATH_TEXT = 4096


def _shown(text: str) -> str:
    """``text`` for an error message, shortened when long."""
    return repr(text) if len(text) <= 100 else f"{text[:60]!r}… ({len(text)} characters)"


def parse_cid(text: str) -> tuple[CID, str]:
    """Split user input (``Qm…``, ``bafy…``, ``ipfs://…``, ``/ipfs/…``) into CID and path.

    Raises ``ValueError`` naming the input when it does not start with a valid CID, when
    the CID or the path is too long, and ``HashPolicyError`` (a ``ValueError`` too) when
    the CID's hash is refused (see ``check_cid``).  The time taken is linear in the input.
    """
    if not isinstance(text, str):
        raise TypeError(f"a CID must be given as a string, not {type(text).__name__}")
    if len(text) > MAX_CID_TEXT + MAX_PATH_TEXT + 64:  # prefix, slashes and spaces
        raise ValueError(f"not a CID: {_shown(text)} is too long")
    stripped = _IPFS_PREFIX.sub("", text.strip())
    head, _, path = stripped.partition("/")
    if not head:
        raise ValueError(f"not a CID: {_shown(text)}")
    if len(head) > MAX_CID_TEXT:
        raise ValueError(f"not a CID: {_shown(head)} is longer than {MAX_CID_TEXT} characters")
    if len(path) > MAX_PATH_TEXT:
        raise ValueError(f"the path in {_shown(text)} is longer than {MAX_PATH_TEXT} characters")
    try:
        cid = CID.decode(head)
    except Exception as exc:  # multiformats raises several unrelated types
        raise ValueError(f"not a CID: {_shown(text)} ({exc})") from None
    check_cid(cid)
    return cid, path.strip("/")


def verify_block(cid: CID, data: bytes) -> bytes:
    """Return ``data`` when it hashes to ``cid``, else raise ``IntegrityError``
    (``HashPolicyError`` when the CID's hash is refused: see ``check_cid``)."""
    multihash_bytes = bytes(cid.digest)  # cheap, unlike ``cid.raw_digest`` (~0.2 ms)
    if multihash_bytes[:2] == _PREFIX_V0:  # sha2-256, 32 bytes: nearly every CID
        ok = hashlib.sha256(data).digest() == multihash_bytes[2:]
    else:
        check_cid(cid)
        code, size, start = _split_multihash(multihash_bytes)
        expected = multihash_bytes[start:]
        if code == IDENTITY:  # the data is the digest
            ok = bytes(data) == expected
        else:
            # a digest may be truncated (multihash allows it), never longer than the hash
            ok = _HASHES[code][1](data, size)[:size] == expected
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
        check_cid(raw_cid)  # before decoding: the refusal names the hash function
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


def is_identity(raw: bytes) -> bool:
    """Whether a binary CID is an identity CID: its block is the CID itself, so a CAR must
    not carry it as a section (CARv1 and trustless gateway specs) and nothing stores it."""
    return raw[:1] == b"\x01" and multihash_of(raw)[:1] == b"\x00"


def inline_data(raw: bytes) -> bytes | None:
    """The block an identity CID carries in itself, else ``None``."""
    multihash = multihash_of(raw)
    if multihash[0] != IDENTITY:
        return None
    check_multihash(multihash, _Named(raw))  # the hash policy: small identity CIDs only
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
        return base58(bytes(cid.digest))
    return _v1_text(cid.codec.code, cid.digest)


@functools.lru_cache(maxsize=1 << 15)
def _v1_text(codec: int, multihash: bytes) -> str:
    return _raw_text(b"\x01" + varint(codec) + multihash)


@functools.lru_cache(maxsize=1 << 15)
def _raw_text(raw: bytes) -> str:
    if raw[0] != 1:
        return base58(raw) if raw[:2] == _PREFIX_V0 and len(raw) == 34 else str(CID.decode(raw))
    return "b" + base32(raw)


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_PAIRS = [a + b for a in _BASE32 for b in _BASE32]  # ten bits at a time


def base32(raw: bytes) -> str:
    """RFC 4648 base32, lower case and unpadded, as multibase's ``b`` prefix wants it.

    The one base32 encoder of the package (CID text, block file names): ten bits at a time
    through a table, faster than ``base64.b32encode``, which works bit group by bit group.
    """
    bits = len(raw) * 8
    pad = -bits % 10
    number = int.from_bytes(raw, "big") << pad
    pairs = [_PAIRS[(number >> shift) & 1023] for shift in range(bits + pad - 10, -1, -10)]
    return "".join(pairs)[: -(-bits // 5)]


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58(raw: bytes) -> str:
    """Bitcoin's base58 (multibase ``z``, written bare in CIDv0): the digits of the bytes
    as one big number, a ``1`` for each leading zero byte.  ``str(CID)`` goes through a
    type-checked general encoder that costs a hundred times more, per CID."""
    number = int.from_bytes(raw, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_BASE58[digit])
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(digits))


__all__ = [
    "RAW_CID_PREFIX",
    "DAG_CBOR",
    "DAG_PB",
    "IDENTITY",
    "MAX_CID_TEXT",
    "MAX_DIGEST",
    "MAX_IDENTITY",
    "MAX_PATH_TEXT",
    "MIN_DIGEST",
    "RAW",
    "base32",
    "base58",
    "check_cid",
    "check_multihash",
    "cid_bytes",
    "cid_text",
    "inline_data",
    "is_identity",
    "multihash_of",
    "parse_cid",
    "raw_cid",
    "to_cid",
    "v1_str",
    "verify_block",
    "verify_multihash",
    "verify_raw",
]
