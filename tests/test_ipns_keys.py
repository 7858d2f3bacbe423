"""IPNS keys of every libp2p type, names that must match their keys, and records whose
fields are malformed, checked against the peer ID spec (its key test vectors) and the
IPNS record spec.

Records are built here: with ``create_record`` when they are well formed, and by hand
(``signed``: DAG-CBOR data, protobuf fields, a real signature) when a test needs a field
that ``create_record`` would never write.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dag_cbor
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
)
from multiformats import CID, multihash

from howto.errors import IpnsError
from howto.formats.dagpb import varint
from howto.names.ipns import (
    RecordStore,
    create_record,
    inspect_record,
    name_of,
    name_text,
    parse_name,
    verify_record,
)
from howto.names.keys import decode_public_key, key_for_name, public_key, sign

VECTORS = json.loads((Path(__file__).parent / "conformance" / "peer-id-keys.json").read_text())
HOWTO = [sys.executable, "-m", "howto.cli"]
CONTENT = "/ipfs/bafkqaaa"


def protobuf(fields: list[tuple[int, bytes | int]]) -> bytes:
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += varint(number << 3) + varint(value)
        else:
            out += varint(number << 3 | 2) + varint(len(value)) + value
    return bytes(out)


def data(**changes: object) -> dict:
    """A record's signed data, valid for an hour, with ``changes``."""
    validity = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"Value": CONTENT.encode(), "Validity": validity.encode(), "ValidityType": 0}
    fields |= {"Sequence": 1, "TTL": 60 * 10**9}
    return fields | changes


def signed(key, signed_data: dict, key_field: bytes | None = None) -> bytes:
    """A V2 record of ``signed_data`` signed by ``key`` (with ``key_field`` as field 7)."""
    encoded = dag_cbor.encode(signed_data)
    fields: list[tuple[int, bytes | int]] = [] if key_field is None else [(7, key_field)]
    fields += [(8, sign(key, b"ipns-signature:" + encoded)), (9, encoded)]
    return protobuf(fields)


def sha256_name(proto: bytes) -> CID:
    return CID("base36", 1, 0x72, multihash.digest(proto, "sha2-256"))


def identity_name(proto: bytes) -> CID:
    return CID("base36", 1, 0x72, multihash.digest(proto, "identity"))


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {
        "ed25519": Ed25519PrivateKey.generate(),
        "rsa-2048": rsa.generate_private_key(65537, 2048),
        "rsa-4096": rsa.generate_private_key(65537, 4096),
        "secp256k1": ec.generate_private_key(ec.SECP256K1()),
        "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
    }


# --- the peer ID spec's key vectors ----------------------------------------------------------


@pytest.mark.parametrize(
    "kind, inlined", [("ed25519", True), ("secp256k1", True), ("ecdsa", False), ("rsa", False)]
)
def test_spec_public_keys_decode_and_are_named_as_the_spec_says(kind, inlined):
    proto = bytes.fromhex(VECTORS[f"{kind}-public"])
    key = decode_public_key(proto)
    assert key.protobuf == proto and key.type_name.lower() == kind
    name = key.name()
    assert name.hashfun.name == ("identity" if inlined else "sha2-256")
    assert key_for_name(name, None if inlined else proto) == key
    assert parse_name(name_text(name)) == name


@pytest.mark.parametrize(
    "kind, load",
    [
        ("ed25519", lambda data: Ed25519PrivateKey.from_private_bytes(data[:32])),
        ("secp256k1", lambda data: ec.derive_private_key(int.from_bytes(data), ec.SECP256K1())),
        ("ecdsa", lambda data: load_der_private_key(data, None)),
    ],
)
def test_spec_private_keys_give_the_spec_public_keys(kind, load):
    private = bytes.fromhex(VECTORS[f"{kind}-private"])
    assert private[3] == len(private) - 4  # type, then one length byte
    key = load(private[4:])
    assert public_key(key).protobuf == bytes.fromhex(VECTORS[f"{kind}-public"])


# --- records signed with each key type --------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "rsa-2048", "rsa-4096", "secp256k1", "ecdsa-p256"])
def test_records_of_every_key_type_verify(keys, kind):
    key = keys[kind]
    name = name_text(name_of(key))
    raw = create_record(key, CONTENT, 4)
    record = verify_record(raw, name)
    assert (record.value, record.sequence) == (CONTENT, 4)
    carries_key = "PublicKey" in inspect_record(raw)
    assert carries_key == kind.startswith(("rsa", "ecdsa"))  # too long to inline
    assert name.startswith("k51" if kind == "ed25519" else "k2k4r8" if carries_key else "k")
    other = {"ed25519": "rsa-2048"}.get(kind, "ed25519")
    for forged in (
        create_record(keys[other], CONTENT, 4),  # signed by another key
        raw.replace(b"bafkqaaa", b"bafkqaba"),  # the value changed after signing
    ):
        with pytest.raises(IpnsError):
            verify_record(forged, name)


@pytest.mark.parametrize("bits", [1024, 4160])
def test_rsa_keys_outside_2048_to_4096_bits_are_refused(bits):
    key = rsa.generate_private_key(65537, bits)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    proto = protobuf([(1, 0), (2, der)])  # built by hand: public_key() refuses it too
    with pytest.raises(IpnsError, match=f"RSA keys of {bits} bits are refused") as refused:
        verify_record(signed(key, data(), proto), sha256_name(proto))
    assert "\n" not in str(refused.value) and "2048 to 4096" in str(refused.value)


# --- a name must be the one its key has ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "secp256k1"])
def test_short_keys_are_named_only_by_inlining_them(keys, kind):
    key = keys[kind]
    proto = public_key(key).protobuf
    with pytest.raises(IpnsError, match="named by inlining it") as refused:
        verify_record(signed(key, data(), proto), sha256_name(proto))
    assert "\n" not in str(refused.value)
    assert verify_record(signed(key, data()), identity_name(proto)).value == CONTENT


def test_rsa_keys_are_never_inlined(keys):
    proto = public_key(keys["rsa-2048"]).protobuf
    with pytest.raises(IpnsError, match="not an IPNS name"):  # longer than any inlined key
        parse_name(name_text(identity_name(proto)))
    with pytest.raises(IpnsError, match="named by its sha2-256"):
        key_for_name(identity_name(proto), None)


def test_records_whose_key_is_not_their_names_are_refused(keys):
    rsa_key, other = keys["rsa-2048"], keys["rsa-4096"]
    name = name_of(rsa_key)
    cases = {
        "does not hash to the name": signed(other, data(), public_key(other).protobuf),
        "does not include it": signed(rsa_key, data()),  # a hashed key must travel along
    }
    for message, raw in cases.items():
        with pytest.raises(IpnsError, match=message):
            verify_record(raw, name)
    ed, ed_other = keys["ed25519"], Ed25519PrivateKey.generate()
    with pytest.raises(IpnsError, match="not the one inlined"):
        verify_record(signed(ed, data(), public_key(ed_other).protobuf), name_of(ed))


def test_ecdsa_keys_as_js_libp2p_writes_them(keys):
    """js-libp2p's ECDSA form: the key as an ECPrivateKey structure without its private
    part, named by the identity multihash, signatures as r || s (built here by hand)."""
    key = keys["ecdsa-p256"]
    point = key.public_key().public_numbers()
    coordinates = point.x.to_bytes(32) + point.y.to_bytes(32)
    js_key = bytes.fromhex("3055020101a00a06082a8648ce3d030107a14403420004") + coordinates
    proto = protobuf([(1, 3), (2, js_key)])
    encoded = dag_cbor.encode(data())
    r, s = decode_dss_signature(key.sign(b"ipns-signature:" + encoded, ec.ECDSA(SHA256())))
    raw = protobuf([(8, r.to_bytes(32) + s.to_bytes(32)), (9, encoded)])
    name = identity_name(proto)
    assert verify_record(raw, name_text(name)).value == CONTENT
    with pytest.raises(IpnsError, match="signature"):
        verify_record(raw.replace(encoded, dag_cbor.encode(data(Sequence=2))), name)


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"hello, not a path", b"https://example.org/", b"/ipfs/notacid", b"/ipns/", b"\xff"]
)
def test_signed_values_that_are_not_content_paths_are_refused(keys, value):
    key = keys["ed25519"]
    with pytest.raises(IpnsError, match="value") as refused:
        verify_record(signed(key, data(Value=value)), name_of(key))
    assert "\n" not in str(refused.value)


def test_ipfs_and_ipns_paths_are_values(keys):
    key = keys["ed25519"]
    for value in (f"{CONTENT}/a/b", f"/ipns/{name_text(name_of(keys['secp256k1']))}/c"):
        assert verify_record(signed(key, data(Value=value.encode())), name_of(key)).value == value


def test_name_resolve_prints_no_value_that_is_not_a_path(keys, howto_repo, tmp_path):
    key = keys["ed25519"]
    name = name_of(key)
    raw = signed(key, data(Value=b"hello, not a path"))
    (tmp_path / "record").write_bytes(raw)
    put = subprocess.run(
        [*HOWTO, "routing", "put", f"/ipns/{name_text(name)}", tmp_path / "record"],
        capture_output=True,
        timeout=120,
    )
    assert put.returncode == 1 and b"not an /ipfs/ or /ipns/ path" in put.stderr
    records = RecordStore()
    records.path.mkdir(parents=True, exist_ok=True)
    records.file(name).write_bytes(raw)  # as if it had arrived by other means
    resolved = subprocess.run(
        [*HOWTO, "--offline", "name", "resolve", name_text(name)], capture_output=True, timeout=120
    )
    assert resolved.returncode == 1 and resolved.stdout == b""
    assert resolved.stderr.decode().count("\n") == 1
    assert b"not an /ipfs/ or /ipns/ path" in resolved.stderr


# --- malformed fields: one-line errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"Validity": b"2099-01-01T00:00:00+25:00"}, "no time zone is 25:00 hours from UTC"),
        ({"Validity": b"2099-01-01T00:00:00-03:75"}, "no time zone is 03:75"),
        ({"Validity": b"2099-13-01T00:00:00Z"}, "month must be in 1..12"),
        ({"Validity": b"2099-02-30T00:00:00Z"}, "day is out of range"),
        ({"Validity": b"next tuesday"}, "not an RFC 3339 time"),
        ({"Sequence": "seven"}, "Sequence 'seven' is not a uint64"),
        ({"Sequence": True}, "Sequence"),
        ({"Sequence": -1}, "Sequence"),
        ({"Sequence": 1.5}, "Sequence"),
        ({"TTL": -1}, "TTL"),
    ],
)
def test_malformed_fields_are_one_line_errors(keys, changes, message):
    key = keys["ed25519"]
    with pytest.raises(IpnsError, match=message) as refused:
        verify_record(signed(key, data(**changes)), name_of(key))
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


def test_a_3265_character_name_is_refused_in_one_line(keys, howto_repo, tmp_path):
    name = name_text(identity_name(b"\x08\x01\x12" + b"x" * 2110))
    assert len(name) >= 3265
    with pytest.raises(IpnsError, match="not an IPNS name") as refused:
        parse_name(name)
    assert len(str(refused.value)) < 300
    record = tmp_path / "r.ipns-record"
    record.write_bytes(create_record(keys["ed25519"], CONTENT, 1))
    for args in (["name", "resolve", name], ["routing", "put", f"/ipns/{name}", record]):
        done = subprocess.run(
            [*HOWTO, "--offline", *map(str, args)], capture_output=True, timeout=120
        )
        assert done.returncode != 0 and done.stderr.decode().count("\n") == 1, done.stderr
        assert b"not an IPNS name" in done.stderr and len(done.stderr) < 400
        assert b"File name too long" not in done.stderr


def test_secp256k1_signatures_are_in_low_s_form():
    """libp2p's secp256k1 verifiers accept only signatures whose S lies in the lower half
    of the group order; half of all signatures come out high unless they are normalised."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from howto.names.keys import sign

    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # SEC 2
    key = ec.generate_private_key(ec.SECP256K1())
    for i in range(40):
        message = f"record {i}".encode()
        signature = sign(key, message)
        assert decode_dss_signature(signature)[1] <= order // 2
        key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
