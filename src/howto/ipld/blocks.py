"""The block layer under the store: any CID-keyed mapping, or the local repository.

A backend is anything that maps CIDv1 base32 strings to block bytes: a ``dict``, a
``shelve``, an object-store mapping, a read-only mapping that fetches from a gateway, or
``howto.repo.Repo``.  Whatever it is, every block read is checked against its CID here,
so a backend can be fast or far away but never wrong.

The repository is used through its file layout (one file per multihash, see
``howto.repo``) rather than ``Repo.get``/``Repo.put``: those build a ``CID`` object and
a staging folder per block, which costs more than hashing a 1 MiB chunk.  Files are
still written to a temporary name and renamed, so a reader never sees half a block.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..car import read_car_raw
from ..cids import check_multihash
from ..dagpb import read_varint
from ..errors import NotFoundError
from ..repo import Repo
from .codec import Link, base32, check_block

#: What the store accepts as a backend.
Backend = Repo | MutableMapping[str, bytes] | Mapping[str, bytes]


def multihash(link: Link) -> bytes:
    """The multihash part of a CID (everything after version and codec)."""
    raw = link.raw
    return raw if raw[0] != 1 else raw[read_varint(raw, 1)[1] :]


def inline_block(link: Link) -> bytes | None:
    """The block an identity CID carries in itself, else ``None``."""
    digest = multihash(link)
    if digest[0] != 0x00:
        return None
    check_multihash(digest, link)  # the hash policy: identity CIDs of 128 bytes at most
    size, start = read_varint(digest, 1)
    return digest[start : start + size]


class Blocks:
    """Get, put and test blocks by ``Link`` over one backend."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend: Backend = Repo() if backend is None else backend
        self._repo = self.backend if isinstance(self.backend, Repo) else None

    @property
    def writable(self) -> bool:
        return self._repo is not None or isinstance(self.backend, MutableMapping)

    def _file(self, link: Link) -> Path:
        assert self._repo is not None
        # the repository's key: lower-case base32 of the multihash, no padding
        return self._repo._path(base32(multihash(link)))

    def get(self, link: Link) -> bytes:
        """The verified bytes of ``link``; ``NotFoundError`` when the backend lacks it."""
        if (carried := inline_block(link)) is not None:
            return carried
        if self._repo is not None:
            try:
                data = self._file(link).read_bytes()
            except FileNotFoundError:
                raise NotFoundError(f"block {link} is not in the repository") from None
            return check_block(link, data)
        try:
            data = self.backend[str(link)]
        except KeyError:
            raise NotFoundError(f"block {link} is not in the backend") from None
        return check_block(link, bytes(data))

    def has(self, link: Link) -> bool:
        if inline_block(link) is not None:
            return True
        if self._repo is not None:
            return self._file(link).exists()
        return str(link) in self.backend

    def put(self, link: Link, data: bytes | memoryview) -> None:
        """Store one block whose link the caller computed from its bytes."""
        if self._repo is None:
            self.put_many([(link, bytes(data))])
            return
        target = self._file(link)
        if not target.exists():
            staging = self._repo.path / "staging"
            staging.mkdir(parents=True, exist_ok=True)
            temporary = staging / uuid.uuid4().hex
            temporary.write_bytes(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)

    def put_many(self, blocks: Iterable[tuple[Link, bytes]]) -> None:
        with self.batch() as put:
            for link, data in blocks:
                put(link, data)

    @contextmanager
    def batch(self) -> Iterator[Callable[[Link, bytes], None]]:
        """A ``put`` function; with the repository, nothing lands unless the body succeeds."""
        if self._repo is not None:
            yield from self._repo_batch()
            return
        backend = self.backend
        if not isinstance(backend, MutableMapping):
            raise TypeError("this backend is read-only: it is a Mapping, not a MutableMapping")

        def put(link: Link, data: bytes) -> None:
            key = str(link)
            if key not in backend:
                backend[key] = data

        yield put

    def _repo_batch(self) -> Iterator[Callable[[Link, bytes], None]]:
        assert self._repo is not None
        staging = self._repo.path / "staging" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        staged: dict[Path, Path] = {}

        def put(link: Link, data: bytes) -> None:
            target = self._file(link)
            if target not in staged and not target.exists():
                staged[target] = staging / target.name
                staged[target].write_bytes(data)

        try:
            yield put
            for target, temporary in staged.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temporary, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def read_car(stream: BinaryIO) -> tuple[list[Link], Iterator[tuple[Link, bytes]]]:
    """Roots and verified blocks of a CARv1, as ``Link`` rather than ``CID`` objects."""
    roots, blocks = read_car_raw(stream)
    return [Link(root) for root in roots], ((Link(cid), data) for cid, data in blocks)
