"""Unavailable is not absent: what zarr, xarray and a gateway see for each.

A name missing from a verified directory is absent (a ``FileNotFoundError``, which zarr
needs for optional keys such as ``zarr.json`` in a zarr v2 store).  A block that no source
has is unavailable (``UnavailableError``, neither a ``FileNotFoundError`` nor a
``KeyError``), so zarr cannot mistake it for a missing group or for chunks never written.
The blocks here are real: a zarr v2 store added to a repository, then copied in part.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr

from howto import fs as howto_fs
from howto.blocks.chain import Chain
from howto.blocks.repo import Repo
from howto.errors import NotFoundError, PathNotFoundError, UnavailableError
from howto.formats.cids import RAW, cid_bytes, cid_text, to_cid
from howto.fs import VerifiedIPFSFileSystem
from howto.gateway.server import serve
from howto.retrieval.reader import DagReader
from howto.retrieval.trustless import GatewayBlocks
from howto.unixfs.add import add


class Store:
    """One zarr v2 store (consolidated) in a full repository, and a partial repository
    holding every directory node, metadata file and coordinate, but no chunk of ``w``."""

    def __init__(self, base: Path) -> None:
        self.dataset = xr.Dataset(
            {"w": (("t", "z"), np.random.default_rng(5).standard_normal((40, 12)))},
            coords={"t": np.arange(40)},
        )
        folder = base / "store.zarr"
        self.dataset.to_zarr(folder, zarr_format=2, encoding={"w": {"chunks": (10, 6)}})
        self.full = Repo(base / "full")
        self.root = add(folder, repo=self.full, cid_version=1, raw_leaves=True, hidden=True)
        self.partial = Repo(base / "partial")
        self.chunks: list[str] = []
        reader = DagReader(Chain([self.full]))
        with self.partial.transaction() as txn:
            self._copy(reader, txn, "")

    def _copy(self, reader: DagReader, txn, path: str) -> None:
        cid = reader.resolve(self.root, path)[-1]
        txn.put(cid, self.full.get(cid))
        for entry in reader.ls(self.root, path):
            inner = f"{path}/{entry.name}".strip("/")
            if entry.kind == "directory":
                self._copy(reader, txn, inner)
            elif path == "w" and not entry.name.startswith("."):
                self.chunks.append(inner)
            else:  # metadata (.zgroup, .zarray, .zattrs, .zmetadata) and the coordinate
                txn.put(entry.cid, self.full.get(entry.cid))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("unavailable"))


@pytest.fixture
def routed():
    """``ipfs://`` through howto's file system for this test only."""
    before = fsspec.get_filesystem_class("ipfs")
    howto_fs.enable()
    yield
    fsspec.register_implementation("ipfs", before, clobber=True)


def offline_fs(repo: Path) -> VerifiedIPFSFileSystem:
    return VerifiedIPFSFileSystem(offline=True, repo=str(repo), skip_instance_cache=True)


def test_a_store_whose_blocks_are_nowhere_raises_howto_reason_not_group_not_found(
    store, routed, tmp_path
) -> None:
    empty = tmp_path / "empty"
    with pytest.raises(UnavailableError) as info:
        xr.open_zarr(f"ipfs://{store.root}", storage_options={"offline": True, "repo": str(empty)})
    error = info.value
    assert not isinstance(error, FileNotFoundError | KeyError)
    assert cid_text(store.root) in str(error)
    assert [name for name, _ in error.tried] == ["local repository", "bundled catalog blocks"]
    assert not error.remote


def test_optional_keys_absent_from_a_verified_directory_stay_absent(store, routed) -> None:
    fs = offline_fs(store.partial.path)
    # zarr 3 asks for zarr.json first: the verified directory proves it absent.
    with pytest.raises(PathNotFoundError) as info:
        fs.cat(f"{store.root}/zarr.json")
    assert isinstance(info.value, FileNotFoundError)
    assert not fs.exists(f"{store.root}/w/zarr.json")
    options = {"offline": True, "repo": str(store.partial.path)}
    opened = xr.open_zarr(f"ipfs://{store.root}", storage_options=options)
    assert opened["w"].shape == store.dataset["w"].shape  # metadata only: no chunk read


def test_chunks_that_are_nowhere_fail_the_read_instead_of_reading_fill_values(
    store, routed
) -> None:
    options = {"offline": True, "repo": str(store.partial.path)}
    opened = xr.open_zarr(f"ipfs://{store.root}", storage_options=options)
    with pytest.raises(UnavailableError, match="is not available") as info:
        opened["w"].load()
    assert "local repository" in str(info.value)
    with pytest.raises(UnavailableError):
        offline_fs(store.partial.path).cat(f"{store.root}/{store.chunks[0]}")
    # The same read with every block at hand gives the data.
    full = {"offline": True, "repo": str(store.full.path)}
    xr.testing.assert_identical(
        xr.open_zarr(f"ipfs://{store.root}", storage_options=full).load(), store.dataset
    )


def test_through_a_gateway_the_directory_node_decides_absent_or_unavailable(
    store, tmp_path
) -> None:
    """The local repository is empty: every block comes from a gateway that holds the
    directories and metadata only.  Its 404 for a path says neither; the directory node,
    fetched by its CID and verified, does."""
    with serve(store.partial) as url:
        fs = VerifiedIPFSFileSystem(
            gateway_addr=url, repo=str(tmp_path / "empty"), skip_instance_cache=True
        )
        assert fs.cat(f"{store.root}/.zgroup")
        with pytest.raises(PathNotFoundError):
            fs.cat(f"{store.root}/zarr.json")
        with pytest.raises(PathNotFoundError):
            fs.info(f"{store.root}/w/zarr.json")
        with pytest.raises(UnavailableError) as info:
            fs.cat(f"{store.root}/{store.chunks[0]}")
    error = info.value
    assert error.remote and any(url in name for name, _ in error.tried)
    assert "HTTP 404" in str(error)


def status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_gateway_answers_404_for_absent_and_for_unavailable_without_upstream_else_502(
    store,
) -> None:
    chunk = store.chunks[0]
    nowhere = cid_text(to_cid(cid_bytes(b"no copy of this anywhere", RAW, 1)))
    with serve(store.partial) as partial:
        assert status(f"{partial}/ipfs/{store.root}/no-such-key")[0] == 404
        # Serving only what it holds (non-recursive): known to be unretrievable, 404.
        assert status(f"{partial}/ipfs/{store.root}/{chunk}")[0] == 404
        assert status(f"{partial}/ipfs/{nowhere}?format=raw")[0] == 404
        # A gateway that asks another one (recursive): unavailable is 502, absent 404.
        recursive = Chain([Repo(store.partial.path)], [GatewayBlocks(partial, 20)])
        with serve(recursive) as front:
            code, body = status(f"{front}/ipfs/{store.root}/{chunk}")
            assert code == 502 and partial in body
            assert status(f"{front}/ipfs/{nowhere}?format=raw")[0] == 502
            assert status(f"{front}/ipfs/{store.root}/no-such-key")[0] == 404
            assert status(f"{front}/ipfs/{store.root}/.zgroup")[0] == 200


def test_one_source_lacking_a_block_is_still_plain_absence(store) -> None:
    """A source asked directly answers for itself; only a chain can say "nowhere"."""
    missing = to_cid(cid_bytes(b"not in this repository", RAW, 1))
    with pytest.raises(NotFoundError):
        store.partial.get(missing)
    with pytest.raises(UnavailableError):
        Chain([store.partial]).get(missing)
