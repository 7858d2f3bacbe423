"""``IPLDStore``: a zarr-python 3 store whose content is an IPLD DAG.

Chunks go to the backend as raw blocks the moment zarr writes them; the hierarchy with
its metadata lives in memory until ``freeze()`` writes it as DAG-CBOR and returns the
root CID (see ``tree.py`` for the layout).  A root CID is all it takes to open the
dataset again, here or anywhere the blocks can be fetched from.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO, Self

from multiformats import CID
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..formats.car import CARError, write_car
from .blocks import Backend, Blocks, read_car
from .codec import DAG_CBOR, RAW, Link, as_link, decode, links_in
from .tree import MAX_BLOCK_SIZE, META_KEYS, Tree, inline_doc

if TYPE_CHECKING:
    import xarray as xr

RootLike = CID | Link | str | bytes


__all__ = ["IPLDStore", "RootLike", "open_dataset", "open_store"]


class IPLDStore(Store):
    """A zarr store keeping a hierarchy as IPLD blocks in a content-addressed backend.

    ``backend`` maps CIDv1 strings to bytes (any ``MutableMapping``, or a read-only
    ``Mapping`` such as a gateway client) or is a ``howto.repo.Repo``; the default is
    the local repository.  With ``root`` the store shows that frozen dataset; writing to
    it makes a new version, and ``freeze()`` names it.
    """

    supports_writes = True
    supports_deletes = True
    supports_listing = True

    def __init__(
        self,
        backend: Backend | None = None,
        root: RootLike | None = None,
        *,
        read_only: bool = False,
        max_block_size: int = MAX_BLOCK_SIZE,
    ) -> None:
        blocks = Blocks(backend)
        super().__init__(read_only=read_only or not blocks.writable)
        self._tree = Tree(blocks, None if root is None else as_link(root))
        self.max_block_size = max_block_size
        # Local disks and remote backends overlap better in threads; a dict does not.
        self._threaded = not isinstance(blocks.backend, dict)
        if root is not None:
            self._tree.node([])  # fail now, not inside zarr, when the root is missing

    @classmethod
    def _sharing(cls, other: IPLDStore, read_only: bool) -> IPLDStore:
        store = cls.__new__(cls)
        Store.__init__(store, read_only=read_only)
        store._tree = other._tree
        store.max_block_size = other.max_block_size
        store._threaded = other._threaded
        return store

    def with_read_only(self, read_only: bool = False) -> IPLDStore:
        """The same hierarchy (edits show in both) with another ``read_only`` flag."""
        if not read_only and not self._tree.blocks.writable:
            raise ValueError("the backend of this store is read-only")
        return self._sharing(self, read_only)

    def __eq__(self, other: object) -> bool:
        """Equal stores show the same hierarchy over equal backends, with the same
        ``read_only``: a store and its pickled copy, or two stores over one backend."""
        if not isinstance(other, IPLDStore) or other.read_only != self.read_only:
            return False
        if other._tree is self._tree:
            return True
        return other.backend == self.backend and other._tree.same_content(self._tree)

    def __repr__(self) -> str:
        root = self._tree.root
        return f"IPLDStore(root={str(root) if root else 'unfrozen'}, read_only={self.read_only})"

    @property
    def backend(self) -> Backend:
        return self._tree.blocks.backend

    @property
    def root(self) -> CID | None:
        """The CID of the current content if frozen (or opened) and unchanged since."""
        return None if self._tree.root is None else self._tree.root.cid

    # -- IPLD side ---------------------------------------------------------------

    def freeze(self) -> CID:
        """Write the hierarchy blocks and return the root CID of the current content."""
        return self._tree.freeze(self.max_block_size).cid

    def blocks(self) -> Iterable[tuple[Link, bytes]]:
        """Every block of the frozen dataset (freezing first): root first, each once."""
        return self._tree.walk(self._tree.freeze(self.max_block_size))

    def to_car(self, stream: BinaryIO | None = None) -> bytes | int:
        """The dataset as a CARv1: bytes, or the number of bytes written to ``stream``."""
        root = self._tree.freeze(self.max_block_size)
        out = io.BytesIO() if stream is None else stream
        written = write_car(out, [root.raw], ((link.raw, data) for link, data in self.blocks()))
        return out.getvalue() if stream is None else written

    def import_car(self, car: bytes | BinaryIO) -> CID:
        """Store a one-root CAR's blocks (each verified) and show that dataset.

        Fails, storing nothing in a repository backend, when a block reachable from the
        root is neither in the CAR nor already in the backend.
        """
        self._check_writable()
        stream = io.BytesIO(bytes(car)) if isinstance(car, bytes | bytearray) else car
        roots, blocks = read_car(stream)
        if len(roots) != 1:
            raise CARError(f"a dataset CAR has exactly one root, this one has {len(roots)}")
        root = roots[0]
        store = self._tree.blocks
        got: set[Link] = set()
        wanted = {root}
        with store.batch() as put:
            for link, data in blocks:
                got.add(link)
                if link.codec == DAG_CBOR:
                    wanted.update(links_in(decode(data)))
                put(link, data)
            missing = [link for link in wanted - got if not store.has(link)]
            if missing:
                raise CARError(
                    f"the CAR lacks {len(missing)} block(s) of its dataset, e.g. {missing[0]}"
                )
        self._tree.reset(root)
        return root.cid

    @classmethod
    def from_car(cls, car: bytes | BinaryIO, backend: Backend | None = None) -> Self:
        """A store over ``backend`` (default: the local repository) holding a CAR's dataset."""
        store = cls(backend)
        store.import_car(car)
        return store

    # -- zarr side ---------------------------------------------------------------

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        found = self._leaf(key, byte_range)
        if found is None:
            return None
        if self._threaded and isinstance(found[1], Link) and found[1].codec == RAW:
            return await asyncio.to_thread(self._buffer, *found, prototype, byte_range)
        return self._buffer(*found, prototype, byte_range)

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """``get`` without an event loop (zarr's ``SupportsGetSync``)."""
        found = self._leaf(key, byte_range)
        return None if found is None else self._buffer(*found, prototype, byte_range)

    def _leaf(self, key: str, byte_range: ByteRequest | None) -> tuple[str, Any] | None:
        """The name and tree value of the leaf at ``key``, or ``None`` when there is none."""
        _check_range(byte_range)
        parts = key.split("/")
        value = self._tree.lookup(parts)
        if value is None or not self._tree.is_leaf(parts[-1], value):
            return None
        return parts[-1], value

    def _buffer(
        self,
        name: str,
        value: Any,
        prototype: BufferPrototype | None,
        byte_range: ByteRequest | None,
    ) -> Buffer:
        data = self._tree.leaf_bytes(name, value)
        prototype = prototype or default_buffer_prototype()
        return prototype.buffer.from_bytes(_cut(data, byte_range))

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        parts = key.split("/")
        value = self._tree.lookup(parts)
        return value is not None and self._tree.is_leaf(parts[-1], value)

    async def set(self, key: str, value: Buffer) -> None:
        doc = self._inline(key, value)
        if doc is None and self._threaded:
            link = await asyncio.to_thread(self._put_raw, value.as_buffer_like())
            self._tree.set(key.split("/"), link)
        else:
            self._set(key, value, doc)

    def set_sync(self, key: str, value: Buffer) -> None:
        """``set`` without an event loop (zarr's ``SupportsSetSync``)."""
        self._set(key, value, self._inline(key, value))

    def _set(self, key: str, value: Buffer, doc: Any) -> None:
        # a chunk is hashed and written without copying it
        stored = doc if doc is not None else self._put_raw(value.as_buffer_like())
        self._tree.set(key.split("/"), stored)

    def _inline(self, key: str, value: Buffer) -> Any:
        """The document to keep inline when ``value`` is one, else ``None`` (checking first
        that the store may be written)."""
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"IPLDStore.set needs a zarr Buffer, not {type(value).__name__}")
        if key.rpartition("/")[2] not in META_KEYS:
            return None
        return inline_doc(value.to_bytes())

    def _put_raw(self, data: bytes | memoryview) -> Link:
        link = Link.of(data, RAW)
        self._tree.blocks.put(link, data)
        return link

    async def delete(self, key: str) -> None:
        self.delete_sync(key)

    def delete_sync(self, key: str) -> None:
        """``delete`` without an event loop (zarr's ``SupportsDeleteSync``)."""
        self._check_writable()
        self._tree.delete(key.split("/"))

    async def list(self) -> AsyncIterator[str]:
        for key in self._tree.keys([]):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        head, _, tail = prefix.rpartition("/")
        parts = head.split("/") if head else []
        node = self._tree.node(parts)
        if node is None:
            return
        base = f"{head}/" if head else ""
        for name, value in self._tree.entries(node):
            if not name.startswith(tail):
                continue
            if self._tree.is_leaf(name, value):
                yield base + name
            else:
                for rest in self._tree.keys([*parts, name]):
                    yield f"{base}{name}/{rest}"

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.strip("/")
        node = self._tree.node(prefix.split("/") if prefix else [])
        if node is None:
            return
        for name, _ in self._tree.entries(node):
            yield name


def _check_range(byte_range: object) -> None:
    """A ``ValueError`` for a byte range zarr does not define, in zarr's own words."""
    if byte_range is not None and not isinstance(
        byte_range, RangeByteRequest | OffsetByteRequest | SuffixByteRequest
    ):
        raise ValueError(f"Unexpected byte_range, got {byte_range!r}.")


def _cut(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(0, len(data) - byte_range.suffix) :]
    raise ValueError(f"Unexpected byte_range, got {byte_range!r}.")


def open_store(root: RootLike, backend: Backend | None = None) -> IPLDStore:
    """A read-only store showing the dataset frozen as ``root``."""
    return IPLDStore(backend, root, read_only=True)


def open_dataset(root: RootLike, backend: Backend | None = None, **kwargs: Any) -> xr.Dataset:
    """``xarray.open_zarr`` on a frozen root; consolidated metadata is used when present."""
    import xarray as xr

    store = open_store(root, backend)
    if "consolidated" not in kwargs:
        group = store._tree.doc(["zarr.json"])
        v3_consolidated = isinstance(group, dict) and group.get("consolidated_metadata")
        v2_consolidated = store._tree.lookup([".zmetadata"]) is not None
        kwargs["consolidated"] = bool(v2_consolidated or v3_consolidated)
    return xr.open_zarr(store, **kwargs)
