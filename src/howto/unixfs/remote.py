"""Importing what an fsspec URL names (``s3://``, ``gs://``, ``https://``…) as ``ipfs add``
would import the same files on disk: same names, same order, same CIDs.

The listing is one request (``find``) for a whole tree; files are then streamed in the
order kubo visits them.  Small files are fetched a batch at a time, many requests at once
and one batch ahead of the hashing, because an object store answers each request slowly
but serves many in parallel; large files are read in ranged windows.  Nothing is copied to
local disk first, and memory stays bounded by one batch and one window.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from ..blocks.bucket import storage_options_for, translated
from ..formats.dagpb import PBLink
from .importer import Added, Importer, Node

if TYPE_CHECKING:  # fsspec loads when a URL is first opened
    import fsspec

#: Files up to this size are fetched whole, in concurrent batches.
SMALL_FILE = 4 * 1024 * 1024
#: A batch: at most this many files and this many bytes.
BATCH_FILES = 128
BATCH_BYTES = 64 * 1024 * 1024
#: The window a large file is read in.
WINDOW = 16 * 1024 * 1024


@dataclass
class RemoteEntry:
    """A file or directory under a URL, as listed."""

    path: str
    kind: str  # "file" or "directory"
    size: int = 0
    children: dict[str, RemoteEntry] = field(default_factory=dict)


def open_url(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system and path of ``url`` (S3 endpoints from the standard variables)."""
    import fsspec

    return fsspec.core.url_to_fs(url, **storage_options_for(url))


def name_of(url: str) -> str:
    """The name kubo would print for the path: its last part."""
    rest = url.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    return rest.rsplit("/", 1)[-1] or rest


def stat_url(url: str, recursive: bool) -> RemoteEntry:
    """What ``url`` is; ``FileNotFoundError``/``IsADirectoryError`` as for local paths."""
    fs, path = open_url(url)
    with translated(url, fs):
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{url}: no such file or directory") from None
    kind = "directory" if info.get("type") == "directory" else "file"
    if kind == "directory" and not recursive:
        raise IsADirectoryError(f"{url} is a directory, use -r to add directories")
    return RemoteEntry(path.rstrip("/"), kind, int(info.get("size") or 0))


def list_tree(url: str, hidden: bool) -> RemoteEntry:
    """The whole tree under the directory ``url``, hidden names left out unless ``hidden``."""
    fs, path = open_url(url)
    root = path.rstrip("/")
    top = RemoteEntry(root, "directory")
    with translated(url, fs):
        found = fs.find(root, withdirs=True, detail=True)
    prefix = root + "/"
    for name, info in sorted(found.items()):
        name = name.rstrip("/")
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].split("/")
        if not hidden and any(part.startswith(".") for part in parts):
            continue
        node = top
        for part in parts[:-1]:
            node = node.children.setdefault(part, RemoteEntry(f"{node.path}/{part}", "directory"))
        kind = "directory" if info.get("type") == "directory" else "file"
        existing = node.children.get(parts[-1])
        if existing is None or existing.kind == "file":
            node.children[parts[-1]] = RemoteEntry(name, kind, int(info.get("size") or 0))
            if existing is not None and kind == "directory":
                node.children[parts[-1]].children = existing.children
    return top


def tree_size(entry: RemoteEntry) -> int:
    """Bytes in every file under ``entry``."""
    if entry.kind == "file":
        return entry.size
    return sum(tree_size(child) for child in entry.children.values())


def _files_in_order(entry: RemoteEntry) -> Iterator[RemoteEntry]:
    if entry.kind == "file":
        yield entry
        return
    for name in sorted(entry.children):
        yield from _files_in_order(entry.children[name])


class _Windows(io.RawIOBase):
    """A large file read in ranged windows, the next one fetched while this one is used."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, size: int, pool) -> None:
        super().__init__()
        self.fs, self.path, self.size, self.pool = fs, path, size, pool
        self.offset = 0  # of the next window to fetch
        self.window = memoryview(b"")
        self.next: Future | None = self._fetch()

    def _fetch(self) -> Future | None:
        if self.offset >= self.size:
            return None
        start, end = self.offset, min(self.offset + WINDOW, self.size)
        self.offset = end
        return self.pool.submit(self.fs.cat_file, self.path, start=start, end=end)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self.window:
            if self.next is None:
                return 0
            self.window = memoryview(self.next.result())
            self.next = self._fetch()
            if not self.window:
                return 0
        n = min(len(buffer), len(self.window))
        buffer[:n] = self.window[:n]
        self.window = self.window[n:]
        return n


class _Streams:
    """Each file's bytes in walk order; small ones fetched in batches, one batch ahead."""

    def __init__(self, url: str, fs: fsspec.AbstractFileSystem, files: list[RemoteEntry]):
        self.url = url
        self.fs = fs
        self.files = files
        self.batches = self._batches()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="howto-prefetch")
        self.windows = ThreadPoolExecutor(1, thread_name_prefix="howto-window")
        self.pending: Future | None = None
        self.ready: dict[str, bytes] = {}
        self._prefetch()

    def _batches(self) -> Iterator[list[str]]:
        batch: list[str] = []
        size = 0
        for entry in self.files:
            if entry.size > SMALL_FILE:
                continue
            if batch and (len(batch) == BATCH_FILES or size + entry.size > BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(entry.path)
            size += entry.size
        if batch:
            yield batch

    def _fetch(self, paths: list[str]) -> dict[str, bytes]:
        with translated(self.url, self.fs):
            got = self.fs.cat(paths, on_error="raise")
        if isinstance(got, bytes):  # one path may come back bare
            got = {paths[0]: got}
        return {key.rstrip("/"): value for key, value in got.items()}

    def _prefetch(self) -> None:
        batch = next(self.batches, None)
        self.pending = self.pool.submit(self._fetch, batch) if batch else None

    def open(self, entry: RemoteEntry) -> BinaryIO:
        if entry.size > SMALL_FILE:
            return _Windows(self.fs, entry.path, entry.size, self.windows)
        while entry.path not in self.ready:
            if self.pending is None:
                raise FileNotFoundError(f"{entry.path}: vanished while it was being added")
            self.ready = self.pending.result()
            self._prefetch()
        return io.BytesIO(self.ready.pop(entry.path))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.windows.shutdown(wait=True, cancel_futures=True)


def walk_url(
    importer: Importer,
    url: str,
    entry: RemoteEntry,
    name: str,
    progress: Callable[[int], object] | None = None,
) -> Iterator[tuple[Added, Node]]:
    """Import the tree ``entry`` of ``url``; yield each entry after its content, the top last.

    Mirrors ``howto.importer.walk``: directories sorted by name, each file's blocks in
    kubo's balanced layout.
    """
    fs, _ = open_url(url)
    streams = _Streams(url, fs, list(_files_in_order(entry)))
    try:
        yield from _walk(importer, streams, entry, name, progress)
    finally:
        streams.close()


def _walk(
    importer: Importer,
    streams: _Streams,
    entry: RemoteEntry,
    name: str,
    progress: Callable[[int], object] | None,
) -> Iterator[tuple[Added, Node]]:
    if entry.kind == "directory":
        links = []
        for child_name in sorted(entry.children):
            child = None
            for added, child in _walk(
                importer, streams, entry.children[child_name], f"{name}/{child_name}", progress
            ):
                yield added, child
            links.append(PBLink(child.cid, child_name, child.tsize))
        node = importer.add_directory_links(links)
    else:
        with streams.open(entry) as f, translated(streams.url, streams.fs):
            node = importer.add_stream(f, progress)
    yield Added(node.cid, name, node.filesize), node


__all__ = ["RemoteEntry", "list_tree", "name_of", "open_url", "stat_url", "tree_size", "walk_url"]
