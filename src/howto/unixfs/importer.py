"""Files and directories → UnixFS DAGs, with the same CIDs as kubo's ``ipfs add``.

Files are cut into fixed-size chunks and arranged in kubo's balanced layout: every inner
node holds at most 174 links and all subtrees but the last are full.  Directories are
dag-pb nodes with links sorted by name; large ones become HAMT shards (``hamt.py``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO

from ..formats.cids import DAG_PB, RAW, cid_bytes
from ..formats.dagpb import (
    PBLink,
    PBNode,
    UnixFSData,
    UnixFSType,
    encode_node,
    encode_unixfs,
    varint,
)
from .hamt import build_directory

DEFAULT_CHUNK = 262144
MAX_CHUNK = 2096896  # kubo 0.40+: 2 MiB less 256 bytes (boxo/chunker)
MAX_LINKS = 174

BlockSink = Callable[[bytes, bytes], None]

# Binary CID prefixes (version, codec, sha2-256, 32 bytes) for the leaf hot path.
_RAW_V1 = bytes([0x01, RAW, 0x12, 0x20])
_PB_V1 = bytes([0x01, DAG_PB, 0x12, 0x20])
_PB_V0 = bytes([0x12, 0x20])


@dataclass(frozen=True)
class Options:
    """The ``ipfs add`` settings that decide a CID."""

    cid_version: int = 0
    raw_leaves: bool = False
    chunk_size: int = DEFAULT_CHUNK
    hidden: bool = False

    @classmethod
    def create(
        cls,
        cid_version: int = 0,
        raw_leaves: bool | None = None,
        chunker: str = f"size-{DEFAULT_CHUNK}",
        hidden: bool = False,
    ) -> Options:
        """Validate user-facing options; ``--cid-version 1`` implies raw leaves, as in kubo."""
        if cid_version not in (0, 1):
            raise ValueError(f"unknown CID version {cid_version!r}: use 0 or 1")
        if raw_leaves is None:
            raw_leaves = cid_version == 1
        return cls(cid_version, raw_leaves, parse_chunker(chunker), hidden)


def parse_chunker(spec: str) -> int:
    """Chunk size from a ``size-N`` chunker string (the only chunker supported)."""
    if spec == "default":
        return DEFAULT_CHUNK
    match = re.fullmatch(r"size-(\d+)", spec or "")
    if not match:
        raise ValueError(f"unsupported chunker {spec!r}: use size-N (N bytes per chunk)")
    size = int(match.group(1))
    if not 0 < size <= MAX_CHUNK:
        raise ValueError(f"chunker size {size} out of range: use 1 to {MAX_CHUNK} bytes")
    return size


@dataclass(frozen=True)
class Node:
    """An imported node: binary CID, cumulative size (Tsize) and file bytes it holds."""

    cid: bytes
    tsize: int
    filesize: int = 0


class Importer:
    """Turns bytes, files and directory trees into blocks handed to ``sink``."""

    def __init__(self, options: Options, sink: BlockSink | None = None) -> None:
        self.options = options
        self.sink = sink
        self.pb_version = options.cid_version
        self._pb_prefix = _PB_V0 if options.cid_version == 0 else _PB_V1
        self._frames: dict[int, tuple[bytes, bytes]] = {}
        self._buffer: memoryview | None = None

    def _emit_pb(self, node: PBNode) -> tuple[bytes, int]:
        block = encode_node(node)
        cid = cid_bytes(block, DAG_PB, self.pb_version)
        if self.sink:
            self.sink(cid, block)
        return cid, len(block)

    def _leaf(self, chunk: bytes | memoryview) -> Node:
        """One chunk as a leaf block; ``chunk`` may be a view into a reused buffer.

        The chunk is hashed in place (never copied); bytes are made only for the sink.
        """
        size = len(chunk)
        if self.options.raw_leaves:
            cid = _RAW_V1 + sha256(chunk).digest()
            if self.sink:
                self.sink(cid, bytes(chunk))
            return Node(cid, size, size)
        head, tail = self._leaf_frame(size)
        digest = sha256(head)
        digest.update(chunk)
        digest.update(tail)
        cid = self._pb_prefix + digest.digest()
        if self.sink:
            self.sink(cid, b"".join((head, chunk, tail)))
        return Node(cid, len(head) + size + len(tail), size)

    def _leaf_frame(self, size: int) -> tuple[bytes, bytes]:
        """The dag-pb bytes before and after a ``size``-byte chunk in a UnixFS file leaf.

        The block is ``PBNode{Data: UnixFS{Type: File, Data: chunk, filesize: size}}``,
        exactly what ``encode_node`` writes; the frame is cached for the usual chunk size.
        """
        cached = self._frames.get(size)
        if cached is not None:
            return cached
        data_field = b"\x12" + varint(size) if size else b""
        tail = b"\x18" + varint(size)
        inner_len = 2 + len(data_field) + size + len(tail)
        head = b"\x0a" + varint(inner_len) + b"\x08\x02" + data_field
        if size == self.options.chunk_size:
            self._frames[size] = (head, tail)
        return head, tail

    def _parent(self, children: list[Node]) -> Node:
        meta = UnixFSData(
            UnixFSType.FILE,
            filesize=sum(c.filesize for c in children),
            blocksizes=[c.filesize for c in children],
        )
        links = [PBLink(c.cid, "", c.tsize) for c in children]
        cid, blen = self._emit_pb(PBNode(links, encode_unixfs(meta)))
        return Node(cid, blen + sum(c.tsize for c in children), meta.filesize)

    def add_stream(self, stream: BinaryIO, progress: Callable[[int], object] | None = None) -> Node:
        """Import one file's bytes in kubo's balanced layout.

        Chunks are read into one reused buffer and hashed where they lie, so memory stays
        flat and no byte is copied unless a sink keeps the blocks.
        """
        levels: list[list[Node]] = [[]]
        size = self.options.chunk_size
        if self._buffer is None:  # one buffer for every file this importer reads
            self._buffer = memoryview(bytearray(size))
        view = self._buffer
        first = True
        while True:
            got = _read_into(stream, view)
            if not got and not first:
                break
            first = False
            levels[0].append(self._leaf(view[:got]))
            if progress:
                progress(got)
            level = 0
            while len(levels[level]) == MAX_LINKS:
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(self._parent(levels[level]))
                levels[level] = []
                level += 1
            if got < size:
                break
        level = 0
        while not (level == len(levels) - 1 and len(levels[level]) == 1):
            if levels[level]:
                if level + 1 == len(levels):
                    levels.append([])
                levels[level + 1].append(self._parent(levels[level]))
            level += 1
        return levels[level][0]

    def add_bytes(self, data: bytes) -> Node:
        import io

        return self.add_stream(io.BytesIO(data))

    def add_symlink(self, target: str) -> Node:
        meta = UnixFSData(UnixFSType.SYMLINK, data=os.fsencode(target))
        cid, blen = self._emit_pb(PBNode(data=encode_unixfs(meta)))
        return Node(cid, blen)

    def add_directory_links(self, links: list[PBLink]) -> Node:
        """A directory from its entries: a basic node, or a HAMT when it is too large."""
        cid, tsize = build_directory(links, self._emit_pb)
        return Node(cid, tsize)


def _read_into(stream: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``stream`` unless it ends first (pipes return less); bytes read."""
    readinto = getattr(stream, "readinto", None)
    got = 0
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:])
        else:  # a file-like object with only read()
            data = stream.read(len(view) - got)
            n = len(data)
            view[got : got + n] = data
        if not n:
            break
        got += n
    return got


@dataclass(frozen=True)
class Added:
    """One ``added <cid> <name>`` line: what was imported under which name."""

    cid: bytes
    name: str
    size: int


def walk(
    importer: Importer,
    path: Path,
    name: str,
    recursive: bool,
    progress: Callable[[int], object] | None = None,
) -> Iterator[tuple[Added, Node]]:
    """Import ``path``; yield each entry after its content, the given path last.

    Folders are walked with a stack of their own, not by recursion: a tree may nest
    deeper than Python's call stack (a folder 1,500 levels deep is a valid input).
    """
    st = os.lstat(path)  # symlinks are stored as links, never followed (kubo's default)
    if not stat.S_ISDIR(st.st_mode):
        node = _file_or_link(importer, path, st, progress)
        yield Added(node.cid, name, node.filesize), node
        return
    if not recursive:
        raise IsADirectoryError(f"{path} is a directory, use -r to add directories")
    # per open folder: its name, the entries still to import, the links made so far, and
    # the name its parent links it by
    stack = [(name, _entries(importer, path), [], "")]
    while stack:
        folder, entries, links, link_name = stack[-1]
        entry = next(entries, None)
        if entry is None:  # the folder is complete: its node, then its parent's link
            stack.pop()
            node = importer.add_directory_links(links)
            yield Added(node.cid, folder, node.filesize), node
            if stack:
                stack[-1][2].append(PBLink(node.cid, link_name, node.tsize))
            continue
        child, child_name = Path(entry.path), f"{folder}/{entry.name}"
        st = os.lstat(child)
        if stat.S_ISDIR(st.st_mode):
            stack.append((child_name, _entries(importer, child), [], entry.name))
            continue
        node = _file_or_link(importer, child, st, progress)
        yield Added(node.cid, child_name, node.filesize), node
        links.append(PBLink(node.cid, entry.name, node.tsize))


def _entries(importer: Importer, folder: Path) -> Iterator[os.DirEntry]:
    """A folder's entries by name, hidden ones only if the options say so."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    hidden = importer.options.hidden
    return iter([e for e in entries if hidden or not e.name.startswith(".")])


def _file_or_link(
    importer: Importer, path: Path, st: os.stat_result, progress: Callable[[int], object] | None
) -> Node:
    if stat.S_ISLNK(st.st_mode):
        return importer.add_symlink(os.readlink(path))
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb", buffering=0) as f:
            return importer.add_stream(f, progress)
    raise ValueError(f"{path} is neither a file, a directory nor a symlink")


__all__ = [
    "DEFAULT_CHUNK",
    "MAX_CHUNK",
    "MAX_LINKS",
    "Added",
    "Importer",
    "Node",
    "Options",
    "parse_chunker",
    "walk",
]
