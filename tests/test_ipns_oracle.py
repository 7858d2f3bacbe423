"""IPNS against an independent implementation: js-ipns (npm ``ipns``, keys from
``@libp2p/crypto``, run by node from tests/.oracle) makes records with each key type and
howto validates them; js-ipns validates the records ``howto name publish`` makes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from howto.errors import IpnsError
from howto.names.ipns import (
    RecordStore,
    create_record,
    name_of,
    name_text,
    parse_name,
    verify_record,
)
from howto.names.keys import key_for_name

HOWTO = [sys.executable, "-m", "howto.cli"]
CONTENT = "/ipfs/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def node(script: Path, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(script), *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "key_type, name_hash",
    [
        ("Ed25519", "identity"),
        ("RSA", "sha2-256"),
        ("secp256k1", "identity"),
        ("ECDSA", "identity"),  # js-libp2p inlines its ECDSA keys
    ],
)
def test_howto_validates_records_js_ipns_makes(js_ipns, tmp_path, key_type, name_hash):
    record = tmp_path / f"{key_type}.ipns-record"
    made = node(js_ipns, "make", key_type, CONTENT, record)
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip()
    raw = record.read_bytes()
    checked = verify_record(raw, name)
    assert (checked.value, checked.sequence, checked.has_v1) == (CONTENT, 5, True)
    cid = parse_name(name)
    assert cid.hashfun.name == name_hash
    if name_hash == "identity":
        assert key_for_name(cid, None).type_name.lower() == key_type.lower()
    # Both sides refuse the same damaged copy: the value changed in both of its places.
    damaged = tmp_path / "damaged.ipns-record"
    damaged.write_bytes(raw.replace(b"bafkrei", b"bafkrej"))
    with pytest.raises(IpnsError):
        verify_record(damaged.read_bytes(), name)
    refused = node(js_ipns, "validate", name, damaged)
    assert refused.returncode == 1 and refused.stdout.startswith("invalid"), refused.stdout


def test_js_ipns_validates_records_howto_publishes(js_ipns):
    published = subprocess.run(
        [*HOWTO, "name", "publish", "-Q", CONTENT], capture_output=True, text=True, timeout=120
    )
    assert published.returncode == 0, published.stderr
    name = published.stdout.strip()
    record = RecordStore().file(parse_name(name))
    checked = node(js_ipns, "validate", name, record)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == f"valid {CONTENT}"
    # …and refuses it for another name.
    other = name_text(name_of(ec.generate_private_key(ec.SECP256K1())))
    assert node(js_ipns, "validate", other, record).returncode == 1


@pytest.mark.parametrize("which", ["RSA", "secp256k1"])
def test_js_ipns_validates_rsa_and_secp256k1_records_made_here(js_ipns, tmp_path, which):
    """RSA and secp256k1 keys are written the same way by both implementations (ECDSA is
    not: js-libp2p reads neither the PKIX key nor the DER signature the spec describes)."""
    if which == "RSA":
        key = rsa.generate_private_key(65537, 2048)
    else:
        key = ec.generate_private_key(ec.SECP256K1())
    record = tmp_path / "r.ipns-record"
    record.write_bytes(create_record(key, CONTENT, 2))
    checked = node(js_ipns, "validate", name_text(name_of(key)), record)
    assert checked.stdout.strip() == f"valid {CONTENT}", checked.stdout + checked.stderr
