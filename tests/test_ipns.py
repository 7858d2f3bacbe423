"""IPNS: records, keys and names, checked against the IPNS record spec and IPIP-428.

Records are made here with fresh keys and checked by ``howto.ipns``; the spec's own test
vectors (copied from the gateway conformance suite into tests/conformance/ipns) have known
verdicts.  The command line runs as a subprocess, gateways on 127.0.0.1.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import howto.fs
from howto.blocks.repo import Repo
from howto.errors import IpnsError, NotFoundError
from howto.gateway import serve
from howto.names.ipns import (
    MAX_DEPTH,
    KeyStore,
    RecordStore,
    create_record,
    name_of,
    name_text,
    parse_duration,
    parse_name,
    resolve,
    resolve_path,
    verify_record,
)
from howto.retrieval.sources import default_chain
from howto.unixfs.add import add

VECTORS = Path(__file__).parent / "conformance" / "ipns"
HOWTO = [sys.executable, "-m", "howto.cli"]
EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"

# The spec's test vectors (IPNS record spec, "Test Vectors"): file suffix → the value a
# valid record points at, or None for a record that must be refused.
VERDICTS = {
    "v1": None,
    "v1-v2": "/ipfs/bafkqaddwgevxmmraojswg33smq",
    "v1-v2-broken-v1-value": None,
    "v1-v2-broken-signature-v2": None,
    "v1-v2-broken-signature-v1": "/ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi",
    "v2": "/ipfs/bafkqadtwgiww63tmpeqhezldn5zgi",
}


def vector(kind: str) -> tuple[str, bytes]:
    (path,) = VECTORS.glob(f"*_{kind}.ipns-record")
    return path.stem.partition("_")[0], path.read_bytes()


@pytest.mark.parametrize("kind", sorted(VERDICTS))
def test_spec_vectors(kind):
    name, raw = vector(kind)
    if VERDICTS[kind] is None:
        with pytest.raises(IpnsError):
            verify_record(raw, name)
    else:
        assert verify_record(raw, name).value == VERDICTS[kind]


def test_a_record_made_here_verifies_with_and_without_v1():
    key = Ed25519PrivateKey.generate()
    name = name_of(key)
    assert name_text(name).startswith("k51")
    for v1 in (True, False):
        record = verify_record(create_record(key, "/ipfs/bafkqaaa", 7, v1=v1), name_text(name))
        assert (record.value, record.sequence, record.has_v1) == ("/ipfs/bafkqaaa", 7, v1)


def test_forged_records_are_refused():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    name = name_of(key)
    raw = create_record(key, "/ipfs/bafkqaaa", 1)
    with pytest.raises(IpnsError, match="signature"):  # signed by someone else
        verify_record(create_record(other, "/ipfs/bafkqaaa", 1), name)
    tampered = raw.replace(b"bafkqaaa", b"bafkqaab")  # the value changed in both copies
    with pytest.raises(IpnsError):
        verify_record(tampered, name)
    with pytest.raises(IpnsError, match="expired"):
        old = create_record(key, "/ipfs/bafkqaaa", 1, now=datetime.now(UTC) - timedelta(days=3))
        verify_record(old, name)
    with pytest.raises(IpnsError):
        verify_record(b"\xff" * 20, name)
    with pytest.raises(IpnsError, match="over"):
        verify_record(raw + b"\0" * 11000, name)


def test_names_in_every_spelling():
    name = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"
    assert name_text(parse_name("12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK")) == name
    assert name_text(parse_name(f"/ipns/{name}/a/b")) == name
    with pytest.raises(IpnsError):
        parse_name("bafkqaaa")  # a content CID, not a key
    assert parse_duration("1h30m") == timedelta(minutes=90)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_keys_stay_private_and_higher_sequences_win(tmp_path):
    keys = KeyStore(tmp_path)
    name = keys.generate("demo")
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "demo").st_mode) == 0o600
    assert name_of(keys.load("demo")) == name and keys.names() == {"demo": name}
    with pytest.raises(FileExistsError):
        keys.generate("demo")
    with pytest.raises(ValueError):
        keys.generate("../escape")
    records = RecordStore(tmp_path)
    key = keys.load("demo")
    records.put(create_record(key, "/ipfs/bafkqaaa", 2), name)
    with pytest.raises(IpnsError, match="newer"):
        records.put(create_record(key, "/ipfs/bafkqaalc", 1), name)
    records.put(create_record(key, "/ipfs/bafkqaald", 3), name)
    assert records.get(name).value == "/ipfs/bafkqaald"
    records.file(name).write_bytes(records.raw(name)[:-1])  # damaged on disk
    with pytest.raises(IpnsError):
        records.get(name)


def howto_cli(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HOWTO, *map(str, args)], capture_output=True, env=env, timeout=120)


def test_kubo_verbs(tmp_path, howto_repo):
    made = howto_cli("key", "gen", "catalog")
    assert made.returncode == 0, made.stderr
    name = made.stdout.decode().strip()
    assert not howto_cli("key", "gen", "catalog").returncode == 0
    listed = howto_cli("key", "list", "-l").stdout.decode()
    assert f"{name} catalog" in listed
    published = howto_cli(
        "name", "publish", "--key", "catalog", "--lifetime", "2h", "/ipfs/bafkqaaa"
    )
    assert published.stdout.decode() == f"Published to {name}: /ipfs/bafkqaaa\n"
    again = howto_cli("name", "publish", "-k", "catalog", EMPTY_RAW)
    assert again.returncode == 0, again.stderr
    resolved = howto_cli("--offline", "name", "resolve", name)
    assert resolved.stdout.decode() == f"/ipfs/{EMPTY_RAW}\n"
    record_file = howto_repo / "ipns" / f"{name}.ipns-record"
    inspected = howto_cli("name", "inspect", "--verify", name, record_file)
    assert inspected.returncode == 0 and "Sequence: 1" in inspected.stdout.decode()
    v1_name, _ = vector("v1")
    v1_file = next(VECTORS.glob("*_v1.ipns-record"))
    refused = howto_cli("name", "inspect", "--verify", v1_name, v1_file)
    assert refused.returncode == 1 and "no V2 signature" in refused.stdout.decode()
    refused = howto_cli("routing", "put", f"/ipns/{v1_name}", v1_file)
    assert refused.returncode == 1
    assert refused.stderr.decode().count("\n") == 1  # one line, no traceback
    v2_name, _ = vector("v2")
    put = howto_cli("routing", "put", f"/ipns/{v2_name}", next(VECTORS.glob("*_v2.ipns-record")))
    assert put.returncode == 0
    assert howto_cli("name", "resolve", v2_name).stdout.decode() == VERDICTS["v2"] + "\n"
    assert b"not a CID" in howto_cli("name", "publish", "/ipns/elsewhere").stderr


def test_cat_and_ls_take_ipns_paths(tmp_path, howto_repo):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"named content\n")
    root = add(folder, repo=Repo(howto_repo), cid_version=1, raw_leaves=True)
    name = howto_cli("name", "publish", "-Q", f"/ipfs/{root}").stdout.decode().strip()
    cat = howto_cli("--offline", "cat", f"/ipns/{name}/a.txt")
    assert (cat.returncode, cat.stdout) == (0, b"named content\n"), cat.stderr
    listed = howto_cli("--offline", "ls", f"ipns://{name}").stdout.decode()
    assert listed.endswith(" a.txt\n")
    missing = howto_cli(
        "--offline", "cat", f"/ipns/{name_text(name_of(Ed25519PrivateKey.generate()))}"
    )
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1


def test_ipns_urls_resolve_through_a_gateway(tmp_path, howto_repo, monkeypatch):
    """A reader with an empty repository: the record and the blocks come from a gateway,
    each checked; a forged record there is refused."""
    publisher = tmp_path / "publisher"
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "data.txt").write_bytes(b"version one\n")
    repo = Repo(publisher)
    root = add(folder, repo=repo, cid_version=1, raw_leaves=True)
    key = KeyStore(publisher).load_or_generate("catalog")
    name = name_of(key)
    RecordStore(publisher).put(create_record(key, f"/ipfs/{root}", 0), name)
    with serve(repo) as url:
        record = resolve(name, default_chain(gateways=[url]))
        assert record.value == f"/ipfs/{root}"
        howto.fs.enable()
        fs = howto.fs.VerifiedIPNSFileSystem(gateway_addr=url)
        assert fs.cat(f"ipns://{name_text(name)}/data.txt") == b"version one\n"
        assert fs.ls(f"{name_text(name)}", detail=False) == [f"{name_text(name)}/data.txt"]
        # A forged record on the gateway: sent as stored (like a raw block), refused by
        # the reader, and never served as content by the gateway itself.
        forged = create_record(Ed25519PrivateKey.generate(), "/ipfs/bafkqaaa", 9)
        RecordStore(publisher).file(name).write_bytes(forged)
        with pytest.raises(IpnsError, match="signature"):
            resolve(name, default_chain(gateways=[url]))
        fresh = howto.fs.VerifiedIPNSFileSystem(gateway_addr=url, skip_instance_cache=True)
        with pytest.raises(IpnsError):
            fresh.cat(f"ipns://{name_text(name)}/data.txt")
    with pytest.raises(NotFoundError):
        resolve(name, default_chain(offline=True))


# --- /ipns/ -> /ipns/ chains ------------------------------------------------------------------


def publish_chain(records: RecordStore, values: list[str], ttl_minutes: list[int] | None = None):
    """One fresh name per value, each name's record pointing at its value; a value may
    name another of the chain as ``{i}`` (the i-th name).  Returns the names."""
    keys = [Ed25519PrivateKey.generate() for _ in values]
    names = [name_text(name_of(key)) for key in keys]
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        ttl = timedelta(minutes=(ttl_minutes or [60] * len(values))[i])
        raw = create_record(key, value.format(*names), 0, ttl=ttl)
        records.put(raw, name_of(key))
    return names


def test_ipns_chains_are_followed_with_their_paths_and_shortest_ttl(tmp_path):
    folder = tmp_path / "site"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_bytes(b"at the end of the chain\n")
    root = add(folder, cid_version=1, raw_leaves=True)
    records = RecordStore()
    names = publish_chain(records, ["/ipns/{1}/sub", f"/ipfs/{root}"], ttl_minutes=[60, 5])
    resolved = resolve_path(f"/ipns/{names[0]}/a.txt", records=records)
    assert resolved.path == f"/ipfs/{root}/sub/a.txt"
    assert resolved.ttl == 5 * 60 * 10**9
    assert [name_text(r.name) for r in resolved.records] == names
    assert resolve(names[0], records=records).value == f"/ipns/{names[1]}/sub"  # one step
    printed = howto_cli("--offline", "name", "resolve", names[0])
    assert printed.stdout.decode() == f"/ipfs/{root}/sub\n", printed.stderr
    cat = howto_cli("--offline", "cat", f"/ipns/{names[0]}/a.txt")
    assert (cat.returncode, cat.stdout) == (0, b"at the end of the chain\n"), cat.stderr


def test_ipns_chains_end_at_kubos_depth():
    records = RecordStore()
    values = [f"/ipns/{{{i + 1}}}" for i in range(MAX_DEPTH)] + [f"/ipfs/{EMPTY_RAW}"]
    names = publish_chain(records, values)
    assert MAX_DEPTH == 32 and len(names) == 33
    assert resolve_path(names[1], records=records).path == f"/ipfs/{EMPTY_RAW}"  # 32 names
    with pytest.raises(IpnsError, match="more than 32 names") as refused:
        resolve_path(names[0], records=records)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 500


def test_ipns_loops_are_refused_and_named():
    records = RecordStore()
    a, b = publish_chain(records, ["/ipns/{1}/x", "/ipns/{0}/y"])
    (itself,) = publish_chain(records, ["/ipns/{0}"])
    for start, loop in ((a, f"/ipns/{a} -> /ipns/{b} -> /ipns/{a}"), (itself, f"/ipns/{itself}")):
        with pytest.raises(IpnsError, match="loop") as refused:
            resolve_path(start, records=records)
        assert loop in str(refused.value)
    refused = howto_cli("--offline", "cat", f"/ipns/{a}")
    assert refused.returncode == 1 and refused.stderr.decode().count("\n") == 1
    assert f"/ipns/{b}".encode() in refused.stderr and b"loop" in refused.stderr


def test_ipns_values_naming_no_key_are_not_followed():
    records = RecordStore()
    (name,) = publish_chain(records, ["/ipns/example.org/data"])  # DNSLink: not supported
    with pytest.raises(IpnsError, match="cannot follow"):
        resolve_path(name, records=records)


# --- where keys and records live --------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    from howto.s3server import local_s3

    with local_s3() as server:
        yield server


def test_records_follow_a_bucket_repository_and_keys_stay_on_this_machine(
    tmp_path, s3, monkeypatch
):
    """With ``$HOWTO_REPO`` a bucket, a published record lands in the bucket (any reader of
    the repository finds it) and the key stays in this machine's cache folder: the bucket
    holds no key unless ``$HOWTO_KEYS`` names a bucket."""
    import uuid

    from howto.blocks.bucket import BucketRepo, StorageError

    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3.make_bucket(bucket)
    env = {**os.environ, **s3.environ, "HOWTO_REPO": f"s3://{bucket}/repo"}
    env.pop("HOWTO_KEYS", None)
    publisher = {**env, "XDG_CACHE_HOME": str(tmp_path / "publisher-cache")}
    made = howto_cli("key", "gen", "site", env=publisher)
    assert made.returncode == 0, made.stderr
    name = made.stdout.decode().strip()
    key_file = tmp_path / "publisher-cache" / "howto" / "repo" / "keys" / "site"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    published = howto_cli("name", "publish", "-k", "site", f"/ipfs/{EMPTY_RAW}", env=publisher)
    assert published.returncode == 0, published.stderr
    for name_, value in s3.environ.items():
        monkeypatch.setenv(name_, value)
    fs = BucketRepo(f"s3://{bucket}").fs
    assert fs.find(bucket) == [f"{bucket}/repo/ipns/{name}.ipns-record"]  # no key there
    # another machine (another cache folder, no key) resolves the name from the bucket
    reader = {**env, "XDG_CACHE_HOME": str(tmp_path / "reader-cache")}
    resolved = howto_cli("--offline", "name", "resolve", name, env=reader)
    assert resolved.stdout.decode() == f"/ipfs/{EMPTY_RAW}\n", resolved.stderr
    assert howto_cli("key", "list", env=reader).stdout == b""
    # asked for explicitly, keys go to a bucket too
    asked = {**publisher, "HOWTO_KEYS": f"s3://{bucket}/keys"}
    assert howto_cli("key", "gen", "shared", env=asked).returncode == 0
    fs.invalidate_cache()
    assert f"{bucket}/keys/shared" in fs.find(bucket)
    assert howto_cli("key", "list", env=asked).stdout == b"shared\n"
    # and a folder named by $HOWTO_KEYS holds them when given
    folder = {**publisher, "HOWTO_KEYS": str(tmp_path / "my-keys")}
    assert howto_cli("key", "gen", "here", env=folder).returncode == 0
    assert (tmp_path / "my-keys" / "here").is_file()
    # a bucket that does not exist is an error, for records as for blocks
    missing = RecordStore(location=f"s3://{bucket}-missing/repo/ipns")
    with pytest.raises(StorageError, match="no bucket"):
        missing.get(parse_name(name))
