"""`howto add` gives kubo's CIDs: published vectors, boundaries, and an independent oracle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubo_vectors import keystream, random_names, write_tree

from howto.blocks.repo import Repo
from howto.formats.cids import to_cid
from howto.unixfs.add import add, add_paths
from howto.unixfs.hamt import SHARD_THRESHOLD
from howto.unixfs.importer import DEFAULT_CHUNK, MAX_LINKS
from howto.unixfs.resolver import Resolver

HELLO = "hello world"


def cid(path: Path, **options) -> str:
    options.setdefault("only_hash", True)
    return str(add(path, **options))


@pytest.fixture
def hello(tmp_path) -> Path:
    path = tmp_path / "hello"
    path.write_text(HELLO)
    return path


def test_hello_world_vectors(hello):
    assert cid(hello) == "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    assert (
        cid(hello, cid_version=1) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    )
    assert (
        cid(hello, cid_version=1, raw_leaves=False)
        == "bafybeihykld7uyxzogax6vgyvag42y7464eywpf55gxi5qpoisibh3c5wa"
    )


def test_empty_file_vectors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert cid(empty) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert (
        cid(empty, raw_leaves=True) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    )
    assert (
        cid(empty, cid_version=1, raw_leaves=False)
        == "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
    )


@pytest.mark.parametrize(
    "seed, size, expected",
    [
        ("chunk-v0-seed", DEFAULT_CHUNK, "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"),
        ("chunk-v0-seed", DEFAULT_CHUNK + 1, "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"),
        ("v0-seed", MAX_LINKS * DEFAULT_CHUNK, "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"),
        (
            "v0-seed",
            MAX_LINKS * DEFAULT_CHUNK + 1,
            "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW",
        ),
    ],
)
def test_kubo_chunk_boundaries(tmp_path, seed, size, expected):
    """One chunk exactly and one byte more; 174 chunks exactly and one byte more."""
    path = tmp_path / "data"
    path.write_bytes(keystream(seed, size))
    assert cid(path) == expected


PLANETS = {"planets/mars.txt": "Hello Mars!\n", "planets/venus.txt": "Hello Venus!\n"}


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"),
        ({"raw_leaves": True}, "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT"),
        ({"cid_version": 1}, "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"),
        (
            {"cid_version": 1, "raw_leaves": False},
            "bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y",
        ),
    ],
)
def test_kubo_directory_vectors(tmp_path, options, expected):
    write_tree(tmp_path, PLANETS)
    assert cid(tmp_path / "planets", **options) == expected


def test_kubo_nested_directory_and_output_order(tmp_path):
    write_tree(
        tmp_path,
        {
            "moons/jupiter/europa.txt": "Hello Europa!\n",
            "moons/saturn/titan.txt": "Hello Titan!\n",
            "moons/mercury.txt": "hey you are no moon!\n",
        },
    )
    added = add_paths([tmp_path / "moons"], recursive=True, only_hash=True, progress=False)
    lines = [(str(to_cid(a.cid)), a.name) for a in added]
    assert [name for _, name in lines] == [
        "moons/jupiter/europa.txt",
        "moons/jupiter",
        "moons/mercury.txt",
        "moons/saturn/titan.txt",
        "moons/saturn",
        "moons",
    ]
    found = dict((name, c) for c, name in lines)
    assert found["moons"] == "QmbGoaQZm8kjYfCiN1aBsgwhqfUBGDYTrDb91Mz7Dvq81B"
    assert found["moons/jupiter"] == "QmS5mZddhFPLWFX3w6FzAy9QxyYkaxvUpsWCtZ3r7jub9J"
    assert found["moons/saturn"] == "QmaMagZT4rTE7Nonw8KGSK4oe1bh533yhZrCo1HihSG8FK"


def test_kubo_symlink_vectors(tmp_path):
    write_tree(tmp_path, {"files/foo/baz": "some text\n"})
    (tmp_path / "files/bar").mkdir()
    os.symlink("files/foo/baz", tmp_path / "files/bar/baz")
    os.symlink("files/does/not/exist", tmp_path / "files/bad")
    assert cid(tmp_path / "files") == "QmWdiHKoeSW8G1u7ATCgpx4yMoUhYaJBQGkyPLkS9goYZ8"
    assert cid(tmp_path / "files", cid_version=1) == (
        "bafybeibyhlx64cklod6isy3h7tsmr4qvam3ae3b74n3hfes5bythjrwyua"
    )
    assert cid(tmp_path / "files/bar/baz") == "QmdocmZeF7qwPT9Z8SiVhMSyKA2KKoA2J7jToW6z6WBmxR"
    assert cid(tmp_path / "files/bad") == "QmWYN8SEXCgNT2PSjB6BnxAx6NJQtazWoBkTRH9GRfPFFQ"


def _named_files(root: Path, names: list[str], content: str = "x") -> Path:
    root.mkdir()
    for name in names:
        (root / name).write_text(content)
    return root


def test_kubo_hamt_threshold_vectors(tmp_path):
    """4096 names of 30 characters stay a basic directory; 4033 of 31 become a HAMT."""
    basic = _named_files(tmp_path / "basic", random_names("hamt-unixfs-v0-2015", 4096, 30))
    sharded = _named_files(tmp_path / "sharded", random_names("hamt-unixfs-v0-2015", 4033, 31))
    assert cid(basic) == "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN"
    assert cid(sharded) == "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP"


def test_kubo_sharded_directory_of_2000_files(tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    for i in range(1, 2001):
        (root / f"file{i}").write_text(f"{i}\n")
    assert cid(root) == "QmavrTrQG4VhoJmantURAYuw3bowq3E2WcvP36NRQDAC1N"


def test_exact_threshold_is_not_sharded(tmp_path, oracle):
    """kubo 0.40+ shards only when the estimate is greater than 262144 bytes."""
    # CIDv1 raw leaves: 36 bytes a link, so 64-character names cost 100 bytes each.
    names = [f"{i:064d}" for i in range(SHARD_THRESHOLD // 100)]
    names.append("n" * (SHARD_THRESHOLD % 100 - 36))
    exact = _named_files(tmp_path / "exact", names)
    over = _named_files(tmp_path / "over", names[:-1] + ["n" * (SHARD_THRESHOLD % 100 - 35)])
    repo = Repo(tmp_path / "repo")
    roots = [add(p, cid_version=1, repo=repo) for p in (exact, over)]
    kinds = [Resolver(repo).block(r).unixfs.type.name for r in roots]
    assert kinds == ["DIRECTORY", "HAMT_SHARD"]
    assert [str(r) for r in roots] == oracle.cids(exact, over)


def test_oracle_agrees_on_files(tmp_path, oracle):
    sizes = [0, 1, DEFAULT_CHUNK - 1, DEFAULT_CHUNK, DEFAULT_CHUNK + 1, 3 * DEFAULT_CHUNK + 17]
    paths = []
    for size in sizes:
        path = tmp_path / f"f{size}"
        path.write_bytes(keystream(f"seed{size}", size))
        paths.append(path)
    assert [cid(p, cid_version=1) for p in paths] == oracle.cids(*paths)
    assert [cid(p) for p in paths] == oracle.cids(*paths, profile="unixfs-v0-2015")


def test_oracle_agrees_on_a_three_level_tree(tmp_path, oracle):
    """A small chunker makes 174*174+ chunks cheap: the balanced layout grows a third level."""
    path = tmp_path / "deep"
    path.write_bytes(keystream("deep", 16 * (MAX_LINKS * MAX_LINKS + 3)))
    assert cid(path, cid_version=1, chunker="size-16") == oracle.cid(path, chunk=16)


def test_oracle_agrees_on_nested_directories(tmp_path, oracle):
    write_tree(
        tmp_path,
        {
            "tree/a.txt": "a\n",
            "tree/sub/b.bin": keystream("b", 300_000),
            "tree/sub/deeper/c.txt": "c\n",
            "tree/z/.hidden": "h\n",
        },
    )
    (tmp_path / "tree/empty").mkdir()
    os.symlink("../a.txt", tmp_path / "tree/sub/link")
    assert cid(tmp_path / "tree", cid_version=1, hidden=True) == oracle.cid(tmp_path / "tree")


def test_oracle_agrees_on_a_sharded_directory(tmp_path, oracle):
    names = random_names("oracle-hamt", 3000, 60)
    root = _named_files(tmp_path / "big", names)
    assert cid(root, cid_version=1) == oracle.cid(root)


def test_hidden_files_need_the_flag(tmp_path):
    write_tree(tmp_path, {"d/a": "a", "d/.secret": "s"})
    write_tree(tmp_path, {"plain/a": "a"})
    assert cid(tmp_path / "d") == cid(tmp_path / "plain")
    assert cid(tmp_path / "d", hidden=True) != cid(tmp_path / "plain")
