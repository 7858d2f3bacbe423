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

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from multiformats import CID

from ..blocks.chain import Chain, CidLike
from ..errors import IntegrityError, NotFoundError, UnavailableError
from ..formats.cids import RAW, to_cid
from ..unixfs.resolver import Block, BlockCache, Entry, Resolver
from .trustless import WINDOW_BYTES, CarReply, Received

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from ..ipld.tree import Tree

#: Room in a window's buffer beyond the file bytes, for the CAR framing and the nodes.
WINDOW_SLACK = 1 << 20
#: Window buffers nobody used for this long are let go.
BUFFERS_IDLE_SECONDS = 30.0


class _Missing(Exception):
    """A block no local source holds (so a gateway must be asked)."""


class _LocalOnly:
    """The local sources of a chain; a miss is ``_Missing``, not ``UnavailableError``."""

    def __init__(self, chain: Chain) -> None:
        self.local = chain.local_only()

    def get(self, cid: CidLike) -> bytes:
        try:
            return self.local.get(cid)
        except (NotFoundError, UnavailableError):
            raise _Missing from None


class _NoSource:
    """A source with no blocks: a resolver over it and a cache reads only the cache."""

    def get(self, cid: CidLike) -> bytes:
        raise _Missing


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


class _Buffers:
    """Receive buffers for file windows, used again and again (so their memory is already
    mapped); at most ``keep`` are kept between reads, and none once ``BUFFERS_IDLE_SECONDS``
    have passed without a read."""

    def __init__(self, size: int, keep: int = 2) -> None:
        self.size = size
        self.keep = keep
        self._free: list[bytearray] = []
        self._lock = threading.Lock()
        self._used = 0.0  # when a buffer was last given back
        self._timer: threading.Timer | None = None

    @property
    def kept(self) -> int:
        with self._lock:
            return sum(len(buffer) for buffer in self._free)

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def give(self, buffer: bytearray | None) -> None:
        if buffer is not None:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(buffer)
                self._used = time.monotonic()
                if self._timer is None:
                    self._trim_later(BUFFERS_IDLE_SECONDS)

    def _trim_later(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._trim)
        self._timer.daemon = True
        self._timer.start()

    def _trim(self) -> None:
        """Let the kept buffers go if they have been idle long enough; else look again
        when they will have been."""
        with self._lock:
            idle = time.monotonic() - self._used
            if idle >= BUFFERS_IDLE_SECONDS:
                self._free.clear()
                self._timer = None
            else:
                self._trim_later(BUFFERS_IDLE_SECONDS - idle)


class DagReader:
    """Files, directories and paths under root CIDs, read through ``chain``.

    After a file has been read from a gateway, the reader keeps its window buffers (two
    of about 33 MiB) for the next read, and lets them go after ``BUFFERS_IDLE_SECONDS``
    without one (``buffered_bytes`` says how much it keeps).
    """

    def __init__(self, chain: Chain, cache: BlockCache | None = None) -> None:
        self.chain = chain
        self.cache = cache if cache is not None else BlockCache()
        self._local = Resolver(_LocalOnly(chain), self.cache)
        self._trees: dict[CID, Tree] = {}
        self._buffers = _Buffers(WINDOW_BYTES + WINDOW_SLACK)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of window buffers kept now for the next read from a gateway."""
        return self._buffers.kept

    def _with(self, reply: _Reply) -> Resolver:
        """A resolver over the local sources, ``reply``, then the gateways."""
        chain = Chain([*self.chain.local, reply], self.chain.remote)
        return Resolver(chain, self.cache)

    def _car(
        self,
        root: CID,
        path: str,
        scope: str,
        entity_bytes: str | None = None,
        buffer: bytearray | None = None,
    ) -> CarReply:
        what = f"/ipfs/{root}" + (f"/{path}" if path else "")
        missing = [(source, NotFoundError("not found")) for source in self.chain.local]
        reply = self.chain.ask_remote(
            what,
            lambda source: source.car(root, path, scope, entity_bytes, self.cache, buffer),
            missing,
        )
        self.chain.keep_blocks(reply)
        return reply

    def locate(
        self, root: CID | str, path: str = "", scope: str = "block"
    ) -> tuple[Resolver, list[CID]]:
        """The CIDs along ``path`` (target last) and a resolver that can read the target.

        Segments through local or already verified nodes cost nothing; at the first
        missing block, the gateways are asked for the rest of the path as one CAR, and
        when none sends it, for that block alone.  A name the verified nodes do not hold
        is ``PathNotFoundError`` (a ``FileNotFoundError``); a block no source provides is
        ``UnavailableError``.
        """
        cids = [to_cid(root)]
        segments = [s for s in path.split("/") if s]
        used = 0
        while used < len(segments):
            try:
                cid, used_now = self._local.step(cids[-1], segments, used)
            except _Missing:
                rest = "/".join(segments[used:])
                try:
                    reply = self._car(cids[-1], rest, scope)
                except UnavailableError:
                    # A gateway's 404 for a path cannot say whether a name is absent or
                    # a block is missing.  The node itself, asked for by its CID, can:
                    # its links prove the name absent, or it is what is unavailable
                    # (and the error then names that block).
                    cid, used = Resolver(self.chain, self.cache).step(cids[-1], segments, used)
                    cids.append(cid)
                    continue
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

    def known_path(self, root: CID, path: str) -> list[CID] | None:
        """The CIDs along ``path`` when every node on the way is verified and in memory
        already, else ``None``: no I/O at all, so an event loop may ask."""
        try:
            return Resolver(_NoSource(), self.cache).resolve(root, path)
        except _Missing:
            return None

    def stat(self, root: CID | str, path: str = "") -> tuple[Block, int, list[CID]]:
        """The target block, its file size (0 for directories) and the CIDs on the path."""
        resolver, cids = self.locate(root, path)
        block = resolver.block(cids[-1])
        return block, resolver.size(block) if block.kind == "file" else 0, cids

    def ls(self, root: CID | str, path: str = "") -> list[Entry]:
        """A directory's entries, with sizes and kinds."""
        return list(self.entries(root, path))

    def entries(self, root: CID | str, path: str = "") -> Iterator[Entry]:
        """``ls`` one entry at a time, each given as soon as it is known (for directories
        of any length: nothing waits for, or holds, the whole listing)."""
        resolver, cids = self.locate(root, path, "entity")
        yield from resolver.entries(cids[-1])

    def read(
        self, root: CID | str, path: str = "", start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """A file's bytes from ``start`` to ``end`` (or its end), verified window by window.

        Each window of at most ``WINDOW_BYTES`` is read whole (locally, or as one CAR from
        a gateway) before any of it is given out, so no unverified byte ever leaves.
        """
        for pieces in self._windows(root, path, start, end):
            yield from (bytes(piece) for piece in pieces)

    def read_to(
        self,
        out: SupportsWrite,
        root: CID | str,
        path: str = "",
        start: int = 0,
        end: int | None = None,
    ) -> int:
        """``read``, written to ``out`` (a file, ``sys.stdout.buffer``, ``io.BytesIO``):
        the bytes go straight from the buffer they were received and checked in, with no
        copy of their own.  Returns the number of bytes written."""
        written = 0
        for pieces in self._windows(root, path, start, end):
            for piece in pieces:
                out.write(piece)
                written += len(piece)
        return written

    def _windows(
        self, root: CID | str, path: str, start: int, end: int | None
    ) -> Iterator[list[bytes | memoryview]]:
        """The verified pieces of each window of the file, in order.  The pieces of one
        window are valid only until the next is asked for (their buffer is used again)."""
        resolver, cids = self.locate(root, path)
        target = resolver.block(cids[-1])
        if target.cid.codec.code == RAW:
            yield [target.data[start:end]]
            return
        if target.kind != "file":
            raise IsADirectoryError(f"{target.cid} is a {target.kind}, not a file")
        size = resolver.size(target)
        end = size if end is None else min(end, size)
        starts = range(max(0, start), end, WINDOW_BYTES)  # lazy: a size may be huge
        spans = ((pos, min(end, pos + WINDOW_BYTES)) for pos in starts)
        if not starts:
            return
        if len(starts) == 1:  # one window: nothing to fetch ahead, no thread
            pieces, buffer = self._window(target, *next(spans))
            try:
                yield pieces
            finally:
                self._buffers.give(buffer)
            return
        # The next window is fetched while this one is given out: the gateway keeps sending.
        with ThreadPoolExecutor(1, thread_name_prefix="howto-window") as pool:
            ahead: Future | None = pool.submit(self._window, target, *next(spans))
            try:
                for following in itertools.chain(spans, [None]):
                    pieces, buffer = ahead.result()
                    ahead = None
                    if following is not None:
                        ahead = pool.submit(self._window, target, *following)
                    try:
                        yield pieces
                    finally:
                        self._buffers.give(buffer)
            finally:
                if ahead is not None:  # the reader stopped early
                    ahead.cancel()
                    ahead.add_done_callback(self._give_back)

    def _give_back(self, future: Future) -> None:
        """The buffer of a window fetched for nothing (the reader stopped early)."""
        if not future.cancelled() and future.exception() is None:
            self._buffers.give(future.result()[1])

    def _window(
        self, target: Block, start: int, stop: int
    ) -> tuple[list[bytes | memoryview], bytearray | None]:
        """One window's pieces, and the buffer they are views of (``None`` if local)."""
        try:
            return list(self._local.read(target, start, stop - start)), None
        except _Missing:
            pass
        buffer = self._buffers.take()
        try:
            reply = self._car(target.cid, "", "entity", f"{start}:{stop - 1}", buffer)
            where = f"the reply for bytes {start}-{stop - 1} of {target.cid}"
            # The reply must hold every block of the window: nothing else need be asked.
            resolver = Resolver(_Reply(reply, where, True), self.cache)
            return list(resolver.read(target, start, stop - start)), buffer
        except BaseException:
            self._buffers.give(buffer)
            raise

    def zarr_tree(self, root: CID | str) -> Tree:
        """The zarr hierarchy of a ``howto.ipld`` dataset (a DAG-CBOR root), read through
        the chain: its blocks come from local sources first, then one by one from the
        gateways, each checked against its CID."""
        from ..ipld.blocks import Blocks
        from ..ipld.codec import as_link
        from ..ipld.tree import Tree

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
