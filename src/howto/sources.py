"""Where blocks come from: the local repository, then the blocks bundled with howto."""

from __future__ import annotations

from pathlib import Path

from multiformats import CID

from .car import read_car
from .errors import NotFoundError
from .repo import Repo


class Chain:
    """Asks each source in turn; the first that has the block answers."""

    def __init__(self, *sources: object) -> None:
        self.sources = sources

    def get(self, cid: CID) -> bytes:
        for source in self.sources:
            try:
                return source.get(cid)
            except NotFoundError:
                continue
        raise NotFoundError(f"block {cid} is not available from any source")

    def get_unverified(self, cid: CID) -> bytes:
        """As ``get``, but sources that can skip hashing do (see ``read_unverified``)."""
        for source in self.sources:
            try:
                return read_unverified(source, cid)
            except NotFoundError:
                continue
        raise NotFoundError(f"block {cid} is not available from any source")


class CarBlocks:
    """The blocks of some CAR files, each verified once when the files are first read."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self._blocks: dict[bytes, bytes] | None = None

    def load(self) -> dict[bytes, bytes]:
        """Read and verify every file now (a bad CAR raises ``CARError``)."""
        if self._blocks is None:
            blocks = {}
            for path in self.paths:
                with open(path, "rb") as f:
                    for cid, data in read_car(f)[1]:
                        blocks[bytes(cid.digest)] = data
            self._blocks = blocks
        return self._blocks

    def get(self, cid: CID) -> bytes:
        try:
            return self.load()[bytes(cid.digest)]
        except KeyError:
            raise NotFoundError(f"block {cid} is not in the bundled CAR files") from None

    get_unverified = get  # checked once when loaded: nothing to skip


def read_unverified(source: object, cid: CID) -> bytes:
    """A block for a reader who checks it: unhashed where ``source`` offers that."""
    reader = getattr(source, "get_unverified", None)
    return reader(cid) if reader is not None else source.get(cid)


def default_source() -> Chain:
    """What ``howto cat/ls/dag export`` and the embedded gateway read from."""
    from .catalog import bundled_car_files

    return Chain(Repo(), CarBlocks(bundled_car_files()))
