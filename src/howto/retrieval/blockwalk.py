"""The blocks a CAR reply would hold, gathered one block at a time.

The trustless gateway spec lets a gateway serve nothing but single blocks by bare CID
(``?format=raw``); it may refuse a path or a CAR (HTTP 400, 406 or 501).  From such a
gateway, ``walk_blocks`` gathers what a CAR of ``/ipfs/root/path`` with ``dag-scope`` and
``entity-bytes`` would have held: the blocks on the path one after the other (each names
the next), then the target's blocks level by level, each level's blocks asked for at
once by at most ``workers`` threads.  Every block comes through ``get``, which checks it
against its CID, so the result is as trustworthy as a verified CAR.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from multiformats import CID

from ..blocks.chain import CidLike
from ..errors import GatewayError, PathNotFoundError
from ..formats.cids import DAG_CBOR, DAG_JSON, inline_data, multihash_of, raw_cid, to_cid
from ..formats.dagpb import UnixFSType
from ..unixfs.resolver import Block, BlockCache, Resolver

#: A block still to fetch: its CID and the byte range of the file it must serve
#: (relative to itself; ``None`` for the end).
_Wanted = tuple[CID, int, int | None]


class _Fetched:
    """A block source that asks ``get`` (or finds a verified copy in ``cache``) and keeps
    every block it gives, up to ``limit`` bytes in all."""

    def __init__(
        self, get: Callable[[CID], bytes], cache: BlockCache | None, limit: int, where: str
    ) -> None:
        self._get = get
        self.cache = cache
        self.limit = limit
        self.where = where
        self.blocks: dict[bytes, bytes] = {}
        self.total = 0
        self._lock = threading.Lock()

    def get(self, cid: CidLike) -> bytes:
        raw = raw_cid(cid)
        if (carried := inline_data(raw)) is not None:  # an identity CID: nothing to ask
            return carried
        key = multihash_of(raw)
        with self._lock:
            if key in self.blocks:
                return self.blocks[key]
        cid = cid if isinstance(cid, CID) else to_cid(raw)
        hit = self.cache.get(cid) if self.cache is not None else None
        data = hit.data if hit is not None else self._get(cid)
        with self._lock:
            if key not in self.blocks:
                self.blocks[key] = data
                self.total += len(data)
                if self.total > self.limit:
                    raise GatewayError(
                        f"{self.where}: the blocks add up to over {self.limit} bytes"
                    )
        return data

    get_unverified = get

    def has(self, cid: CidLike) -> bool:
        return multihash_of(raw_cid(cid)) in self.blocks


def walk_blocks(
    get: Callable[[CID], bytes],
    root: CID,
    path: str,
    scope: str,
    entity_bytes: str | None,
    cache: BlockCache | None,
    workers: int,
    limit: int,
    where: str,
) -> tuple[dict[bytes, bytes], list[CID]]:
    """The blocks (by multihash) a CAR of ``/ipfs/root/path`` would hold for ``scope``
    (``block``, ``entity`` or ``all``) and ``entity_bytes``, and the CIDs on the path.

    ``get`` fetches one block and checks it; at most ``workers`` blocks are asked for at
    once, and more than ``limit`` bytes in all is a ``GatewayError``, as an over-long CAR
    is.  A name the fetched nodes do not hold is ``PathNotFoundError`` naming ``where``.
    """
    fetched = _Fetched(get, cache, limit, where)
    try:
        cids = Resolver(fetched).resolve(root, path)
    except PathNotFoundError as exc:
        raise PathNotFoundError(f"{exc} ({where})") from None
    target = Resolver.decode(cids[-1], fetched.get(cids[-1]))
    if scope == "block":
        return fetched.blocks, cids
    start, end = _span(entity_bytes, target, fetched) if scope == "entity" else (0, None)
    level: list[tuple[Block, int, int | None]] = [(target, start, end)]
    seen = {multihash_of(bytes(target.cid))}
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="howto-blocks") as pool:
        while level:
            wanted: list[_Wanted] = []
            for block, first, last in level:
                for child in _children(block, scope, first, last, fetched):
                    key = multihash_of(bytes(child[0]))
                    if key not in seen:  # a block linked twice is fetched once
                        seen.add(key)
                        wanted.append(child)
            futures = [pool.submit(_decoded, fetched, item[0]) for item in wanted]
            try:
                level = [
                    (future.result(), first, last)
                    for future, (_, first, last) in zip(futures, wanted, strict=True)
                ]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return fetched.blocks, cids


def _decoded(fetched: _Fetched, cid: CID) -> Block:
    return Resolver.decode(cid, fetched.get(cid))


def _span(entity_bytes: str | None, target: Block, fetched: _Fetched) -> tuple[int, int | None]:
    """``entity-bytes=from:to`` (``to`` inclusive or ``*``; negative counts from the end)
    as a start and an exclusive end."""
    if entity_bytes is None:
        return 0, None
    first, _, last = entity_bytes.partition(":")
    start, stop = int(first), None if last in ("", "*") else int(last)
    if start < 0 or (stop is not None and stop < 0):
        size = Resolver(fetched).size(target)
        start = max(0, size + start) if start < 0 else start
        stop = size + stop if stop is not None and stop < 0 else stop
    return start, None if stop is None else stop + 1


def _children(
    block: Block, scope: str, start: int, end: int | None, fetched: _Fetched
) -> Iterator[_Wanted]:
    """The blocks under ``block`` that ``scope`` takes in, as ``Resolver.walk`` would."""
    if scope == "all":
        for cid in Resolver.links(block):
            yield cid, 0, None
        return
    if block.kind == "file" and block.node is not None:
        Resolver(fetched).size(block)  # its links and block sizes must agree
        pos = len(block.unixfs.data or b"")
        for link, size in zip(block.node.links, block.unixfs.blocksizes, strict=True):
            if end is not None and pos >= end:
                return
            if pos + size > start:
                last = None if end is None else end - pos
                yield to_cid(link.hash), max(0, start - pos), last
            pos += size
        return
    if block.cid.codec.code in (DAG_CBOR, DAG_JSON) or block.kind != "directory":
        return
    if block.unixfs.type == UnixFSType.HAMT_SHARD:  # a directory's entity: its shards
        for link in block.node.links:
            if link.name is not None and len(link.name) == 2:
                yield to_cid(link.hash), 0, None


__all__ = ["walk_blocks"]
