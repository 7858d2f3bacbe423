"""The block layer under the store: any block source, or any CID-keyed mapping.

A backend is a ``howto`` block source (``howto.repo.Repo``, a ``howto.blocks.Chain`` that
reaches gateways, a ``howto.trustless.GatewayBlocks``) or a mapping of CIDv1 base32
strings to block bytes (a ``dict``, a ``shelve``, an object-store mapping).  Whatever it
is, every block read is checked against its CID, so a backend can be fast or far away but
never wrong; writes go through the source's transaction, so a failed write lands nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import BinaryIO

from ..blocks.chain import BlockSource, BlockStore, MappingBlocks
from ..blocks.repo import Repo
from ..formats.car import read_car_raw
from .codec import Link

#: What the store accepts as a backend.
Backend = BlockSource | MutableMapping[str, bytes] | Mapping[str, bytes]


__all__ = ["Backend", "Blocks", "read_car"]


class Blocks:
    """Get, put and test blocks by ``Link`` over one backend."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend: Backend = Repo() if backend is None else backend
        self.source: BlockSource = (
            MappingBlocks(self.backend) if isinstance(self.backend, Mapping) else self.backend
        )

    @property
    def writable(self) -> bool:
        if isinstance(self.backend, Mapping):
            return isinstance(self.backend, MutableMapping)
        return isinstance(self.source, BlockStore)

    def get(self, link: Link) -> bytes:
        """The verified bytes of ``link``; ``NotFoundError`` when the backend lacks it
        (``UnavailableError`` when the backend is a chain none of whose sources has it)."""
        return self.source.get(link.raw)

    def has(self, link: Link) -> bool:
        return self.source.has(link.raw)

    def put(self, link: Link, data: bytes | memoryview) -> None:
        """Store one block whose link the caller computed from its bytes."""
        self.put_many([(link, bytes(data))])

    def put_many(self, blocks: Iterable[tuple[Link, bytes]]) -> None:
        with self.batch() as put:
            for link, data in blocks:
                put(link, data)

    @contextmanager
    def batch(self) -> Iterator[Callable[[Link, bytes], None]]:
        """A ``put`` function; nothing lands unless the body succeeds."""
        if not self.writable:
            raise TypeError(f"this backend is read-only: {type(self.backend).__name__}")
        with self.source.transaction() as txn:  # type: ignore[union-attr]
            yield lambda link, data: txn.put(link.raw, data)


def read_car(stream: BinaryIO) -> tuple[list[Link], Iterator[tuple[Link, bytes]]]:
    """Roots and verified blocks of a CARv1, as ``Link`` rather than ``CID`` objects."""
    roots, blocks = read_car_raw(stream)
    return [Link(root) for root in roots], ((Link(cid), data) for cid, data in blocks)
