"""Reading paths under a root CID from a chain: local blocks first, then one CAR at a time.

``DagReader`` is what the ``ipfs://`` file system and the command line share.  A path is
resolved over the local sources (the repository, the bundled CARs) and the nodes already
verified; only when a block is missing there does it ask the chain's gateways, in order,
for a verified CAR of the rest of the path (``dag-scope=block``), of a directory
(``entity``), or of a window of a file's bytes (``entity-bytes``).  A file that is one raw
block, such as a zarr chunk, is fetched alone by its CID.  Everything returned was reached
by hash from the root, whichever source sent it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from multiformats import CID

from .blocks import Chain, CidLike
from .cids import RAW, to_cid
from .errors import IntegrityError, NotFoundError
from .resolver import Block, BlockCache, Entry, Resolver
from .trustless import WINDOW_BYTES, CarReply, Received

if TYPE_CHECKING:
    from .ipld.tree import Tree


class _Missing(Exception):
    """A block no local source holds (so a gateway must be asked)."""


class _LocalOnly:
    """The local sources of a chain; a miss is ``_Missing``, not ``NotFoundError``."""

    def __init__(self, chain: Chain) -> None:
        self.local = chain.local_only()

    def get(self, cid: CidLike) -> bytes:
        try:
            return self.local.get(cid)
        except NotFoundError:
            raise _Missing from None


class _Reply(Received):
    """A CAR reply in a chain: lacking a block is a lie when the reply had to hold it."""

    def __init__(self, reply: CarReply, where: str, complete: bool) -> None:
        super().__init__(reply.blocks, where)
        self.complete = complete

    def get(self, cid: CidLike) -> bytes:
        try:
            return super().get(cid)
        except IntegrityError:
            if self.complete:
                raise
            raise NotFoundError(f"{self.where} did not include it") from None


class DagReader:
    """Files, directories and paths under root CIDs, read through ``chain``."""

    def __init__(self, chain: Chain, cache: BlockCache | None = None) -> None:
        self.chain = chain
        self.cache = cache if cache is not None else BlockCache()
        self._local = Resolver(_LocalOnly(chain), self.cache)
        self._trees: dict[CID, Tree] = {}

    def _with(self, reply: _Reply) -> Resolver:
        """A resolver over the local sources, ``reply``, then the gateways."""
        chain = Chain([*self.chain.local, reply], self.chain.remote)
        return Resolver(chain, self.cache)

    def _car(self, root: CID, path: str, scope: str, entity_bytes: str | None = None) -> CarReply:
        what = f"/ipfs/{root}" + (f"/{path}" if path else "")
        missing = [(source, NotFoundError("not found")) for source in self.chain.local]
        reply = self.chain.ask_remote(
            what, lambda source: source.car(root, path, scope, entity_bytes, self.cache), missing
        )
        self.chain.keep_blocks(reply)
        return reply

    def locate(
        self, root: CID | str, path: str = "", scope: str = "block"
    ) -> tuple[Resolver, list[CID]]:
        """The CIDs along ``path`` (target last) and a resolver that can read the target.

        Segments through local or already verified nodes cost nothing; at the first
        missing block, the gateways are asked for the rest of the path as one CAR.
        """
        cids = [to_cid(root)]
        segments = [s for s in path.split("/") if s]
        used = 0
        while used < len(segments):
            try:
                cid, used_now = self._local.step(cids[-1], segments, used)
            except _Missing:
                rest = "/".join(segments[used:])
                reply = self._car(cids[-1], rest, scope)
                resolver = self._with(_Reply(reply, f"the reply for {cids[-1]}/{rest}", False))
                resolver.resolve(cids[-1], rest)  # caches the verified nodes on the way
                return resolver, cids + reply.cids[1:]
            cids.append(cid)
            used = used_now
        if scope != "block" and not self.chain.has(cids[-1]) and self.chain.remote:
            reply = self._car(cids[-1], "", scope)
            return self._with(_Reply(reply, f"the reply for {cids[-1]}", False)), cids
        return Resolver(self.chain, self.cache), cids

    def resolve(self, root: CID | str, path: str = "") -> list[CID]:
        return self.locate(root, path)[1]

    def stat(self, root: CID | str, path: str = "") -> tuple[Block, int, list[CID]]:
        """The target block, its file size (0 for directories) and the CIDs on the path."""
        resolver, cids = self.locate(root, path)
        block = resolver.block(cids[-1])
        return block, resolver.size(block) if block.kind == "file" else 0, cids

    def ls(self, root: CID | str, path: str = "") -> list[Entry]:
        """A directory's entries, with sizes and kinds."""
        resolver, cids = self.locate(root, path, "entity")
        return resolver.ls(cids[-1])

    def read(
        self, root: CID | str, path: str = "", start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """A file's bytes from ``start`` to ``end`` (or its end), verified window by window.

        Each window of at most ``WINDOW_BYTES`` is read whole (locally, or as one CAR from
        a gateway) before any of it is given out, so no unverified byte ever leaves.
        """
        resolver, cids = self.locate(root, path)
        target = resolver.block(cids[-1])
        if target.cid.codec.code == RAW:
            yield target.data[start:end]
            return
        size = resolver.size(target)
        end = size if end is None else min(end, size)
        if target.kind != "file":
            raise IsADirectoryError(f"{target.cid} is a {target.kind}, not a file")
        pos = max(0, start)
        while pos < end:
            stop = min(end, pos + WINDOW_BYTES)
            yield from self._window(target, pos, stop)
            pos = stop

    def _window(self, target: Block, start: int, stop: int) -> list[bytes]:
        try:
            return list(self._local.read(target, start, stop - start))
        except _Missing:
            pass
        reply = self._car(target.cid, "", "entity", f"{start}:{stop - 1}")
        where = f"the reply for bytes {start}-{stop - 1} of {target.cid}"
        resolver = Resolver(Chain([*self.chain.local, _Reply(reply, where, True)]), self.cache)
        return list(resolver.read(target, start, stop - start))

    def zarr_tree(self, root: CID | str) -> Tree:
        """The zarr hierarchy of a ``howto.ipld`` dataset (a DAG-CBOR root), read through
        the chain: its blocks come from local sources first, then one by one from the
        gateways, each checked against its CID."""
        from .ipld.blocks import Blocks
        from .ipld.codec import as_link
        from .ipld.tree import Tree

        cid = to_cid(root)
        tree = self._trees.get(cid)
        if tree is None:
            if len(self._trees) >= 64:
                self._trees.clear()
            tree = self._trees[cid] = Tree(Blocks(self.chain), as_link(cid))
        return tree

    def walk(self, root: CID | str, scope: str = "all") -> Iterator[Block]:
        """Every block of a DAG, depth-first (see ``Resolver.walk``), from any source."""
        yield from Resolver(self.chain, self.cache).walk(root, scope)


__all__ = ["DagReader"]
