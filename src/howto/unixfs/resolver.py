"""Walking a DAG from a root CID: path resolution, file bytes, listings and block order.

Every block comes from a ``BlockSource`` whose ``get`` returns bytes already checked
against the CID (the repository, a CAR, a verifying gateway client), so whatever this
module returns was reached by hash from the root: a wrong block cannot slip in.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import dag_cbor
from multiformats import CID

from ..blocks.chain import BlockSource
from ..errors import IntegrityError, PathNotFoundError, PathNotSupportedError, shown
from ..formats.cids import (
    DAG_CBOR,
    DAG_JSON,
    DAG_PB,
    RAW,
    RAW_CID_PREFIX,
    check_cid,
    cid_text,
    inline_data,
    to_cid,
)
from ..formats.dagjson import decode as decode_dag_json
from ..formats.dagpb import PBNode, UnixFSData, UnixFSType, decode_node, decode_unixfs
from .hamt import name_hash, shard_lookup_index, shard_problem, slot_of

#: A HAMT level consumes one byte of the 8-byte name hash (fanout 256), so no valid
#: directory is deeper than this.
HAMT_MAX_DEPTH = 8
#: The most blocks one walk gives when it repeats duplicates (a DAG that links one block
#: many times over grows exponentially when unfolded).
MAX_WALK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One directory entry, as ``howto ls`` and the gateway list it.

    ``raw`` is the binary CID; ``cid`` decodes it on first use (a ``CID`` object costs
    far more than listing the entry, which matters for directories of 100,000 entries).
    """

    name: str
    raw: bytes
    size: int
    kind: str  # "file", "directory", "symlink" or "unknown"

    @functools.cached_property
    def cid(self) -> CID:
        return as_cid(self.raw)


@dataclass
class Block:
    """A decoded block: the CID, its bytes and, for dag-pb, the node and UnixFS data."""

    cid: CID
    data: bytes
    node: PBNode | None = None
    unixfs: UnixFSData | None = None

    @property
    def kind(self) -> str:
        if self.cid.codec.code == RAW:
            return "file"
        if self.unixfs is None:
            return "unknown"
        return {
            UnixFSType.FILE: "file",
            UnixFSType.RAW: "file",
            UnixFSType.DIRECTORY: "directory",
            UnixFSType.HAMT_SHARD: "directory",
            UnixFSType.SYMLINK: "symlink",
        }.get(self.unixfs.type, "unknown")


_to_cid = functools.lru_cache(maxsize=1 << 15)(to_cid)


def as_cid(raw: CID | str | bytes) -> CID:
    """``to_cid``, memoised: links, paths and repeated requests name the same CIDs again."""
    try:
        return _to_cid(raw)
    except TypeError:  # unhashable, such as a memoryview
        return to_cid(raw)


def _key(cid: CID) -> tuple[int, bytes]:
    return cid.codec.code, cid.digest


class BlockCache:
    """Decoded dag-pb blocks by codec and multihash, least recently used dropped past a size.

    Sharing it is safe because a CID names the same bytes forever and only blocks that a
    verifying source returned are put in: a hit skips reading, hashing and decoding again.
    """

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._blocks: OrderedDict[tuple[int, bytes], Block] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, cid: CID) -> Block | None:
        key = _key(cid)
        with self._lock:
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
            return block

    def put(self, block: Block) -> None:
        key = _key(block.cid)
        with self._lock:
            if key in self._blocks or len(block.data) > self.max_bytes:
                return
            self._blocks[key] = block
            self.size += len(block.data)
            while self.size > self.max_bytes:
                _, old = self._blocks.popitem(last=False)
                self.size -= len(old.data)


class Resolver:
    """UnixFS (and DAG-CBOR) traversal over a block source (and an optional cache)."""

    def __init__(self, source: BlockSource, cache: BlockCache | None = None) -> None:
        self.source = source
        self.cache = cache

    def block(self, cid: CID | str | bytes) -> Block:
        cid = as_cid(cid)
        if self.cache is not None and (hit := self.cache.get(cid)) is not None:
            return hit
        data = inline_data(bytes(cid)) if cid.version == 1 else None
        if data is None:  # an identity CID carries its block: no source is asked
            data = self.source.get(cid)
        block = self.decode(cid, data)
        if self.cache is not None and block.node is not None:
            self.cache.put(block)
        return block

    def resolve(self, root: CID | str, path: str = "") -> list[CID]:
        """CIDs along ``path`` from ``root``, the target last: one per link followed (so
        one per segment through UnixFS; through DAG-CBOR or DAG-JSON, several segments
        may name keys inside one block before a link leads out of it)."""
        cids = [to_cid(root)]
        segments = [s for s in path.split("/") if s]
        used = 0
        while used < len(segments):
            cid, used = self.step(cids[-1], segments, used, cids[0], path)
            cids.append(cid)
        return cids

    def step(
        self,
        cid: CID,
        segments: list[str],
        used: int,
        root: CID | None = None,
        path: str = "",
    ) -> tuple[CID, int]:
        """Follow ``segments[used:]`` from block ``cid`` to the next link: its CID and how
        many segments are consumed then."""
        block = self.block(cid)
        if block.cid.codec.code in (DAG_CBOR, DAG_JSON):
            return self._ipld_step(block, segments, used, root or block.cid, path)
        return self._child(block, segments[used], root or block.cid, path), used + 1

    def _ipld_step(
        self, block: Block, segments: list[str], used: int, root: CID, path: str
    ) -> tuple[CID, int]:
        """Walk map keys (and list indexes) inside one DAG-CBOR or DAG-JSON block until a
        link; a missing key is ``PathNotFoundError``, a path ending on another kind of value
        ``PathNotSupportedError``."""
        value = decode_ipld(block)
        for i in range(used, len(segments)):
            name = segments[i]
            if isinstance(value, dict) and name in value:
                value = value[name]
            elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
                value = value[int(name)]
            else:
                raise PathNotFoundError(
                    f"no link named {name!r} under {block.cid} (in {root}/{path})"
                )
            if isinstance(value, CID):
                return to_cid(value), i + 1
        kind = type(value).__name__
        raise PathNotSupportedError(
            f"/{'/'.join(segments[used:])} under {block.cid} is a {kind}, not a link: "
            "IPLD paths end on blocks"
        )

    def _child(self, block: Block, name: str, root: CID, path: str) -> CID:
        # The message is built only on failure: formatting CIDs is slow.
        def missing() -> PathNotFoundError:
            return PathNotFoundError(f"no link named {name!r} under {block.cid} (in {root}/{path})")

        if block.node is None:
            raise missing()
        if block.unixfs is not None and block.unixfs.type == UnixFSType.HAMT_SHARD:
            found = self._hamt_child(block, name, 0)
            if found is None:
                raise missing()
            return found
        for link in block.node.links:
            if link.name == name:
                return as_cid(link.hash)
        raise missing()

    def _hamt_child(self, block: Block, name: str, depth: int) -> CID | None:
        """The CID of ``name`` in a HAMT, going down one shard per level (a loop: a
        hostile DAG may nest shards deeper than the name hash reaches, or than Python's
        call stack)."""
        while True:
            if depth >= HAMT_MAX_DEPTH:
                raise ValueError(f"HAMT shard {block.cid} is nested deeper than its name hash")
            prefix = f"{shard_lookup_index(name, depth):02X}"
            for link in _named_links(block):
                if link.name == prefix + name:
                    return as_cid(link.hash)
                if link.name == prefix:
                    block = _shard(self.block(link.hash))
                    depth += 1
                    break
            else:
                return None

    def size(self, block: Block) -> int:
        """File size of a UnixFS file or raw block (0 for directories).

        A file node's sizes are checked against each other first: its ``filesize`` must
        be its own data plus its ``blocksizes``, one per link (``IntegrityError`` naming
        the node if not).  Whether each child holds what its entry says is checked as the
        child is read, so no size is believed that the bytes do not bear out.
        """
        meta = block.unixfs
        if block.cid.codec.code == RAW or meta is None:
            return len(block.data)
        if meta.type not in (UnixFSType.FILE, UnixFSType.RAW):
            return meta.filesize if meta.filesize is not None else len(meta.data or b"")
        links, sizes = len(block.node.links), len(meta.blocksizes)
        if links != sizes:
            raise IntegrityError(f"file node {block.cid} has {links} links but {sizes} block sizes")
        total = len(meta.data or b"") + sum(meta.blocksizes)
        if meta.filesize is not None and meta.filesize != total:
            raise IntegrityError(
                f"file node {block.cid} declares {meta.filesize} bytes but its data and "
                f"block sizes add up to {total}"
            )
        return total

    def _declared_size(self, block: Block) -> int:
        """What a node says its file holds, unchecked: for listings, which show it."""
        meta = block.unixfs
        if block.cid.codec.code == RAW or meta is None:
            return len(block.data)
        return meta.filesize if meta.filesize is not None else len(meta.data or b"")

    def read(
        self, cid: CID | str | Block, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """Stream a file's bytes from ``offset`` (``length`` bytes, or to the end).

        Every node and leaf on the way must hold as many bytes as its parent says
        (``IntegrityError`` naming the node if not), so the bytes given are exactly those
        at the same offsets of a full read, and as many as the file's size promises.
        """
        block = cid if isinstance(cid, Block) else self.block(cid)
        size = self.size(block)
        end = size if length is None else min(size, offset + length)
        given = 0
        for piece in self._read(block, offset, end):
            given += len(piece)
            yield piece
        if given != max(0, end - offset):  # cannot happen if every size was checked
            raise IntegrityError(f"file {block.cid} gave {given} bytes, not {end - offset}")

    def _read(self, block: Block, start: int, end: int | None) -> Iterator[bytes]:
        # Depth first with a stack of its own, not recursion: a valid but hostile file can
        # be thousands of levels deep.  Each entry yields the (child, start, end, parent,
        # size the parent gives it) still to read under one node, fetching a child only
        # when its turn comes.
        top: tuple[Block | bytes, int, int | None, Block | None, int] = (block, start, end, None, 0)
        stack: list[Iterator[tuple[Block | bytes, int, int | None, Block | None, int]]]
        stack = [iter([top])]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            block, start, end, parent, expected = item
            if isinstance(block, bytes):  # a raw leaf's binary CID: its bytes are the file's
                data = inline_data(block) if block[2] == 0 else None  # identity: no source
                if data is None:
                    data = self.source.get(block)
                if len(data) != expected:
                    raise _wrong_size(parent, to_cid(block), expected, len(data))
                yield data[start:end]
                continue
            if block.cid.codec.code == RAW:
                if parent is not None and len(block.data) != expected:
                    raise _wrong_size(parent, block.cid, expected, len(block.data))
                yield block.data[start:end]
                continue
            meta = block.unixfs
            if meta is None or meta.type not in (UnixFSType.FILE, UnixFSType.RAW):
                kind = block.kind if meta is not None else block.cid.codec.name
                raise IsADirectoryError(f"{block.cid} is a {kind}, not a file")
            size = self.size(block)
            if parent is not None and size != expected:
                raise _wrong_size(parent, block.cid, expected, size)
            own = meta.data or b""
            if start < len(own) and (end is None or start < end):
                yield own[start:end]
            stack.append(self._file_parts(block, len(own), start, end))

    def _file_parts(
        self, block: Block, pos: int, start: int, end: int | None
    ) -> Iterator[tuple[Block | bytes, int, int | None, Block, int]]:
        """The children of a file node that hold bytes of [start, end), with the range
        relative to each and the size the node gives it; ``pos`` is where the first child
        begins.  A raw leaf comes as its binary CID: it needs no ``CID`` object (which
        costs more than hashing it)."""
        for link, size in zip(block.node.links, block.unixfs.blocksizes, strict=True):
            if end is not None and pos >= end:
                break
            if pos + size > start:
                raw = link.hash[:2] == RAW_CID_PREFIX and isinstance(link.hash, bytes)
                child = link.hash if raw else self.block(link.hash)
                yield child, max(0, start - pos), None if end is None else end - pos, block, size
            pos += size

    def cat(self, cid: CID | str) -> bytes:
        return b"".join(self.read(cid))

    def ls(self, cid: CID | str) -> list[Entry]:
        """Entries of a UnixFS directory (HAMT shards flattened, names as stored)."""
        return list(self.entries(cid))

    def entries(self, cid: CID | str, start: int = 0, limit: int | None = None) -> Iterator[Entry]:
        """``ls`` one entry at a time, from the ``start``-th, at most ``limit`` of them:
        a listing of any length can be printed as it goes, or shown a page at a time.

        Each entry's kind and size come from its block, read once however many entries
        link it; a raw block is a file of its link's size, and is not read at all (an
        identity CID is still checked against the hash policy).
        """
        block = self.block(cid)
        if block.kind != "directory":
            raise NotADirectoryError(f"{block.cid} is not a directory")
        known: dict[bytes, tuple[str, int | None]] = {}
        links = itertools.islice(self._dir_links(block), start, None)
        for name, link_hash, tsize in itertools.islice(links, limit):
            key = bytes(link_hash)
            if key[:2] == RAW_CID_PREFIX and inline_data(key) is None:
                check_cid(key)  # the hash policy, without decoding a CID
                yield Entry(name, key, tsize, "file")
                continue
            if key not in known:
                child = self.block(key)
                size = self._declared_size(child) if child.kind == "file" else None
                known[key] = (child.kind, size)
            kind, size = known[key]
            yield Entry(name, key, tsize if size is None else size, kind)

    def _dir_links(self, block: Block) -> Iterator[tuple[str, bytes, int]]:
        """A directory's entries as name, binary CID and Tsize (HAMT shards flattened)."""
        shard = block.unixfs.type == UnixFSType.HAMT_SHARD
        if not shard:
            for link in block.node.links:
                yield link.name or "", link.hash, link.tsize or 0
            return
        # HAMT shards in order, with a stack rather than recursion (see ``_read``).  An
        # entry must sit in the slot its name hashes to at every level, where a path
        # lookup would find it: one elsewhere is malformed, refused rather than listed.
        stack = [(iter(_named_links(block)), block)]
        route: list[int] = []  # the slots of the sub-shards down to the current one
        while stack:
            links, shard = stack[-1]
            link = next(links, None)
            if link is None:
                stack.pop()
                if route:
                    route.pop()
                continue
            slot = slot_of(link.name)
            if slot is None:
                raise IntegrityError(
                    f"HAMT shard {shard.cid} has a link named {shown(link.name)}, which names "
                    "no slot"
                )
            if len(link.name) == 2:
                if len(stack) >= HAMT_MAX_DEPTH:
                    raise ValueError(f"HAMT under {block.cid} is nested deeper than its hash")
                sub = _shard(self.block(link.hash))
                stack.append((iter(_named_links(sub)), sub))
                route.append(slot)
                continue
            name = link.name[2:]
            if name_hash(name)[: len(route) + 1] != bytes([*route, slot]):
                raise IntegrityError(
                    f"HAMT shard {shard.cid} holds {shown(name)} in a slot its name does "
                    "not hash to"
                )
            yield name, link.hash, link.tsize or 0

    @staticmethod
    def decode(cid: CID, data: bytes) -> Block:
        """A block's bytes (already checked against ``cid``) with its dag-pb node and
        UnixFS data decoded; other codecs are decoded when their links are asked for."""
        block = Block(cid, data)
        if cid.codec.code == DAG_PB:
            try:
                block.node = decode_node(data)
            except ValueError as exc:  # it hashes right, so the DAG itself is malformed
                raise IntegrityError(f"block {cid} is not valid dag-pb: {exc}") from None
            if block.node.data is not None:
                try:
                    block.unixfs = decode_unixfs(block.node.data)
                except ValueError:
                    block.unixfs = None
        return block

    @staticmethod
    def links(block: Block) -> list[CID]:
        """All CIDs a block links to (dag-pb, DAG-CBOR or DAG-JSON links), in order; none
        for raw blocks and codecs without links howto knows of."""
        if block.node is not None:
            return [as_cid(link.hash) for link in block.node.links]
        if block.cid.codec.code in (DAG_CBOR, DAG_JSON):
            return [to_cid(c) for c in cbor_links(decode_ipld(block))]
        return []

    def walk(self, cid: CID | str, scope: str = "all", dups: bool = False) -> Iterator[Block]:
        """Blocks of a DAG depth-first, each once; ``scope`` as in the trustless gateway.

        ``block``: just this block; ``entity``: a file's blocks, a directory's own
        node(s) with HAMT shards but not its children, or a DAG-CBOR or DAG-JSON block
        alone; ``all``: everything reachable.  ``dups=True`` gives a block again each
        time the walk meets it (a trustless ``dups=y`` reply), up to ``MAX_WALK`` blocks.
        """
        seen: set[bytes] = set()
        stack = [to_cid(cid)]
        top = True
        given = 0
        while stack:
            current = stack.pop()
            if bytes(current) in seen and not dups:
                continue
            seen.add(bytes(current))
            given += 1
            if given > MAX_WALK:
                raise ValueError(f"the DAG under {cid} repeats blocks past {MAX_WALK} visits")
            block = self.block(current)
            yield block
            if scope == "block":
                return
            children = self.links(block)
            if scope == "entity" and block.kind == "directory":
                if block.unixfs.type == UnixFSType.HAMT_SHARD:
                    links = _named_links(block)
                    children = [as_cid(link.hash) for link in links if len(link.name) == 2]
                else:
                    children = []
            elif scope == "entity" and block.cid.codec.code in (DAG_CBOR, DAG_JSON):
                children = []  # a document's entity is the document, not what it links to
            elif scope == "entity" and not top and block.kind != "file":
                children = []
            top = False
            stack.extend(reversed(children))


def _wrong_size(parent: Block, child: CID, expected: int, held: int) -> IntegrityError:
    return IntegrityError(
        f"file node {parent.cid} says its child {cid_text(child)} holds {expected} bytes, "
        f"but it holds {held}"
    )


def cbor_links(value: object) -> Iterator[CID]:
    """The links in a decoded DAG-CBOR value, in order (a loop, however deep it nests)."""
    stack = [iter([value])]
    while stack:
        item = next(stack[-1], _DONE)
        if item is _DONE:
            stack.pop()
        elif isinstance(item, CID):
            yield item
        elif isinstance(item, dict):
            stack.append(iter(item.values()))
        elif isinstance(item, list):
            stack.append(iter(item))


_DONE = object()


def decode_ipld(block: Block) -> object:
    """A DAG-CBOR or DAG-JSON block decoded (links as ``CID``); ``ValueError`` (not
    ``RecursionError``) when it nests too deeply for the decoder, which recurses per level."""
    try:
        if block.cid.codec.code == DAG_JSON:
            return decode_dag_json(block.data)
        return dag_cbor.decode(block.data)
    except RecursionError:
        raise ValueError(f"IPLD block {block.cid} nests too deeply to decode") from None


def _named_links(shard: Block) -> list:
    """A HAMT shard's links, each checked to have a name (two hex digits for a sub-shard,
    more for an entry): one without is malformed, not a crash."""
    if problem := shard_problem(shard.unixfs):
        raise IntegrityError(f"HAMT shard {shard.cid} {problem}")
    links = shard.node.links
    for link in links:
        if not link.name or len(link.name) < 2:
            raise IntegrityError(f"HAMT shard {shard.cid} has a link without a proper name")
    return links


def _shard(block: Block) -> Block:
    """``block``, checked to be a HAMT shard (what a two-character link in one points to)."""
    if block.unixfs is None or block.unixfs.type != UnixFSType.HAMT_SHARD:
        raise ValueError(f"{block.cid} is linked as a HAMT shard but is not one")
    return block


__all__ = [
    "HAMT_MAX_DEPTH",
    "MAX_WALK",
    "Block",
    "BlockCache",
    "Entry",
    "Resolver",
    "as_cid",
    "cbor_links",
    "decode_ipld",
]
