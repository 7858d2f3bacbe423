"""Writing a CAR reply as it is read: the blocks of a path, then those of its target.

The target's blocks are the one block, the whole DAG, or (``entity-bytes``) only the
nodes and leaves of a file that a byte range needs.  Raw leaves of a range kept as files
in the local repository go out with ``sendfile``, never read into memory here.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp import web
from multiformats import CID

from ..blocks.chain import BlockSource, Chain
from ..blocks.repo import Repo
from ..formats.car import encode_header, section_head
from ..formats.cids import RAW, RAW_CID_PREFIX, is_identity, to_cid
from ..formats.dagpb import UnixFSType
from ..unixfs.resolver import Block, Resolver
from .streaming import batches


@dataclass
class FileLeaf:
    """A raw leaf of a file range, sent from its file in the repository with ``sendfile``:
    never read into memory here, and not hashed (the trustless reader hashes it)."""

    raw: bytes  # the binary CID
    file: BinaryIO
    size: int


#: Opens a raw leaf (by its binary CID) as a file, or gives ``None`` when it is not one.
LeafOpener = Callable[[bytes], FileLeaf | None]


def leaf_opener(source: BlockSource) -> LeafOpener | None:
    """How to open raw leaves as files, when ``source`` keeps blocks in a directory."""
    sources = source.local if isinstance(source, Chain) else [source]
    repo = next((s for s in sources if isinstance(s, Repo)), None)
    if repo is None:
        return None

    def open_leaf(raw: bytes) -> FileLeaf | None:
        file = repo.open_block(raw)
        return None if file is None else FileLeaf(raw, file, os.fstat(file.fileno()).st_size)

    return open_leaf


def _close_leaves(items: list) -> None:
    for item in items:
        if isinstance(item, FileLeaf):
            item.file.close()


@functools.lru_cache(maxsize=1024)
def _car_header(root: CID) -> bytes:
    return encode_header([root])


def _block_size(block: Block | FileLeaf) -> int:
    return block.size if isinstance(block, FileLeaf) else len(block.data)


class _LeafSender:
    """Sends raw leaves from their files, each CAR section as one HTTP chunk framed here.

    ``sendfile`` is tried at once while the transport has nothing queued (most of the
    time, on a reader that keeps up), else left to the event loop; a chunk's closing CRLF
    goes out with the next chunk's head."""

    def __init__(self, request: web.Request) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        self.transport = transport
        self.socket = transport.get_extra_info("socket")
        self.owed = b""

    async def send(self, leaf: FileLeaf) -> None:
        head = section_head(leaf.raw, leaf.size)
        self.transport.write(b"%b%x\r\n%b" % (self.owed, len(head) + leaf.size, head))
        sent = 0
        if self.socket is not None and self.transport.get_write_buffer_size() == 0:
            try:
                sent = os.sendfile(self.socket.fileno(), leaf.file.fileno(), 0, leaf.size)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # no sendfile for this socket or file: the loop falls back
                sent = 0
        if sent < leaf.size:
            loop = asyncio.get_running_loop()
            await loop.sendfile(self.transport, leaf.file, sent, leaf.size - sent)
        self.owed = b"\r\n"

    def settle(self) -> None:
        """Close the last chunk, before anything else is written."""
        if self.owed:
            self.transport.write(self.owed)
            self.owed = b""


def _car_blocks(
    resolver: Resolver,
    target: Block,
    scope: str,
    byte_range: tuple[int, int] | None,
    dups: bool = False,
    open_leaf: LeafOpener | None = None,
) -> Iterator[Block | FileLeaf]:
    if byte_range is None:
        if scope == "block" or not resolver.links(target):
            yield target  # already read and checked: no need to read it again
        else:
            yield from resolver.walk(target.cid, scope, dups)
        return
    yield from _file_range_blocks(resolver, target, *byte_range, open_leaf)


def _file_range_blocks(
    resolver: Resolver,
    block: Block,
    start: int,
    end: int,
    open_leaf: LeafOpener | None = None,
) -> Iterator[Block | FileLeaf]:
    """The blocks of a file needed to read bytes [start, end): its nodes and leaves, depth
    first (with a stack of its own: a hostile file may be thousands of levels deep).  With
    ``open_leaf``, raw leaves stored as files come as open files instead."""
    stack = [iter([(block, 0)])]  # per node: its children still to visit, with offsets
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        block, offset = item
        yield block
        if isinstance(block, FileLeaf):
            continue
        meta = block.unixfs
        if block.node is not None and meta is not None and meta.type == UnixFSType.FILE:
            stack.append(_range_children(resolver, block, offset, start, end, open_leaf))


def _range_children(
    resolver: Resolver,
    block: Block,
    offset: int,
    start: int,
    end: int,
    open_leaf: LeafOpener | None,
) -> Iterator[tuple[Block | FileLeaf, int]]:
    pos = offset + len(block.unixfs.data or b"")
    for link, size in zip(block.node.links, block.unixfs.blocksizes, strict=False):
        if pos >= end:
            break
        if pos + size > start:
            leaf = None
            if open_leaf is not None and link.hash[:2] == RAW_CID_PREFIX:
                leaf = open_leaf(link.hash)
            yield leaf or resolver.block(link.hash), pos
        pos += size


async def write_car(
    request: web.Request,
    response: web.StreamResponse,
    resolver: Resolver,
    path: list[Block],
    target: Block,
    scope: str,
    byte_range: tuple[int, int] | None,
    dups: bool,
    open_leaf: LeafOpener | None,
) -> None:
    """The body of a prepared CAR reply: its header (rooted at the path's first block),
    the ``path`` blocks that lead to ``target``, then ``target``'s blocks for ``scope``
    (or for the file bytes ``byte_range``), each once unless ``dups``.  With
    ``open_leaf``, the reply must be chunked: leaves go out in chunks framed here."""
    await response.write(_car_header(to_cid(path[0].cid if path else target.cid)))
    sent: set[bytes] = set()
    leaves = _LeafSender(request) if open_leaf is not None else None

    async def send(block: Block | FileLeaf) -> None:
        raw = block.raw if isinstance(block, FileLeaf) else bytes(block.cid)
        if is_identity(raw) or (not dups and raw in sent):  # spec: no identity blocks
            return
        sent.add(raw)
        if isinstance(block, FileLeaf):
            await leaves.send(block)
            return
        if leaves is not None:
            leaves.settle()
        await response.write(section_head(raw, len(block.data)))
        await response.write(block.data)  # as stored: no copy into a section

    for block in path:
        await send(block)
    blocks = _car_blocks(resolver, target, scope, byte_range, dups, open_leaf)
    # Nothing more to read: one block, or a dag-pb or raw block without links.  (A
    # DAG-CBOR block's links are found by decoding it, which is left to the worker.)
    inline = (
        scope == "block"
        or target.cid.codec.code == RAW
        or (target.node is not None and not target.node.links)
    )
    async for batch in batches(blocks, _block_size, inline, _close_leaves):
        try:
            for block in batch:
                await send(block)
        finally:
            _close_leaves(batch)
    if leaves is not None:
        leaves.settle()


__all__ = ["FileLeaf", "LeafOpener", "leaf_opener", "write_car"]
