"""Every block source runs the shared tests of ``block_source_tests``.

Each class says only how its source is filled from outside: files written into a
repository folder, objects put into a bucket on a local S3 server, sections of a CAR file
beside the bundled ones, entries of a dict, a repository served by howto's gateway on
127.0.0.1, and a chain of several of these.  The servers start once for this module.
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Mapping

import pytest
from block_source_tests import BlockSourceTests, BlockStoreTests, Make
from multiformats import CID

from howto.blocks.bucket import BucketRepo
from howto.blocks.bundled import bundled_car_files
from howto.blocks.chain import CarBlocks, Chain, MappingBlocks
from howto.blocks.repo import Repo, stored_key
from howto.errors import UnavailableError
from howto.formats.car import read_car_raw, write_car
from howto.gateway.server import serve
from howto.retrieval.trustless import GatewayBlocks
from howto.s3server import local_s3


def write_files(repo: Repo, blocks: Mapping[CID, bytes]) -> None:
    """Block files written straight into a repository folder, as an editor would."""
    for cid, data in blocks.items():
        key = stored_key(cid)[1]
        if key is not None:
            path = repo.block_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def mapping_key(cid: CID) -> str:
    """A block's key in a mapping: its CIDv1 in base32."""
    return str(cid.set(version=1, base="base32"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """howto's gateway on 127.0.0.1 over a repository that tests write files into."""
    repo = Repo(tmp_path_factory.mktemp("served"))
    with serve(repo) as url:
        yield repo, url


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1; each test has a bucket of its own."""
    with local_s3() as server:
        yield server


class TestRepo(BlockStoreTests):
    @pytest.fixture
    def make(self, tmp_path) -> Make:
        def make(blocks: Mapping[CID, bytes]) -> Repo:
            repo = Repo(tmp_path / "repo")
            write_files(repo, blocks)
            return repo

        return make


class TestBucketRepo(BlockStoreTests):
    @pytest.fixture
    def make(self, s3, monkeypatch) -> Make:
        for name, value in s3.environ.items():
            monkeypatch.setenv(name, value)
        bucket = f"b{uuid.uuid4().hex[:12]}"
        s3.make_bucket(bucket)

        def make(blocks: Mapping[CID, bytes]) -> BucketRepo:
            repo = BucketRepo(f"s3://{bucket}/repo")
            objects = {
                repo.object_path(key): data
                for cid, data in blocks.items()
                if (key := stored_key(cid)[1]) is not None
            }
            if objects:
                s3.filesystem().pipe(objects)
            return repo

        return make


class TestMappingBlocks(BlockStoreTests):
    @pytest.fixture
    def make(self) -> Make:
        def make(blocks: Mapping[CID, bytes]) -> MappingBlocks:
            return MappingBlocks({mapping_key(cid): data for cid, data in blocks.items()})

        return make


class TestReadOnlyMappingBlocks(BlockSourceTests):
    @pytest.fixture
    def make(self) -> Make:
        def make(blocks: Mapping[CID, bytes]) -> MappingBlocks:
            entries = {mapping_key(cid): data for cid, data in blocks.items()}
            return MappingBlocks(types.MappingProxyType(entries))

        return make

    def test_a_read_only_mapping_refuses_a_transaction(self, make: Make) -> None:
        with pytest.raises(TypeError, match="read-only"), make({}).transaction():
            pass


class TestCarBlocks(BlockSourceTests):
    @pytest.fixture
    def make(self, tmp_path) -> Make:
        def make(blocks: Mapping[CID, bytes]) -> CarBlocks:
            path = tmp_path / f"{uuid.uuid4().hex}.car"
            with open(path, "wb") as f:
                write_car(f, list(blocks)[:1], blocks.items())
            return CarBlocks([*bundled_car_files(), path])

        return make

    def test_the_bundled_blocks_are_there(self, make: Make) -> None:
        source = make({})
        for path in bundled_car_files():
            with open(path, "rb") as f:
                roots, sections = read_car_raw(f)
                blocks = list(sections)
            assert roots and all(source.has(root) for root in roots)
            first, data = blocks[0]
            assert source.get(first) == bytes(data)


class TestGatewayBlocks(BlockSourceTests):
    @pytest.fixture
    def make(self, gateway) -> Make:
        repo, url = gateway

        def make(blocks: Mapping[CID, bytes]) -> GatewayBlocks:
            write_files(repo, blocks)
            return GatewayBlocks(url, timeout=10)

        return make


class TestChain(BlockSourceTests):
    """Two local sources, each holding every other block, before a gateway holding all."""

    absent = UnavailableError  # asked of every source, had by none: not known to be absent

    @pytest.fixture
    def make(self, gateway, tmp_path) -> Make:
        served, url = gateway

        def make(blocks: Mapping[CID, bytes]) -> Chain:
            entries: dict[str, bytes] = {}
            repo = Repo(tmp_path / "repo")
            for i, (cid, data) in enumerate(blocks.items()):
                if i % 2:
                    write_files(repo, {cid: data})
                else:
                    entries[mapping_key(cid)] = data
            write_files(served, blocks)
            return Chain([MappingBlocks(entries), repo], [GatewayBlocks(url, timeout=10)])

        return make
