"""Verified ``ipfs://`` reads for fsspec, intake, xarray and zarr: a thin adapter.

The work is done by ``howto.reader.DagReader`` over a block chain (``howto.sources``):
blocks in the local repository or the bundled CARs are read directly, with no HTTP, and
only what is missing is asked of the configured gateways, in order, as trustless replies
checked block by block.  The bytes returned are the ones the CID names, or the read fails
with ``IntegrityError``.  Blocks fetched from gateways are not kept on disk here (the
command line keeps them, as kubo does); verified directory nodes are kept in memory.

Plain ipfsspec users are unaffected until they opt in with ``enable()`` (which
``howto.get_intake_catalog`` does), after which ``ipfs://`` URLs in this process go
through ``VerifiedIPFSFileSystem``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp
import fsspec
from fsspec.asyn import AsyncFileSystem, sync_wrapper
from fsspec.spec import AbstractBufferedFile
from multiformats import CID

from .blocks.bucket import open_repo
from .blocks.repo import Repo, default_repo_location
from .errors import GatewayTimeout, HowtoError, NotFoundError, PathNotSupportedError
from .formats.cids import DAG_CBOR, DAG_JSON, RAW, RAW_CID_PREFIX, cid_text, parse_cid
from .formats.dagpb import UnixFSType
from .names import ipns
from .retrieval.discovery import configured_gateways
from .retrieval.readahead import ReadAhead, Sibling, default_read_ahead
from .retrieval.reader import DagReader
from .retrieval.sources import default_chain
from .retrieval.trustless import GatewayBlocks, default_connections, default_timeout
from .unixfs.resolver import BlockCache

if TYPE_CHECKING:
    from .ipld.tree import Tree

#: Path resolutions remembered per file system (then forgotten all at once).
RESOLVED_PATHS = 1 << 16

__all__ = [
    "GatewayTimeout",
    "IPFSFile",
    "VerifiedIPFSFileSystem",
    "VerifiedIPNSFileSystem",
    "enable",
    "filesystem",
]


@functools.lru_cache(maxsize=1024)
def _root(text: str) -> CID:
    return parse_cid(text)[0]  # cached: decoding a CID string takes ~0.3 ms


def _split(path: str) -> tuple[CID, str]:
    """``CID/sub/path`` → the CID and the sub-path."""
    head, _, subpath = path.partition("/")
    return _root(head), subpath.strip("/")


class VerifiedIPFSFileSystem(AsyncFileSystem):
    """An fsspec file system for ``ipfs://CID/path`` that trusts no gateway.

    ``gateway_addr`` names the one gateway to ask for blocks that are not local (default:
    the configured ones, see ``howto.gateways``); ``offline=True`` asks none.  ``repo``
    names the repository to read first (a folder or an fsspec URL such as
    ``s3://bucket/prefix``, opened with ``repo_options``; default ``$HOWTO_REPO``).
    ``read_ahead`` bounds, in MiB, the chunks fetched ahead from gateways (default
    ``$HOWTO_READ_AHEAD`` or 32; 0 turns it off; see ``howto.retrieval.readahead``).  The
    file system pickles by these arguments, so dask workers reconnect to the same sources
    and verify every block they read themselves.
    """

    protocol = "ipfs"
    sep = "/"

    def __init__(
        self,
        gateway_addr: str | None = None,
        timeout: float | None = None,
        offline: bool = False,
        repo: str | None = None,
        repo_options: dict | None = None,
        read_ahead: float | None = None,
        asynchronous: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        **storage_options: object,
    ) -> None:
        super().__init__(asynchronous=asynchronous, loop=loop, **storage_options)
        self.gateway_addr = gateway_addr
        self.timeout = timeout if timeout is not None else default_timeout()
        self.offline = offline
        self.repo = repo
        self.repo_options = repo_options
        self._cache = BlockCache()  # verified nodes, shared by every reader of this instance
        self._readers: dict[tuple, tuple[DagReader, bool]] = {}
        self._resolved: dict[str, list[CID]] = {}  # path → CIDs, through verified nodes
        self._sessions: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}
        #: Siblings of remote chunks fetched ahead (``read_ahead`` MiB at most; 0: none).
        self.read_ahead = ReadAhead(
            most_bytes=default_read_ahead() if read_ahead is None else int(read_ahead * (1 << 20)),
            lanes=max(1, default_connections() - 2),  # two connections stay free for readers
        )
        weakref.finalize(self, _close_sessions, self._sessions)
        weakref.finalize(self, self.read_ahead.let_go_soon)

    def reader(self) -> DagReader:
        """The reader for the current repository and gateways (both may change in a process)."""
        return self._current()[0]

    def _current(self) -> tuple[DagReader, bool]:
        """``reader()``, and whether its repository is a folder on this machine, which an
        event loop may read (a bucket is read in a thread: even ``has`` waits on a network)."""
        gateways = self.gateways
        key = (self.repo or default_repo_location(), tuple(gateways))
        current = self._readers.get(key)
        if current is None:
            repo = open_repo(key[0], self.repo_options)
            chain = default_chain(gateways=gateways, timeout=self.timeout, repo=repo)
            current = self._readers[key] = (DagReader(chain, self._cache), isinstance(repo, Repo))
        return current

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("ipfs://") :] if path.startswith("ipfs://") else path
        return path.removeprefix("/ipfs/").strip("/")

    @property
    def gateways(self) -> list[str]:
        """The gateways asked, in order, for blocks that are not local (now)."""
        if self.offline:
            return []
        return [self.gateway_addr] if self.gateway_addr else configured_gateways()

    def _zarr(self, name: str) -> tuple[Tree, list[str]] | None:
        """For a path under a ``howto.ipld`` dataset (a DAG-CBOR root): its hierarchy and
        the zarr key's parts, read as an ``IPLDStore`` would; else ``None``."""
        root, subpath = _split(name)
        if root.codec.code != DAG_CBOR:
            return None
        return self.reader().zarr_tree(root), [p for p in subpath.split("/") if p]

    def _zarr_info(self, name: str, tree: Tree, parts: list[str]) -> dict:
        from .ipld.codec import Link

        value = tree.lookup(parts) if parts else tree.node([])
        if value is None:
            raise FileNotFoundError(name)
        if parts and tree.is_leaf(parts[-1], value):
            size = len(tree.leaf_bytes(parts[-1], value))
            cid = str(value.cid) if isinstance(value, Link) else name
            return {"name": name, "size": size, "type": "file", "CID": cid}
        return {"name": name, "size": 0, "type": "directory", "CID": name}

    def _info_now(self, path: str) -> dict:
        name = self._strip_protocol(path)
        if (zarr := self._zarr(name)) is not None:
            return self._zarr_info(name, *zarr)
        block, size, cids = self.reader().stat(*_split(name))
        kind = {"file": "file", "directory": "directory"}.get(block.kind, "other")
        return {"name": name, "size": size, "type": kind, "CID": str(cids[-1])}

    def _ls_now(self, path: str, detail: bool) -> list:
        name = self._strip_protocol(path)
        if (zarr := self._zarr(name)) is not None:
            tree, parts = zarr
            node = tree.node(parts)
            if node is None:
                raise NotADirectoryError(name)
            keys = [key for key, _ in tree.entries(node)]
            if not detail:
                return [f"{name}/{key}" for key in keys]
            return [self._zarr_info(f"{name}/{key}", tree, [*parts, key]) for key in keys]
        root, subpath = _split(name)
        block = self.reader().stat(root, subpath)[0]
        if block.kind != "directory":
            raise NotADirectoryError(name)
        entries = self.reader().ls(root, subpath)
        if not detail:
            return [f"{name}/{e.name}" for e in entries]
        kinds = {"file": "file", "directory": "directory"}
        return [
            {
                "name": f"{name}/{e.name}",
                "size": e.size if e.kind == "file" else 0,
                "type": kinds.get(e.kind, "other"),
                "CID": cid_text(e.raw),
            }
            for e in entries
        ]

    def _cat_now(self, path: str, start: int | None, end: int | None) -> bytes:
        reader = self.reader()
        path = self._strip_protocol(path)
        if (zarr := self._zarr(path)) is not None:
            tree, parts = zarr
            value = tree.lookup(parts) if parts else None
            if value is not None and tree.is_leaf(parts[-1], value):
                return tree.leaf_bytes(parts[-1], value)[start:end]
            # not a zarr key: a plain IPLD path through links, to the block it ends on
            try:
                resolver, cids = reader.locate(*_split(path))
            except PathNotSupportedError as exc:  # it ends inside a block: nothing to read
                raise FileNotFoundError(f"{path}: {exc}") from None
            target = resolver.block(cids[-1])
            if target.cid.codec.code in (DAG_CBOR, DAG_JSON):
                return target.data[start:end]
        cids = self._resolved.get(path)
        if cids is not None and cids[-1].codec.code == RAW:
            return reader.chain.get(cids[-1])[start:end]  # a known leaf: fetched alone
        resolver, cids = reader.locate(*_split(path))
        self._remember(path, cids)
        target = resolver.block(cids[-1])
        if target.cid.codec.code == RAW:  # one block: slicing gives fsspec's rules
            return target.data[start:end]
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = resolver.size(target)
            start = max(0, size + start) if start is not None and start < 0 else start
            end = size + end if end is not None and end < 0 else end
        start = start or 0
        if end is not None and end <= start:
            return b""
        out = io.BytesIO()  # grows in place; getvalue() hands over its bytes, no copy
        reader.read_to(out, target.cid, "", start, end)
        return out.getvalue()

    def _known(self, path: str, reader: DagReader) -> list[CID] | None:
        """The CIDs along ``CID/sub/path`` if known without I/O (remembered, or through
        nodes in ``reader``'s memory), for reads that need no thread; else ``None``."""
        cids = self._resolved.get(path)
        if cids is None:
            root, subpath = _split(path)
            if root.codec.code != DAG_CBOR and (cids := reader.known_path(root, subpath)):
                self._remember(path, cids)
        return cids

    def _remember(self, path: str, cids: list[CID]) -> None:
        if len(self._resolved) >= RESOLVED_PATHS:
            self._resolved.clear()
        self._resolved[path] = cids

    async def _info(self, path: str, **kwargs: object) -> dict:
        return await asyncio.to_thread(self._info_now, path)

    async def _ls(self, path: str, detail: bool = True, **kwargs: object) -> list:
        return await asyncio.to_thread(self._ls_now, path, detail)

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: object
    ) -> bytes:
        reader, on_disk = self._current()
        name = self._strip_protocol(path)
        cids = self._known(name, reader) if on_disk else None
        if cids is not None and cids[-1].codec.code == RAW:  # one block, a zarr chunk say
            chain = reader.chain
            if chain.has(cids[-1]):  # local: reading and hashing it here beats a thread hop
                return chain.get(cids[-1])[start:end]
            fetch = await self._fetcher(reader)
            ahead = self.read_ahead.take(cids[-1])
            self._read_ahead_of(reader, name, cids, fetch)
            if ahead is not None:
                try:
                    return (await ahead)[start:end]  # verified on arrival, like any block
                except (HowtoError, asyncio.CancelledError):
                    pass  # that fetch failed or was let go: ask again, and say why if it fails
            return (await fetch(cids[-1]))[start:end]
        data = await asyncio.to_thread(self._cat_now, path, start, end)
        cids = self._resolved.get(name) if on_disk and self.read_ahead.enabled else None
        if cids is not None and cids[-1].codec.code == RAW and not reader.chain.has(cids[-1]):
            self._read_ahead_of(reader, name, cids, await self._fetcher(reader))
        return data

    async def _fetcher(self, reader: DagReader) -> Callable[[CID], Awaitable[bytes]]:
        """How this event loop fetches one block from the reader's gateways, verified."""
        session = await self._session()
        chain = reader.chain

        async def fetch(cid: CID) -> bytes:
            failures = [(source, NotFoundError("not found")) for source in chain.local]
            return await chain.ask_remote_async(
                f"block {cid_text(cid)}", lambda s: s.aget(cid, session), failures
            )

        return fetch

    def _read_ahead_of(
        self, reader: DagReader, name: str, cids: list[CID], fetch: Callable
    ) -> None:
        """Fetch the siblings that follow a one-block file read from afar (see
        ``howto.retrieval.readahead``); they wait, verified, for their own reads."""
        if len(cids) > 1:
            entry = name.rpartition("/")[2]
            wanted = self.read_ahead.plan(cids[-2], entry, lambda: _siblings(reader, cids[-2]))
            self.read_ahead.start(wanted, fetch)
            self.read_ahead.trim()
            gateways = [
                s for s in reader.chain.remote if isinstance(s, GatewayBlocks) and not s.raw_only
            ]
            if gateways and self.read_ahead.should_stream(cids[-2]):
                session = self._sessions[id(asyncio.get_running_loop())][1]  # made by fetch
                self.read_ahead.stream(cids[-2], gateways[0].acar_blocks(cids[-2], session))

    cat_file = sync_wrapper(_cat_file)

    async def _session(self) -> aiohttp.ClientSession:
        """An HTTP session for this event loop (fsspec may drive us from several)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(id(loop), (loop, None))[1]
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=32, limit_per_host=default_connections())
            # no cookie jar: a gateway has no state to keep, and each response skips it
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
            self._sessions[id(loop)] = (loop, session)
        return session

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs):
        if mode != "rb":
            raise NotImplementedError("ipfs:// is read-only")
        return IPFSFile(self, path, mode, block_size or "default", **kwargs)

    def ukey(self, path: str) -> str:
        """The CID: by definition an identifier that never changes."""
        return self.info(path)["CID"]


class VerifiedIPNSFileSystem(VerifiedIPFSFileSystem):
    """``ipns://NAME/path``: the name's newest valid record (kept locally, or fetched from
    the gateways and verified against the name), then the ``ipfs://`` path it points at,
    through other ``/ipns/`` names as kubo follows them (``ipns.resolve_path``).

    A resolved name is remembered for at most ``NAME_SECONDS`` (or the record's TTL, when
    shorter), so a long-running reader sees a new version soon after it is published.
    """

    protocol = "ipns"
    NAME_SECONDS = 60.0

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._names: dict[str, tuple[float, str]] = {}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("ipns://") :] if path.startswith("ipns://") else path
        return path.removeprefix("/ipns/").strip("/")

    def _target(self, path: str) -> tuple[str, str]:
        """``NAME/rest`` → (``NAME/rest``, ``CID/inner/rest``) through a verified record."""
        name = self._strip_protocol(path)
        head, _, rest = name.partition("/")
        now = time.monotonic()
        known = self._names.get(head)
        if known is None or known[0] < now:
            resolved = ipns.resolve_path(head, self.reader().chain)
            root, inner = parse_cid(resolved.path)
            keep = min(self.NAME_SECONDS, resolved.ttl / 1e9)
            known = self._names[head] = (now + keep, f"{root}/{inner}".strip("/"))
        return name, f"{known[1]}/{rest}".strip("/")

    def _info_now(self, path: str) -> dict:
        name, target = self._target(path)
        return {**super()._info_now(target), "name": name}

    def _ls_now(self, path: str, detail: bool) -> list:
        name, target = self._target(path)
        entries = super()._ls_now(target, detail)
        if not detail:
            return [name + e[len(target) :] for e in entries]
        return [{**e, "name": name + e["name"][len(target) :]} for e in entries]

    def _cat_now(self, path: str, start: int | None, end: int | None) -> bytes:
        return super()._cat_now(self._target(path)[1], start, end)

    def _known(self, path: str, reader: DagReader) -> None:
        return None  # a name is resolved in a thread: it may need a gateway


class IPFSFile(AbstractBufferedFile):
    """A read-only file whose ranges are read through the verified file system."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)


def _siblings(reader: DagReader, directory: CID) -> list[Sibling]:
    """The one-block files of a directory whose node is verified and in memory (a HAMT
    or a node not read yet gives none: nothing is fetched to find out)."""
    block = reader.cache.get(directory)
    if block is None or block.node is None or block.kind != "directory":
        return []
    if block.unixfs.type != UnixFSType.DIRECTORY:
        return []
    return [
        Sibling(link.name, link.hash, link.tsize or 0)
        for link in block.node.links
        if link.hash[:2] == RAW_CID_PREFIX
    ]


def _close_sessions(sessions: dict) -> None:
    """Close each HTTP session with aiohttp's public ``ClientSession.close``, on the event
    loop it belongs to: fsspec's loop runs in a thread of its own and closes it there; a
    session whose loop is this thread's, or is gone, has its connections closed at once."""
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for loop, session in list(sessions.values()):
        if session.closed:
            continue
        if loop.is_running() and current is not loop:
            try:
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=5)
            except Exception:  # a loop stopping meanwhile: nothing left to close
                pass
        elif current is None and not loop.is_running() and not loop.is_closed():
            loop.run_until_complete(session.close())
        else:
            _close_now(session)


def _close_now(session: aiohttp.ClientSession) -> None:
    """Close a session from code that cannot wait: ``ClientSession.close`` closes every
    connection before it first waits (for the sockets to finish closing), so its coroutine
    is run up to that point and then left; the loop, if it still runs, finishes the rest."""
    closing = session.close()
    try:
        closing.send(None)
    except StopIteration:
        return
    closing.close()


def enable() -> None:
    """Route ``ipfs://`` in this process through ``VerifiedIPFSFileSystem``, and
    ``ipns://`` through ``VerifiedIPNSFileSystem``."""
    fsspec.register_implementation("ipfs", VerifiedIPFSFileSystem, clobber=True)
    fsspec.register_implementation("ipns", VerifiedIPNSFileSystem, clobber=True)


def filesystem(**options: object) -> VerifiedIPFSFileSystem:
    """A verified ``ipfs://`` file system (options: ``gateway_addr``, ``timeout``,
    ``offline``, ``repo``, ``repo_options``)."""
    return VerifiedIPFSFileSystem(**options)
