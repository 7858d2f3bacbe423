"""The public keys behind IPNS names: libp2p's four key types, how each is encoded, how
it signs, and which names stand for it.

A key travels as a small protobuf, ``PublicKey {Type = 1; Data = 2}`` (libp2p peer-ids
spec, "Keys"), written in one canonical way: the type, then the data, nothing else.
``Data`` depends on the type:

==============  ==================================  ==========================================
type            ``Data``                            signature over a message
==============  ==================================  ==========================================
RSA (0)         PKIX (SubjectPublicKeyInfo) DER     RSASSA-PKCS1-v1_5 with SHA-256
Ed25519 (1)     the 32 raw bytes                    Ed25519 (RFC 8032)
secp256k1 (2)   the 33-byte compressed point        ECDSA over SHA-256, DER-encoded
ECDSA (3)       PKIX DER of a P-256 key             ECDSA over SHA-256, DER-encoded
==============  ==================================  ==========================================

(The spec says only "ASN.1 DER" for ECDSA; its test vector and go-libp2p use PKIX.)

A name is the multihash of that protobuf (peer-ids spec, "Peer Ids"): the protobuf itself
(``identity``) when it has at most 42 bytes (Ed25519, secp256k1), its sha2-256 otherwise
(RSA, ECDSA); a hashed key must then travel inside the record (field 7), and must hash to
the name.  js-libp2p (``@libp2p/crypto`` 5) does ECDSA its own way, and its records are
accepted too: it encodes the public key as an RFC 5915 ``ECPrivateKey`` structure without
the private part (version 1, the curve's OID, the uncompressed point), names the key by
the identity multihash although it is longer than 42 bytes, and signs in the fixed-size
``r || s`` form that WebCrypto gives rather than in DER.

RSA keys are accepted from 2048 bits (go-libp2p's minimum) to 4096 bits: a larger key
costs its verifier more work for no gain, so it is refused before any signature is
checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from multiformats import CID, multihash

from ..errors import IpnsError
from ..formats.dagpb import read_varint, varint

__all__ = [
    "ECDSA",
    "ED25519",
    "IDENTITY",
    "KEY_TYPES",
    "MAX_INLINE_KEY",
    "MAX_NAME_KEY",
    "RSA",
    "RSA_BITS",
    "SECP256K1",
    "SHA2_256",
    "PrivateKey",
    "PublicKey",
    "decode_public_key",
    "key_for_name",
    "public_key",
    "sign",
]

RSA, ED25519, SECP256K1, ECDSA = 0, 1, 2, 3  # KeyType in libp2p's crypto protobuf
KEY_TYPES = {RSA: "RSA", ED25519: "Ed25519", SECP256K1: "secp256k1", ECDSA: "ECDSA"}
#: The RSA key sizes accepted, in bits (from go-libp2p's minimum to 4096).
RSA_BITS = (2048, 4096)
#: Keys whose protobuf is at most this long are inlined in their name (peer-ids spec).
MAX_INLINE_KEY = 42
#: The longest protobuf found inlined in a name: an ECDSA P-256 key, as js-libp2p does it.
MAX_NAME_KEY = 95
IDENTITY, SHA2_256 = 0x00, 0x12
LIBP2P_KEY = 0x72
_COMPRESSED_POINT = 33
# js-libp2p's ECDSA P-256 public key: SEQUENCE {INTEGER 1, [0] {OID prime256v1},
# [1] {BIT STRING 04 || X || Y}}, in DER; only the 64 bytes of X and Y vary.
_JS_P256_PREFIX = bytes.fromhex("3055020101a00a06082a8648ce3d030107a14403420004")
_P256_COORDINATES = 64

PrivateKey = Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_Verifier = Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class PublicKey:
    """A decoded libp2p public key: its type, its protobuf, and the key to verify with."""

    type: int
    protobuf: bytes
    key: _Verifier

    @property
    def type_name(self) -> str:
        return KEY_TYPES[self.type]

    def spec_hash(self) -> int:
        """The multihash function the peer-ids spec names this key by."""
        return IDENTITY if len(self.protobuf) <= MAX_INLINE_KEY else SHA2_256

    def name_hashes(self) -> tuple[int, ...]:
        """The multihash functions a name for this key may use: the spec's, and for
        ECDSA also the identity that js-libp2p uses."""
        if self.type == ECDSA and len(self.protobuf) <= MAX_NAME_KEY:
            return (SHA2_256, IDENTITY)
        return (self.spec_hash(),)

    def name(self) -> CID:
        """The key's IPNS name as the spec makes it (base36 CIDv1, ``libp2p-key``)."""
        digest = multihash.digest(
            self.protobuf, "identity" if self.spec_hash() == IDENTITY else "sha2-256"
        )
        return CID("base36", 1, LIBP2P_KEY, digest)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` signs ``message`` with this key, as its type signs."""
        try:
            if isinstance(self.key, Ed25519PublicKey):
                self.key.verify(signature, message)
            elif isinstance(self.key, rsa.RSAPublicKey):
                self.key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            else:
                return self._verify_ec(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def _verify_ec(self, signature: bytes, message: bytes) -> bool:
        assert isinstance(self.key, ec.EllipticCurvePublicKey)
        algorithm = ec.ECDSA(hashes.SHA256())
        forms = [signature]
        size = (self.key.curve.key_size + 7) // 8
        if self.type == ECDSA and len(signature) == 2 * size:  # WebCrypto's r || s
            r, s = signature[:size], signature[size:]
            forms.append(encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big")))
        for form in forms:
            try:
                self.key.verify(form, message, algorithm)
                return True
            except (InvalidSignature, ValueError):
                continue
        return False


def _protobuf(kind: int, data: bytes) -> bytes:
    return varint(1 << 3) + varint(kind) + varint(2 << 3 | 2) + varint(len(data)) + data


def decode_public_key(protobuf: bytes) -> PublicKey:
    """A key from its libp2p protobuf; ``IpnsError`` for one that is malformed, not in
    canonical form, of an unknown type or outside the accepted sizes."""
    try:
        tag, pos = read_varint(protobuf, 0)
        kind, pos = read_varint(protobuf, pos) if tag == 1 << 3 else (None, pos)
        tag, pos = read_varint(protobuf, pos)
        length, pos = read_varint(protobuf, pos) if tag == 2 << 3 | 2 else (0, pos)
    except (IndexError, ValueError):
        raise IpnsError("the public key is not a libp2p key protobuf") from None
    data = protobuf[pos : pos + length]
    if kind is None or _protobuf(kind, data) != protobuf:
        raise IpnsError("the public key is not a libp2p key protobuf in canonical form")
    if kind not in KEY_TYPES:
        raise IpnsError(f"unknown public key type {kind} (libp2p knows 0 to 3)")
    return PublicKey(kind, protobuf, _verifier(kind, data))


def _verifier(kind: int, data: bytes) -> _Verifier:
    name = KEY_TYPES[kind]
    try:
        if kind == ED25519:
            return Ed25519PublicKey.from_public_bytes(data)
        if kind == SECP256K1:
            if len(data) != _COMPRESSED_POINT:
                raise ValueError(f"{len(data)} bytes, not a 33-byte compressed point")
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), data)
        if kind == ECDSA and _is_js_p256(data):
            point = b"\x04" + data[len(_JS_P256_PREFIX) :]
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        key = load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise IpnsError(f"the {name} public key cannot be read: {exc}") from None
    if key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != data:
        raise IpnsError(f"the {name} public key is not in PKIX DER form")
    if kind == RSA:
        if not isinstance(key, rsa.RSAPublicKey):
            raise IpnsError("the key declared RSA is not an RSA key")
        low, high = RSA_BITS
        if not low <= key.key_size <= high:
            raise IpnsError(
                f"RSA keys of {key.key_size} bits are refused (accepted: {low} to {high})"
            )
        return key
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise IpnsError("the ECDSA public key is not on the P-256 curve")
    return key


def _is_js_p256(data: bytes) -> bool:
    return len(data) == len(_JS_P256_PREFIX) + _P256_COORDINATES and data.startswith(
        _JS_P256_PREFIX
    )


def public_key(key: PrivateKey | _Verifier) -> PublicKey:
    """The libp2p public key of a ``cryptography`` key (private or public)."""
    if isinstance(key, Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if isinstance(key, Ed25519PublicKey):
        kind, data = ED25519, key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256K1):
        kind, data = SECP256K1, key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    else:
        kind = RSA if isinstance(key, rsa.RSAPublicKey) else ECDSA
        data = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return decode_public_key(_protobuf(kind, data))


def sign(key: PrivateKey, message: bytes) -> bytes:
    """``message`` signed as libp2p signs with ``key``'s type (DER for the EC types)."""
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key.curve, ec.SECP256K1):
        # secp256k1 verifiers (libp2p's, bitcoin's) accept only the low-S form of a
        # signature; (r, n - s) is the same signature with S in the lower half
        r, s = decode_dss_signature(signature)
        if s > _SECP256K1_ORDER // 2:
            signature = encode_dss_signature(r, _SECP256K1_ORDER - s)
    return signature


#: The order n of secp256k1's group (SEC 2, section 2.4.1).
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def key_for_name(name: CID, embedded: bytes | None) -> PublicKey:
    """The key that ``name`` stands for: inlined in it, or ``embedded`` in the record,
    which must then hash to it.  ``IpnsError`` when there is none, when the two disagree,
    or when the name is not one this key may have (an Ed25519 key named by its sha2-256,
    an RSA key inlined)."""
    code, digest = name.hashfun.code, bytes(name.raw_digest)
    if code == IDENTITY:
        if embedded is not None and embedded != digest:
            raise IpnsError("the record's public key is not the one inlined in its name")
        key = decode_public_key(digest)
    elif code == SHA2_256:
        if embedded is None:
            raise IpnsError("the name hashes its key and the record does not include it")
        if bytes(multihash.digest(embedded, "sha2-256")) != bytes(name.digest):
            raise IpnsError("the record's public key does not hash to the name")
        key = decode_public_key(embedded)
    else:
        raise IpnsError(
            f"a name inlines its key or hashes it with sha2-256, not {name.hashfun.name}"
        )
    if code not in key.name_hashes():
        if key.spec_hash() == IDENTITY:
            how = "hashes its {} key; such a key is named by inlining it (identity multihash)"
        else:
            how = "inlines its {} key; such a key is named by its sha2-256"
        raise IpnsError("the name " + how.format(key.type_name))
    return key
