"""``IPLDStore`` runs zarr-python's own store tests (``zarr.testing.store.StoreTests``).

zarr asks two helpers of every store's tests, ``set`` and ``get``, that reach the stored
data without the store's zarr methods.  Here they read and write the IPLD layout itself:
the hierarchy is one DAG-CBOR map (``howto.ipld.tree``) whose chunks are raw blocks and
whose metadata documents are inline; ``set`` writes a new root block and a raw block
straight into the backend and shows the new root through ``import_car``.  The stores are
new ones over a ``dict`` and over a repository folder, and one opened on a frozen root.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from zarr.core.buffer import Buffer, cpu
from zarr.testing.store import StoreTests

from howto.blocks.repo import Repo
from howto.formats.car import write_car
from howto.formats.cids import DAG_CBOR, RAW
from howto.ipld import IPLDStore, Link, decode, encode
from howto.ipld.blocks import Blocks
from howto.ipld.tree import META_KEYS


def hierarchy(store: IPLDStore) -> tuple[Blocks, dict]:
    """The store's blocks and its (small, one-block) hierarchy, read from the backend."""
    blocks = Blocks(store.backend)
    top = decode(blocks.get(Link(store.freeze())))
    assert isinstance(top, dict), "these tests keep hierarchies small enough for one block"
    return blocks, top


class TestIPLDStore(StoreTests[IPLDStore, cpu.Buffer]):
    store_cls = IPLDStore
    buffer_cls = cpu.Buffer

    async def set(self, store: IPLDStore, key: str, value: Buffer) -> None:
        blocks, top = hierarchy(store)
        data = value.to_bytes()
        parts = key.split("/")
        node = top
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = json.loads(data) if parts[-1] in META_KEYS else None
        except ValueError:
            node[parts[-1]] = None
        if node[parts[-1]] is None:  # a chunk, or a document that is not JSON: a raw block
            link = Link.of(data, RAW)
            blocks.put(link, data)
            node[parts[-1]] = link
        root_data = encode(top)
        root = Link.of(root_data, DAG_CBOR)
        car = io.BytesIO()
        write_car(car, [root.raw], [(root.raw, root_data)])
        store.import_car(car.getvalue())

    async def get(self, store: IPLDStore, key: str) -> Buffer:
        blocks, value = hierarchy(store)
        for part in key.split("/"):
            value = value[part]
        if isinstance(value, Link):
            return self.buffer_cls.from_bytes(blocks.get(value))
        return self.buffer_cls.from_bytes(json.dumps(value).encode())

    @pytest.fixture(params=["dict", "repository", "opened root"])
    def store_kwargs(self, request, tmp_path) -> dict[str, Any]:
        """A new store over a dict or a repository, or one opened on the root of an empty
        hierarchy (so every write makes a new version of a frozen dataset)."""
        if request.param == "repository":
            return {"backend": Repo(tmp_path / "repo")}
        backend: dict[str, bytes] = {}
        if request.param == "dict":
            return {"backend": backend}
        return {"backend": backend, "root": IPLDStore(backend).freeze()}

    def test_store_repr(self, store: IPLDStore, store_kwargs: dict[str, Any]) -> None:
        shown = store_kwargs.get("root", "unfrozen")
        assert repr(store) == f"IPLDStore(root={shown}, read_only=False)"
        store.set_sync("c/0", self.buffer_cls.from_bytes(b"chunk"))
        assert repr(store) == "IPLDStore(root=unfrozen, read_only=False)"
        root = store.freeze()
        assert repr(store) == f"IPLDStore(root={root}, read_only=False)"

    def test_store_supports_writes(self, store: IPLDStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: IPLDStore) -> None:
        assert store.supports_listing
