"""One set of tests for every block source, as zarr's ``StoreTests`` is for every store.

The block protocol (``howto.blocks.chain``) promises the same answers from every source:
the exact bytes of a block it holds, ``NotFoundError`` (and ``has`` false) for one it
lacks, ``IntegrityError`` rather than bytes that do not hash to the CID, the same block
under a CID object and its binary form and under a CIDv0 and its CIDv1, and identity
CIDs answered from the CID itself.  A store also promises that a transaction lands all of
its blocks or none.

A test module subclasses ``BlockSourceTests`` (or ``BlockStoreTests``) and gives one
fixture, ``make``: a function returning the source under test holding the given bytes
under the given CIDs.  It writes them as the source's storage would be written from
outside (a file edited, an object overwritten, sections of a CAR file, a repository
behind a gateway), never through the source's own checked writes, so a test can plant
bytes that do not match their CID.  The class names do not start with ``Test``: pytest
collects them only through their subclasses.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping

import pytest
from multiformats import CID

from howto.blocks.chain import BlockSource, BlockStore
from howto.errors import IntegrityError, NotFoundError
from howto.formats.cids import cid_text
from howto.unixfs.importer import Importer, Options

Make = Callable[[Mapping[CID, bytes]], BlockSource]

#: Published by kubo's sharness tests (t0040-add-and-cat): the dag-pb node of "hello world".
HELLO_V0 = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"


def raw_block(label: str = "block") -> tuple[CID, bytes]:
    """A raw block no other test uses, and its CIDv1."""
    data = f"{label} {uuid.uuid4()}\n".encode()
    return CID("base32", 1, "raw", ("sha2-256", hashlib.sha256(data).digest())), data


def dag_pb_block(data: bytes) -> tuple[CID, bytes]:
    """The dag-pb node kubo makes of a small file (``ipfs add``), and its CIDv0."""
    blocks: dict[bytes, bytes] = {}
    node = Importer(Options.create(cid_version=0), blocks.__setitem__).add_bytes(data)
    return CID.decode(node.cid), blocks[node.cid]


def identity_cid(data: bytes) -> CID:
    return CID("base32", 1, "raw", ("identity", data))


class BlockSourceTests:
    """What every block source answers, whatever keeps its blocks."""

    #: What asking for a block the source lacks raises: one source says it does not have
    #: it; a chain that no source could answer says the block is unavailable.
    absent: type[Exception] = NotFoundError

    @pytest.fixture
    def make(self) -> Make:
        """A function that returns the source under test holding the given blocks."""
        raise NotImplementedError("each subclass says how its source is filled")

    def test_is_a_block_source(self, make: Make) -> None:
        assert isinstance(make({}), BlockSource)

    def test_a_block_it_holds_comes_back_exactly(self, make: Make) -> None:
        cid, data = raw_block()
        other, other_data = raw_block("other")
        source = make({cid: data, other: other_data})
        got = source.get(cid)
        assert type(got) is bytes and got == data
        assert source.get_unverified(cid) == data
        assert source.get(other) == other_data
        assert source.has(cid)

    def test_a_block_it_lacks_is_not_found(self, make: Make) -> None:
        cid, data = raw_block()
        absent, _ = raw_block("absent")
        source = make({cid: data})
        assert not source.has(absent)
        with pytest.raises(self.absent, match=cid_text(absent)):
            source.get(absent)
        with pytest.raises(self.absent, match=cid_text(absent)):
            source.get_unverified(absent)

    def test_a_cid_object_and_its_binary_form_name_one_block(self, make: Make) -> None:
        cid, data = raw_block()
        absent, _ = raw_block("absent")
        source = make({cid: data})
        assert source.get(bytes(cid)) == source.get(cid) == data
        assert source.get_unverified(bytes(cid)) == data
        assert source.has(bytes(cid))
        assert not source.has(bytes(absent))
        with pytest.raises(self.absent):
            source.get(bytes(absent))

    def test_a_wrong_copy_is_refused(self, make: Make) -> None:
        """Bytes stored under a CID they do not hash to never come out of ``get``."""
        cid, data = raw_block()
        source = make({cid: data[::-1] + b"!"})
        with pytest.raises(IntegrityError, match=cid_text(cid)):
            source.get(cid)
        with pytest.raises(IntegrityError):
            source.get(bytes(cid))

    def test_a_wrong_dag_pb_copy_is_refused(self, make: Make) -> None:
        cid, data = dag_pb_block(f"{uuid.uuid4()}\n".encode())
        source = make({cid: data.replace(b"\n", b"?")})
        with pytest.raises(IntegrityError):
            source.get(cid)

    def test_identity_cids_carry_their_block(self, make: Make) -> None:
        inline = identity_cid(b"carried in the CID")
        source = make({})
        assert source.has(inline) and source.has(bytes(inline))
        assert source.get(inline) == source.get(bytes(inline)) == b"carried in the CID"

    def test_a_dag_pb_block_under_cidv0_and_cidv1(self, make: Make) -> None:
        cid, data = dag_pb_block(b"hello world")
        assert str(cid) == HELLO_V0
        v1 = cid.set(version=1, base="base32")
        source = make({cid: data})
        for name in (cid, bytes(cid), v1, bytes(v1)):
            assert source.get(name) == data
            assert source.has(name)

    def test_a_dag_pb_block_stored_under_cidv1_is_found_under_cidv0(self, make: Make) -> None:
        cid, data = dag_pb_block(f"{uuid.uuid4()}\n".encode())
        source = make({cid.set(version=1, base="base32"): data})
        assert source.get(cid) == data and source.has(cid)

    def test_a_raw_block_and_a_dag_pb_block_side_by_side(self, make: Make) -> None:
        raw, raw_data = raw_block()
        node, node_data = dag_pb_block(raw_data)
        source = make({raw: raw_data, node: node_data})
        assert source.get(raw) == raw_data
        assert source.get(node) == node_data


class BlockStoreTests(BlockSourceTests):
    """What every store answers besides: transactions land all of their blocks or none."""

    @pytest.fixture
    def store(self, make: Make) -> BlockStore:
        return make({})

    def test_is_a_block_store(self, store: BlockStore) -> None:
        assert isinstance(store, BlockStore)

    def test_put_then_get(self, store: BlockStore) -> None:
        cid, data = raw_block()
        node, node_data = dag_pb_block(data)
        with store.transaction() as txn:
            txn.put(cid, data)
            txn.put(bytes(node), node_data)  # a binary CID too
        assert store.get(cid) == data and store.has(cid)
        assert store.get(node) == node_data and store.has(bytes(node))

    def test_a_transaction_lands_every_block_when_it_ends(self, store: BlockStore) -> None:
        blocks = dict(raw_block(str(i)) for i in range(5))
        with store.transaction() as txn:
            for cid, data in blocks.items():
                txn.put(cid, data)
            assert not any(store.has(cid) for cid in blocks)  # nothing shows before the end
        assert all(store.get(cid) == data for cid, data in blocks.items())

    def test_a_failed_transaction_lands_nothing(self, store: BlockStore) -> None:
        blocks = dict(raw_block(str(i)) for i in range(5))
        with pytest.raises(RuntimeError, match="stopped"), store.transaction() as txn:
            for cid, data in blocks.items():
                txn.put(cid, data)
            raise RuntimeError("stopped half-way")
        for cid in blocks:
            assert not store.has(cid)
            with pytest.raises(NotFoundError):
                store.get(cid)
        cid, data = raw_block("after")
        with store.transaction() as txn:  # the store is usable afterwards
            txn.put(cid, data)
        assert store.get(cid) == data

    def test_putting_a_block_twice_keeps_one(self, store: BlockStore) -> None:
        cid, data = raw_block()
        for _ in range(2):
            with store.transaction() as txn:
                txn.put(cid, data)
                txn.put(cid, data)
        assert store.get(cid) == data

    def test_a_put_replaces_a_wrong_copy(self, make: Make) -> None:
        """A verified put over a damaged copy repairs it (as a chain does keeping blocks)."""
        cid, data = raw_block()
        store = make({cid: b"damaged"})
        with pytest.raises(IntegrityError):
            store.get(cid)
        with store.transaction() as txn:
            txn.put(cid, data)
        assert store.get(cid) == data

    def test_an_identity_cid_needs_no_storage(self, store: BlockStore) -> None:
        inline = identity_cid(b"tiny")
        with store.transaction() as txn:
            txn.put(inline, b"tiny")
        assert store.get(inline) == b"tiny"


__all__ = [
    "HELLO_V0",
    "BlockSourceTests",
    "BlockStoreTests",
    "Make",
    "dag_pb_block",
    "identity_cid",
    "raw_block",
]
