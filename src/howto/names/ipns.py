"""IPNS: names that point at content, signed by a key (specs.ipfs.tech, IPNS record).

A name is the publisher's public key: the CIDv1 (codec ``libp2p-key``) of the identity
multihash of the key in libp2p's protobuf form, shown in base36 (``k51…``).  A record
says what the name points at (``/ipfs/CID``), until when (an RFC 3339 date), and which
version it is (a sequence number); its ``data`` field holds those values as DAG-CBOR and
``signatureV2`` signs ``b"ipns-signature:" + data``.  Anyone holding the record can check
it against the name alone, so a record may travel through any gateway.

Validation follows IPIP-428: no ``signatureV2`` (a V1-only record), a V2 signature that
does not verify, legacy V1 fields that disagree with the signed data, an expired record
or one over 10 KiB are refused; the V1 signature is never looked at.  Of two valid
records, the higher sequence wins.  Records signed with any of libp2p's key types are
checked (Ed25519, RSA of 2048 to 4096 bits, secp256k1, ECDSA P-256: see ``keys``), and a
name must be the one its key has.  A record's value must be an ``/ipfs/`` or ``/ipns/``
path; ``resolve_path`` follows ``/ipns/`` → ``/ipns/`` chains as kubo does (at most 32
names, never a loop).

Records published or received follow the repository: ``$HOWTO_REPO/ipns``, a folder or a
bucket, where every reader of that repository finds them.  Keys (ed25519) stay on this
machine: ``$HOWTO_REPO/keys`` for a folder repository, else beside the default local
repository, or wherever ``$HOWTO_KEYS`` says; a key reaches a bucket only when
``$HOWTO_KEYS`` names one (``howto.names.storage`` says why).  Never next to the project.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dag_cbor
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multiformats import CID, multibase

from ..errors import HowtoError, IpnsError, NotFoundError
from ..formats.cids import parse_cid
from ..formats.dagpb import read_varint, varint
from .keys import IDENTITY, MAX_NAME_KEY, SHA2_256, PrivateKey, key_for_name, public_key, sign
from .storage import Shelf, keys_location, records_location

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_RECORD_BYTES",
    "MAX_DEPTH",
    "RECORD_TYPE",
    "KeyStore",
    "Record",
    "RecordStore",
    "Resolved",
    "best",
    "create_record",
    "inspect_record",
    "name_of",
    "name_text",
    "parse_duration",
    "parse_name",
    "resolve",
    "resolve_path",
    "verify_record",
]

#: The largest record implementations must handle (IPNS record spec, size limit).
MAX_RECORD_BYTES = 10 * 1024
RECORD_TYPE = "application/vnd.ipfs.ipns-record"
SIGNATURE_PREFIX = b"ipns-signature:"
LIBP2P_KEY = 0x72
EOL = 0  # the only ValidityType
#: kubo's defaults for ``ipfs name publish``: valid 48 hours, cached for one hour.
DEFAULT_LIFETIME = timedelta(hours=48)
DEFAULT_TTL = timedelta(hours=1)
#: How many names an ``/ipns/`` → ``/ipns/`` chain may pass through (kubo's, from boxo's
#: namesys ``DefaultDepthLimit``).
MAX_DEPTH = 32
_UINT64 = 1 << 64
_SHOWN = 80  # characters of untrusted input an error message repeats


def _shown(text: str | bytes) -> str:
    """Untrusted text for an error message: quoted, and cut when it is long."""
    cut = text[:_SHOWN]
    return repr(cut) + (f"… ({len(text)} long)" if len(text) > _SHOWN else "")


# --- protobuf, by hand: the record has nine fields of two wire types ----------------------


def _fields(data: bytes) -> dict[int, bytes | int]:
    """Fields of a protobuf message (varints and length-delimited only; last one wins)."""
    out: dict[int, bytes | int] = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], pos = read_varint(data, pos)
        elif wire == 2:
            length, pos = read_varint(data, pos)
            if pos + length > len(data):
                raise IpnsError("the record ends inside a field")
            out[number], pos = data[pos : pos + length], pos + length
        else:
            raise IpnsError(f"unexpected protobuf wire type {wire} in field {number}")
    return out


def _encode(fields: Iterable[tuple[int, bytes | int]]) -> bytes:
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += varint(number << 3) + varint(value)
        else:
            out += varint(number << 3 | 2) + varint(len(value)) + value
    return bytes(out)


# --- names ------------------------------------------------------------------------------


def name_of(key: object) -> CID:
    """The IPNS name of a key (Ed25519, RSA, secp256k1 or ECDSA P-256; private or public):
    its libp2p protobuf form, inlined when short (Ed25519, secp256k1), else its sha2-256."""
    return public_key(key).name()  # type: ignore[arg-type]


def name_text(name: CID) -> str:
    """A name as kubo shows it: base36, starting with ``k``."""
    return name.encode("base36")


def parse_name(text: str) -> CID:
    """A name given as a CID (``k51…``, any base) or as a base58 peer ID (``12D3Koo…``,
    or ``Qm…`` for keys that are hashed rather than inlined)."""
    text = text.strip().removeprefix("/ipns/").removeprefix("ipns://").split("/")[0]
    try:
        cid = CID.decode(text)
        if cid.version == 0:  # a base58 peer ID that hashes its key (RSA) reads as CIDv0
            cid = CID("base36", 1, LIBP2P_KEY, cid.digest)
    except Exception:
        try:
            digest = multibase.decode("z" + text)
            cid = CID("base36", 1, LIBP2P_KEY, digest)
        except Exception:
            raise IpnsError(f"not an IPNS name: {_shown(text)}") from None
    if cid.codec.code != LIBP2P_KEY:
        raise IpnsError(f"not an IPNS name: {_shown(text)} is a {cid.codec.name} CID")
    code, size = cid.hashfun.code, len(cid.raw_digest)
    if not (code == IDENTITY and size <= MAX_NAME_KEY or code == SHA2_256 and size == 32):
        raise IpnsError(
            f"not an IPNS name: {_shown(text)} (a name inlines a key of at most "
            f"{MAX_NAME_KEY} bytes or is its 32-byte sha2-256)"
        )
    return cid.set(base="base36", version=1)


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """A verified record: what the name points at, until when, which version."""

    name: CID
    value: str
    sequence: int
    validity: datetime
    ttl: int  # nanoseconds
    raw: bytes
    has_v1: bool

    @property
    def path(self) -> str:
        return self.value


def _rfc3339(moment: datetime) -> bytes:
    """A UTC time as Go's RFC3339Nano writes it (fraction without trailing zeros)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return (text + "Z").encode()


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:Z|([+-])(\d\d):(\d\d))"
)


def _parse_time(raw: bytes) -> datetime:
    """An RFC 3339 time as Go's ``time.RFC3339Nano`` reads it (to the microsecond);
    ``IpnsError`` for text that is not one or a date that does not exist."""
    match = _RFC3339.fullmatch(raw.decode("ascii", "replace"))
    if match is None:
        raise IpnsError(f"the validity {_shown(raw)} is not an RFC 3339 time")
    *parts, fraction, direction, zone_hours, zone_minutes = match.groups()
    try:
        hours, minutes = int(zone_hours or 0), int(zone_minutes or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"no time zone is {zone_hours}:{zone_minutes} hours from UTC")
        offset = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-offset if direction == "-" else offset)
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(*map(int, parts), micro, tzinfo=zone)  # type: ignore[misc]
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise IpnsError(f"the validity {_shown(raw)} is not a real time: {exc}") from None


def create_record(
    key: PrivateKey,
    value: str,
    sequence: int,
    lifetime: timedelta = DEFAULT_LIFETIME,
    ttl: timedelta = DEFAULT_TTL,
    v1: bool = True,
    now: datetime | None = None,
) -> bytes:
    """A signed record (V2, and with ``v1`` the legacy V1 fields and signature, which
    older readers need; they repeat the signed data).  A key too long to inline in its
    name (RSA, ECDSA) travels in the record."""
    validity = _rfc3339((now or datetime.now(UTC)) + lifetime)
    ttl_ns = int(ttl.total_seconds() * 1e9)
    data = dag_cbor.encode(
        {
            "Value": value.encode(),
            "Validity": validity,
            "ValidityType": EOL,
            "Sequence": sequence,
            "TTL": ttl_ns,
        }
    )
    fields: list[tuple[int, bytes | int]] = []
    if v1:
        v1_signature = sign(key, value.encode() + validity + b"EOL")
        fields += [(1, value.encode()), (2, v1_signature), (3, EOL), (4, validity)]
        fields += [(5, sequence), (6, ttl_ns)]
    public = public_key(key)
    if public.spec_hash() != IDENTITY:
        fields.append((7, public.protobuf))
    fields += [(8, sign(key, SIGNATURE_PREFIX + data)), (9, data)]
    raw = _encode(fields)
    if len(raw) > MAX_RECORD_BYTES:
        raise IpnsError(f"the record would be {len(raw)} bytes, over {MAX_RECORD_BYTES}")
    return raw


def verify_record(raw: bytes, name: CID | str, now: datetime | None = None) -> Record:
    """``raw`` checked as a record for ``name`` (IPIP-428); ``IpnsError`` when it is not."""
    name = parse_name(name) if isinstance(name, str) else name
    if len(raw) > MAX_RECORD_BYTES:
        raise IpnsError(f"the record has {len(raw)} bytes, over {MAX_RECORD_BYTES}")
    try:
        fields = _fields(raw)
    except (ValueError, IndexError) as exc:
        raise IpnsError(f"not an IPNS record: {exc}") from None
    signature, data = fields.get(8), fields.get(9)
    if not isinstance(signature, bytes) or not signature or not isinstance(data, bytes) or not data:
        raise IpnsError("the record has no V2 signature (V1-only records are refused)")
    record_key = fields.get(7)
    key = key_for_name(name, record_key if isinstance(record_key, bytes) else None)
    if not key.verify(signature, SIGNATURE_PREFIX + data):
        raise IpnsError(f"the V2 signature does not match the record's data ({key.type_name} key)")
    try:
        signed = dag_cbor.decode(data)
    except Exception as exc:
        raise IpnsError(f"the record's data is not DAG-CBOR: {exc}") from None
    if not isinstance(signed, dict):
        raise IpnsError("the record's data is not a map")
    value, validity = signed.get("Value"), signed.get("Validity")
    sequence, ttl = signed.get("Sequence", 0), signed.get("TTL", 0)
    if not isinstance(value, bytes) or not isinstance(validity, bytes):
        raise IpnsError("the record's data lacks Value or Validity")
    for field, number in (("Sequence", sequence), ("TTL", ttl)):
        if type(number) is not int or not 0 <= number < _UINT64:
            raise IpnsError(f"the record's {field} {_shown(str(number))} is not a uint64")
    if 2 in fields or 1 in fields:  # legacy copies must repeat the signed data
        legacy = {1: value, 4: validity, 3: signed.get("ValidityType"), 5: sequence, 6: ttl}
        for number, expected in legacy.items():
            if fields.get(number, 0 if number in (3, 5, 6) else None) != expected:
                raise IpnsError("the record's V1 fields disagree with its signed V2 data")
    if signed.get("ValidityType") != EOL:
        raise IpnsError("unknown validity type")
    until = _parse_time(validity)
    if until <= (now or datetime.now(UTC)):
        raise IpnsError(f"the record expired on {until:%Y-%m-%d %H:%M} UTC")
    return Record(name, _content_path(value), sequence, until, ttl, raw, 2 in fields)


def _content_path(value: bytes) -> str:
    """A record's value, which must be an ``/ipfs/CID[/path]`` or an ``/ipns/NAME[/path]``
    path: anything else, however well signed, is refused rather than passed on."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        raise IpnsError(f"the record's value {_shown(value)} is not text") from None
    if text.startswith("/ipfs/"):
        try:
            parse_cid(text)
        except ValueError as exc:
            raise IpnsError(f"the record's value is not a content path: {exc}") from None
    elif not (text.startswith("/ipns/") and text[6:].split("/")[0]):
        raise IpnsError(f"the record's value {_shown(text)} is not an /ipfs/ or /ipns/ path")
    return text


def inspect_record(raw: bytes) -> dict[str, object]:
    """What a record says, unchecked (for ``howto name inspect``): its fields by name,
    ``data`` decoded when it is DAG-CBOR."""
    fields = _fields(raw)
    names = {1: "Value", 2: "SignatureV1", 3: "ValidityType", 4: "Validity", 5: "Sequence"}
    names.update({6: "TTL", 7: "PublicKey", 8: "SignatureV2", 9: "Data"})
    shown: dict[str, object] = {names.get(n, f"field {n}"): v for n, v in sorted(fields.items())}
    if isinstance(fields.get(9), bytes):
        try:
            shown["Data"] = dag_cbor.decode(fields[9])
        except Exception:
            pass
    return shown


def best(records: Iterable[Record]) -> Record | None:
    """The newest of valid records for one name: the highest sequence (then the latest
    validity), as the IPNS spec orders them."""
    return max(records, key=lambda r: (r.sequence, r.validity), default=None)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


def parse_duration(text: str) -> timedelta:
    """A Go-style duration, as kubo's ``--lifetime`` takes it: ``24h``, ``90m``, ``1h30m``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 24h, 30m or 1h30m)")
    seconds = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return timedelta(seconds=sum(float(n) * seconds[u] for n, u in parts))


def resolve(name: CID | str, chain: object = None, records: RecordStore | None = None) -> Record:
    """The newest valid record for ``name``: the one kept locally, and those that the
    chain's gateways hold (``format=ipns-record``), each verified; ``NotFoundError`` when
    none can be had, ``IpnsError`` when the only ones found are invalid."""
    name = parse_name(name) if isinstance(name, str) else name
    records = records if records is not None else RecordStore()
    found: list[Record] = []
    failures: list[str] = []
    refused = False
    try:
        found.append(records.get(name))
    except NotFoundError:
        pass
    except IpnsError as exc:
        failures.append(f"local record: {exc}")
        refused = True
    for source in getattr(chain, "remote", []):
        fetch = getattr(source, "ipns_record", None)
        if fetch is None:
            continue
        try:
            found.append(verify_record(fetch(name_text(name)), name))
        except IpnsError as exc:
            failures.append(f"{source}: {exc}")
            refused = True
        except HowtoError as exc:  # not found, unreachable: the next source may have it
            failures.append(f"{source}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    newest = best(found)
    if newest is not None:
        return newest
    said = "; ".join(failures) or "no record held here and no gateway to ask"
    if refused:
        raise IpnsError(f"no valid record for /ipns/{name_text(name)}: {said}")
    raise NotFoundError(f"no record for /ipns/{name_text(name)}: {said}")


@dataclass(frozen=True)
class Resolved:
    """Where an ``/ipns/`` path leads: the ``/ipfs/`` path at the end of its chain of
    names, the shortest TTL met on the way (nanoseconds; 0 when none said), and the
    verified records followed, first to last."""

    path: str
    ttl: int
    records: tuple[Record, ...]


def resolve_path(
    path: CID | str,
    chain: object = None,
    records: RecordStore | None = None,
    depth: int = MAX_DEPTH,
) -> Resolved:
    """``/ipns/NAME[/path]`` (or a bare name) followed through the newest valid record of
    each name (see ``resolve``) until it reaches ``/ipfs/`` content, as kubo does: through
    at most ``depth`` names, and never through one name twice (a loop is an
    ``IpnsError`` that names it)."""
    text = name_text(path) if isinstance(path, CID) else path.strip()
    head, _, rest = text.removeprefix("ipns://").removeprefix("/ipns/").partition("/")
    names: list[CID] = []
    found: list[Record] = []
    ttl = 0
    while True:
        try:
            name = parse_name(head)
        except IpnsError as exc:
            if not found:
                raise
            raise IpnsError(
                f"/ipns/{name_text(found[-1].name)} points at {_shown(found[-1].value)}, "
                f"which howto cannot follow: {exc}"
            ) from None
        if name in names:
            loop = names[names.index(name) :] + [name]
            raise IpnsError(f"the /ipns/ names point at each other in a loop: {_chain(loop)}")
        if len(names) == depth:
            raise IpnsError(
                f"/ipns/{name_text(names[0])} leads through more than {depth} names "
                f"(the most kubo follows): {_chain(names + [name])}"
            )
        names.append(name)
        record = resolve(name, chain, records)
        found.append(record)
        ttl = min(ttl, record.ttl) if ttl and record.ttl else ttl or record.ttl
        joined = "/".join(filter(None, [record.value.rstrip("/"), rest.strip("/")]))
        if joined.startswith("/ipfs/"):
            return Resolved(joined, ttl, tuple(found))
        head, _, rest = joined.removeprefix("/ipns/").partition("/")


def _chain(names: list[CID]) -> str:
    """Names in order, for an error line (the middle left out of a long chain)."""
    shown = [f"/ipns/{name_text(name)}" for name in names]
    if len(shown) > 4:
        shown[2:-1] = [f"({len(shown) - 3} more)"]
    return " -> ".join(shown)


# --- where keys and records live ----------------------------------------------------------


_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class KeyStore:
    """Private keys by name, readable by their owner only: in ``location``, else in
    ``<repo_path>/keys``, else where ``keys_location()`` says (this machine, not a bucket,
    unless ``$HOWTO_KEYS`` names one)."""

    def __init__(
        self, repo_path: str | os.PathLike | None = None, location: str | None = None
    ) -> None:
        if location is None:
            location = keys_location() if repo_path is None else str(Path(repo_path) / "keys")
        self.shelf = Shelf(location, private=True)
        self.path = self.shelf.path  # the folder, for keys kept on disk (None in a bucket)

    def __str__(self) -> str:
        return f"keys in {self.shelf}"

    def _checked(self, name: str) -> str:
        if not _KEY_NAME.fullmatch(name):
            raise ValueError(f"invalid key name {name!r}: letters, digits, '.', '_', '-'")
        return name

    def generate(self, name: str) -> CID:
        """Make and keep a new ed25519 key; its IPNS name.  (``self`` is the key that
        ``howto name publish`` uses when given none, made on first use.)"""
        name = self._checked(name)
        key = Ed25519PrivateKey.generate()
        try:
            self.shelf.write(name, key.private_bytes_raw(), exclusive=True)
        except FileExistsError:
            raise FileExistsError(f"key {name!r} already exists") from None
        return name_of(key)

    def load_or_generate(self, name: str) -> Ed25519PrivateKey:
        """The key ``name``, made first when it does not exist (as kubo's ``self``)."""
        if not self.shelf.exists(self._checked(name)):
            try:
                self.generate(name)
            except FileExistsError:  # another process made it meanwhile
                pass
        return self.load(name)

    def load(self, name: str) -> Ed25519PrivateKey:
        try:
            seed = self.shelf.read(self._checked(name))
        except FileNotFoundError:
            raise NotFoundError(f"no key named {name!r} (make one with 'howto key gen')") from None
        return Ed25519PrivateKey.from_private_bytes(seed)

    def names(self) -> dict[str, CID]:
        """Every key's name and IPNS name."""
        return {key: name_of(self.load(key)) for key in self.shelf.names()}


class RecordStore:
    """The newest record known for each name, in ``<repository>/ipns``: the folder
    ``repo_path``, else the repository ``$HOWTO_REPO`` names (a folder or a bucket).

    Records are kept as received and checked again on every read: a file changed on disk
    (or an object in the bucket) is refused like any forged record.
    """

    def __init__(
        self, repo_path: str | os.PathLike | None = None, location: str | None = None
    ) -> None:
        if location is None:
            location = records_location() if repo_path is None else str(Path(repo_path) / "ipns")
        self.shelf = Shelf(location)
        self.path = self.shelf.path  # the folder, for records kept on disk (None in a bucket)

    def __str__(self) -> str:
        return f"records in {self.shelf}"

    @staticmethod
    def _name(name: CID) -> str:
        return f"{name_text(name)}.ipns-record"

    def file(self, name: CID) -> Path:
        """The record's file, for records kept in a folder."""
        if self.path is None:
            raise ValueError(f"the {self} are objects in a bucket, not files")
        return self.path / self._name(name)

    def raw(self, name: CID) -> bytes:
        """The stored record's bytes (unchecked); ``NotFoundError`` when there is none."""
        try:
            return self.shelf.read(self._name(name))
        except FileNotFoundError:
            raise NotFoundError(f"no record for /ipns/{name_text(name)}") from None

    def get(self, name: CID) -> Record:
        """The stored record, verified."""
        return verify_record(self.raw(name), name)

    def put(self, raw: bytes, name: CID) -> Record:
        """Keep ``raw`` when it is a valid record for ``name`` and newer than the one held;
        an older or equal sequence is refused (``IpnsError``)."""
        record = verify_record(raw, name)
        try:
            held = self.get(name)
        except (NotFoundError, IpnsError):
            held = None
        if held is not None and held.raw != raw and best([held, record]) is held:
            raise IpnsError(
                f"a newer record (sequence {held.sequence}) is already held for "
                f"/ipns/{name_text(name)}"
            )
        self.shelf.write(self._name(name), raw)
        return record
