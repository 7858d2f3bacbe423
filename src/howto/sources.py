"""Where blocks come from: the local repository first, then the content bundled with howto."""

from __future__ import annotations

from multiformats import CID

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


def default_source() -> Chain:
    """The sources ``howto cat/ls/dag export`` read from."""
    return Chain(Repo())
