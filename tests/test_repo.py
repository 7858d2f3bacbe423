"""The block repository through the Python API: add stores, reads verify, failures roll back."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
from pathlib import Path

import pytest
from kubo_vectors import keystream, random_names, write_tree
from multiformats import CID

import howto
from howto.blocks.repo import Repo
from howto.errors import IntegrityError, NotFoundError
from howto.formats.cids import to_cid
from howto.formats.dagpb import UnixFSType
from howto.retrieval.transfer import export_car, import_car
from howto.unixfs.add import add, add_paths
from howto.unixfs.importer import DEFAULT_CHUNK
from howto.unixfs.resolver import Resolver

# Published by kubo's sharness tests (t0040-add-and-cat).
HELLO_V0 = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"


def block_files(repo_path: Path) -> list[Path]:
    """Every block file the repository holds."""
    return sorted(p for p in (repo_path / "blocks").rglob("*") if p.is_file())


def staging_leftovers(repo_path: Path) -> list[Path]:
    """Anything left in the staging area once no transaction is running."""
    return sorted((repo_path / "staging").rglob("*"))


def sha256_key(block: bytes) -> str:
    """The repository's file name for a sha2-256 block, computed without howto."""
    multihash = b"\x12\x20" + hashlib.sha256(block).digest()
    return base64.b32encode(multihash).decode().rstrip("=").lower()


@pytest.fixture
def multi_chunk(tmp_path) -> tuple[Path, bytes]:
    data = keystream("multi-chunk", 3 * DEFAULT_CHUNK + 17)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_add_stores_every_block_and_cat_gives_the_bytes_back(multi_chunk, howto_repo):
    path, data = multi_chunk
    root = add(path)
    files = block_files(howto_repo)
    assert len(files) == 4 + 1  # four leaves, one parent
    for file in files:  # each block is filed under the sha256 of its own bytes
        assert file.name == sha256_key(file.read_bytes())
    resolver = Resolver(Repo())
    assert resolver.cat(root) == data
    start = DEFAULT_CHUNK - 5  # a range across the first chunk boundary
    assert b"".join(resolver.read(root, start, 10)) == data[start : start + 10]
    assert b"".join(resolver.read(root, len(data) - 3)) == data[-3:]


def test_python_api_returns_a_cid_and_takes_the_cli_options(tmp_path, howto_repo):
    path = tmp_path / "hello"
    path.write_text("hello world")
    root = howto.add(path, quiet=True)
    assert isinstance(root, CID)
    assert str(root) == HELLO_V0
    assert Resolver(Repo()).cat(root) == b"hello world"
    wrapped = howto.add([path], wrap_with_directory=True, quieter=True)
    listing = Resolver(Repo()).ls(wrapped)
    assert [(e.name, e.cid, e.size) for e in listing] == [("hello", root, 11)]


def test_only_hash_writes_nothing(multi_chunk, howto_repo):
    path, _ = multi_chunk
    root = add(path, only_hash=True)
    assert list(howto_repo.iterdir()) == []
    assert not Repo().has(root)
    with pytest.raises(NotFoundError):
        Repo().get(root)


def test_hamt_directory_entries_are_reachable(tmp_path, howto_repo):
    """4033 names of 31 characters push kubo's estimate over the threshold (see test_importer)."""
    names = random_names("repo-hamt", 4033, 31)
    root_dir = tmp_path / "many"
    root_dir.mkdir()
    for name in names:
        (root_dir / name).write_text(name * 2)  # every entry has its own content
    root = add(root_dir)
    resolver = Resolver(Repo())
    assert resolver.block(root).unixfs.type == UnixFSType.HAMT_SHARD
    for name in (names[0], names[2017], names[-1]):
        target = resolver.resolve(root, name)[-1]
        assert resolver.cat(target) == (name * 2).encode()
    with pytest.raises(NotFoundError):
        resolver.resolve(root, "not-" + names[0])
    entries = resolver.ls(root)
    assert sorted(e.name for e in entries) == sorted(names)
    assert all(e.size == 62 and e.kind == "file" for e in entries)


def test_ls_lists_entries_with_sizes(tmp_path):
    write_tree(tmp_path, {"d/big.bin": keystream("big", 300_000), "d/sub/small.txt": "abc"})
    os.symlink("big.bin", tmp_path / "d/link")
    root = add(tmp_path / "d")
    resolver = Resolver(Repo())
    entries = {e.name: e for e in resolver.ls(root)}
    assert sorted(entries) == ["big.bin", "link", "sub"]
    assert (entries["big.bin"].size, entries["big.bin"].kind) == (300_000, "file")
    assert entries["sub"].kind == "directory"
    assert entries["link"].kind == "symlink"
    assert [(e.name, e.size) for e in resolver.ls(entries["sub"].cid)] == [("small.txt", 3)]
    assert resolver.cat(resolver.resolve(root, "sub/small.txt")[-1]) == b"abc"


def test_a_corrupt_block_on_disk_is_refused(multi_chunk, howto_repo):
    path, _ = multi_chunk
    root = add(path)
    resolver = Resolver(Repo())
    leaf = resolver.block(root).node.links[1].hash
    leaf_file = next(f for f in block_files(howto_repo) if f.name == sha256_key(Repo().get(leaf)))
    damaged = bytearray(leaf_file.read_bytes())
    damaged[1000] ^= 0x01
    leaf_file.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match=str(to_cid(leaf))):
        Repo().get(leaf)
    with pytest.raises(IntegrityError):
        resolver.cat(root)


def test_v0_and_v1_of_one_block_share_the_file(tmp_path, howto_repo):
    path = tmp_path / "hello"
    path.write_text("hello world")
    root = add(path)
    as_v1 = root.set(version=1, base="base32")
    assert Repo().has(as_v1)
    assert Repo().get(as_v1) == Repo().get(root)
    assert len(block_files(howto_repo)) == 1


def test_identity_cids_need_no_storage(howto_repo):
    inline = CID("base32", 1, "raw", ("identity", b"tiny"))
    assert Repo().has(inline)
    assert Repo().get(inline) == b"tiny"
    assert Resolver(Repo()).cat(inline) == b"tiny"
    Repo().put(inline, b"tiny")
    assert not (howto_repo / "blocks").exists()


def test_put_refuses_bytes_that_do_not_match(howto_repo):
    cid = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(b"right").digest()))
    with pytest.raises(IntegrityError):
        Repo().put(cid, b"wrong")
    assert block_files(howto_repo) == []
    Repo().put(cid, b"right")
    assert Repo().get(cid) == b"right"


def test_a_failed_transaction_stores_nothing(howto_repo):
    cid = CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(b"x").digest()))
    with pytest.raises(RuntimeError), Repo().transaction() as txn:
        txn.put(cid, b"x")
        assert staging_leftovers(howto_repo)  # staged, not yet visible
        assert not Repo().has(cid)
        raise RuntimeError("stop")
    assert not Repo().has(cid)
    assert block_files(howto_repo) == [] and staging_leftovers(howto_repo) == []


def _special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_a_directory_add_that_fails_late_stores_nothing(tmp_path, howto_repo, kind):
    """Good files come first in name order; the unreadable entry last."""
    write_tree(tmp_path, {"d/a.txt": "a\n", "d/b.bin": keystream("b", 2 * DEFAULT_CHUNK + 1)})
    _special(tmp_path / "d/zz", kind)
    seen = []
    with pytest.raises(ValueError, match="zz"):
        for entry in add_paths([tmp_path / "d"], recursive=True, progress=False):
            seen.append(entry.name)
    assert seen == ["d/a.txt", "d/b.bin"]  # these were imported before the failure
    assert block_files(howto_repo) == []
    assert staging_leftovers(howto_repo) == []


def test_missing_path_and_directory_without_recursive(tmp_path, howto_repo):
    (tmp_path / "dir").mkdir()
    with pytest.raises(FileNotFoundError, match="nope"):
        add(tmp_path / "nope")
    with pytest.raises(IsADirectoryError, match="-r"):
        list(add_paths([tmp_path / "dir"], recursive=False))
    with pytest.raises(ValueError, match="CID version"):
        add(tmp_path / "dir", cid_version=2)
    assert list(howto_repo.iterdir()) == []


@pytest.mark.parametrize("options", [{}, {"cid_version": 1}, {"raw_leaves": True}])
def test_export_then_import_into_a_fresh_repo(tmp_path, howto_repo, options):
    data = keystream("round-trip", 2 * DEFAULT_CHUNK + 99)
    write_tree(tmp_path, {"d/x/data.bin": data, "d/readme": "hi\n"})
    root = add(tmp_path / "d", **options)
    car = io.BytesIO()
    export_car(root, car, Repo())
    fresh = Repo(tmp_path / "fresh")
    car.seek(0)
    roots, count = import_car(car, fresh)
    assert roots == [root]
    assert count == len(block_files(howto_repo))
    copied = [p.relative_to(fresh.path) for p in block_files(fresh.path)]
    assert copied == [p.relative_to(howto_repo) for p in block_files(howto_repo)]
    resolver = Resolver(fresh)
    assert resolver.cat(resolver.resolve(root, "x/data.bin")[-1]) == data
    assert resolver.cat(resolver.resolve(root, "readme")[-1]) == b"hi\n"


def test_the_default_repository_lives_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HOWTO_REPO")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "hello").write_text("hello world")
    root = add(tmp_path / "hello")
    assert Repo().path == tmp_path / "cache" / "howto" / "repo"
    assert len(block_files(Repo().path)) == 1
    assert Resolver(Repo()).cat(root) == b"hello world"
    monkeypatch.setenv("HOWTO_REPO", str(tmp_path / "elsewhere"))
    assert not Repo().has(root)
