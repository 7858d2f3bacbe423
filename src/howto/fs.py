"""Verified ``ipfs://`` reads for fsspec, intake, xarray and zarr.

Every request asks the gateway for a trustless response (a CAR of the blocks on the path
and of the entity at its end), checks each block against its CID, and walks the DAG from
the requested root itself: the bytes returned are the ones the CID names, or the read
fails with ``IntegrityError``.  ``X-Ipfs-Roots`` must agree with that walk too.  Once the
directories on a path are verified, a file under them that is one raw block (a zarr
chunk, typically) is asked for by its own CID with ``format=raw`` and hashed on arrival.

Plain ipfsspec users are unaffected until they opt in with ``enable()`` (which
``howto.get_intake_catalog`` does), after which ``ipfs://`` URLs in this process go
through ``VerifiedIPFSFileSystem``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import weakref
from urllib.parse import quote

import aiohttp
import fsspec
from fsspec.asyn import AsyncFileSystem, sync_wrapper
from fsspec.spec import AbstractBufferedFile
from multiformats import CID

from .car import CARError, read_car_raw
from .cids import RAW, parse_cid, verify_block
from .dagpb import read_varint
from .errors import GatewayError, IntegrityError, NotFoundError
from .gateway import CAR_TYPE, RAW_TYPE
from .gateways import gateway_url
from .resolver import BlockCache, Resolver, cid_text

DEFAULT_TIMEOUT = 30.0
#: A leaf up to this size is hashed on the event loop: a worker thread costs more than
#: it saves when the loop has little else to do (one chunk per request, as zarr reads).
INLINE_LEAF_BYTES = 1 << 20
#: Path resolutions remembered per file system (then forgotten all at once).
RESOLVED_PATHS = 1 << 16
#: Responses at least this large are verified in a worker thread: hashing releases the GIL,
#: so the event loop keeps serving other requests meanwhile.
THREAD_BYTES = 64 * 1024


class GatewayTimeout(GatewayError):
    """The gateway did not answer in time (told apart from not-found).

    Deliberately not a ``TimeoutError``: fsspec's synchronous wrappers replace any
    ``TimeoutError`` with a bare ``FSTimeoutError``, which would lose the gateway and CID.
    """


class _Blocks:
    """Blocks received in one verified response, keyed by multihash."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.blocks: dict[bytes, bytes] = {}

    def get(self, cid: CID) -> bytes:
        try:
            return self.blocks[bytes(cid.digest)]
        except KeyError:
            raise IntegrityError(f"{self.where}: the response lacks block {cid}") from None


class _Miss(Exception):
    """A block that is not in the cache (so the gateway must be asked)."""


class _CacheOnly:
    """A source with no blocks: a resolver over it can use its cache and nothing else."""

    def get(self, cid: CID) -> bytes:
        raise _Miss


@functools.lru_cache(maxsize=1024)
def _root(text: str) -> CID:
    return parse_cid(text)[0]  # cached: decoding a CID string takes ~0.3 ms


def _split(path: str) -> tuple[CID, str]:
    """``CID/sub/path`` → the CID and the sub-path."""
    head, _, subpath = path.partition("/")
    return _root(head), subpath.strip("/")


def _same_roots(header: str, cids: list[CID]) -> bool:
    """Whether an ``X-Ipfs-Roots`` value names ``cids`` (any CID version or base)."""
    claimed = [c.strip() for c in header.split(",") if c.strip()]
    if claimed == [cid_text(c) for c in cids]:
        return True
    try:
        return [CID.decode(c).digest for c in claimed] == [c.digest for c in cids]
    except Exception:
        return False


def _read_car(body: bytes, where: str) -> dict[bytes, bytes]:
    """The blocks of a CAR response by multihash, every one checked against its CID."""
    try:
        _, sections = read_car_raw(io.BytesIO(body), roots=False)
        return {_multihash(cid): data for cid, data in sections}
    except CARError as exc:
        raise CARError(f"{where}: {exc}") from None


def _multihash(raw_cid: bytes) -> bytes:
    """The multihash of a binary CID: all of a CIDv0, what follows version and codec in v1."""
    return raw_cid if raw_cid[0] != 1 else raw_cid[read_varint(raw_cid, 1)[1] :]


def _timeout() -> float:
    return float(os.environ.get("HOWTO_GATEWAY_TIMEOUT", DEFAULT_TIMEOUT))


class VerifiedIPFSFileSystem(AsyncFileSystem):
    """An fsspec file system for ``ipfs://CID/path`` that trusts no gateway."""

    protocol = "ipfs"
    sep = "/"

    def __init__(
        self,
        gateway_addr: str | None = None,
        timeout: float | None = None,
        asynchronous: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        **storage_options: object,
    ) -> None:
        super().__init__(asynchronous=asynchronous, loop=loop, **storage_options)
        self.gateway_addr = gateway_addr
        self.timeout = timeout if timeout is not None else _timeout()
        self._sessions: dict[int, aiohttp.ClientSession] = {}
        # Verified directory and file nodes: paths through them resolve without asking.
        self._cache = BlockCache()
        self._resolved: dict[str, list[CID]] = {}  # path → CIDs, through verified nodes
        weakref.finalize(self, _close_sessions, self._sessions)

    @property
    def gateway(self) -> str:
        return (self.gateway_addr or gateway_url()).rstrip("/")

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path[len("ipfs://") :] if path.startswith("ipfs://") else path
        return path.removeprefix("/ipfs/").strip("/")

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(id(loop))
        if session is None or session.closed:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._sessions[id(loop)] = session
        return session

    async def _fetch(
        self, path: str, scope: str, entity_bytes: str | None = None
    ) -> tuple[Resolver, list[CID]]:
        """Ask for a CAR, verify it, and resolve ``path`` over its blocks only.

        Path segments through directories already verified (cached) are resolved here,
        and the gateway is asked for the target CID itself; ``block`` scope requests for
        a cached node need no request at all.
        """
        path = self._strip_protocol(path)
        root, subpath = _split(path)
        gateway = self.gateway
        where = f"gateway {gateway}, /ipfs/{path}"
        try:
            known = Resolver(_CacheOnly(), self._cache).resolve(root, subpath)
        except _Miss:
            known = None
        except NotFoundError as exc:
            raise NotFoundError(f"{exc} ({where})") from None
        if known is not None and scope == "block" and self._cache.get(known[-1]):
            return Resolver(_CacheOnly(), self._cache), known
        query = f"?format=car&dag-scope={scope}"
        if entity_bytes is not None:
            query += f"&entity-bytes={entity_bytes}"
        if known is not None:
            target = cid_text(known[-1])
        else:
            target = cid_text(root) + (f"/{quote(subpath, safe='/')}" if subpath else "")
        body, roots_header = await self._get(gateway, target + query, CAR_TYPE, path)
        verify = functools.partial(self._verify, body, roots_header, root, subpath, known, where)
        if len(body) < THREAD_BYTES:
            return verify()
        return await asyncio.to_thread(verify)

    async def _get(
        self, gateway: str, target: str, accept: str, path: str
    ) -> tuple[bytes, str | None]:
        """GET ``/ipfs/{target}``: the body and ``X-Ipfs-Roots``, or a clear error."""
        session = await self._session()
        try:
            async with session.get(
                f"{gateway}/ipfs/{target}", headers={"Accept": accept}
            ) as response:
                if response.status in (404, 410):
                    raise NotFoundError(f"/ipfs/{path} not found at gateway {gateway}")
                if response.status == 400:
                    raise NotFoundError(f"gateway {gateway} rejected /ipfs/{path} (HTTP 400)")
                if response.status != 200:
                    raise GatewayError(
                        f"gateway {gateway} answered HTTP {response.status} for /ipfs/{path}"
                    )
                return await response.read(), response.headers.get("X-Ipfs-Roots")
        except TimeoutError:
            raise GatewayTimeout(
                f"gateway {gateway} did not answer within {self.timeout:g} s for /ipfs/{path}"
            ) from None
        except aiohttp.ClientError as exc:
            raise GatewayError(f"cannot reach gateway {gateway} for /ipfs/{path}: {exc}") from None

    def _cached_leaf(self, path: str) -> CID | None:
        """The raw block ``path`` names, when directories already verified lead to it."""
        path = self._strip_protocol(path)
        cids = self._resolved.get(path)
        if cids is None:
            root, subpath = _split(path)
            try:
                cids = Resolver(_CacheOnly(), self._cache).resolve(root, subpath)
            except (_Miss, NotFoundError):
                return None
            if len(self._resolved) >= RESOLVED_PATHS:
                self._resolved.clear()
            self._resolved[path] = cids
        return cids[-1] if cids[-1].codec.code == RAW else None

    async def _leaf(self, cid: CID, path: str) -> bytes:
        """A raw block fetched alone (``format=raw``) and hashed here: one file's bytes."""
        gateway = self.gateway
        text = cid_text(cid)
        body, roots_header = await self._get(gateway, f"{text}?format=raw", RAW_TYPE, path)
        where = f"gateway {gateway}, /ipfs/{path}"
        if roots_header is not None and not _same_roots(roots_header, [cid]):
            raise IntegrityError(f"{where}: X-Ipfs-Roots {roots_header!r} is not {text}")
        try:
            if len(body) <= INLINE_LEAF_BYTES:
                return verify_block(cid, body)
            return await asyncio.to_thread(verify_block, cid, body)
        except IntegrityError:
            raise IntegrityError(f"{where}: block {text} does not match its hash") from None

    def _verify(
        self,
        body: bytes,
        roots_header: str | None,
        root: CID,
        subpath: str,
        known: list[CID] | None,
        where: str,
    ) -> tuple[Resolver, list[CID]]:
        """Check every block of a CAR response and walk ``root/subpath`` over them."""
        blocks = _Blocks(where)
        blocks.blocks = _read_car(body, where)
        resolver = Resolver(blocks, self._cache)
        if known is not None:
            cids, expected = known, known[-1:]
        else:
            try:
                cids = expected = resolver.resolve(root, subpath)
            except NotFoundError as exc:
                raise NotFoundError(f"{exc} ({where})") from None
        if roots_header is not None and not _same_roots(roots_header, expected):
            raise IntegrityError(f"{where}: X-Ipfs-Roots {roots_header!r} disagree with the DAG")
        return resolver, cids

    async def _info(self, path: str, **kwargs: object) -> dict:
        resolver, cids = await self._fetch(path, "block")
        block = resolver.block(cids[-1])
        kind = {"file": "file", "directory": "directory"}.get(block.kind, "other")
        size = resolver.size(block) if kind == "file" else 0
        name = self._strip_protocol(path)
        return {"name": name, "size": size, "type": kind, "CID": str(cids[-1])}

    async def _ls(self, path: str, detail: bool = True, **kwargs: object) -> list:
        path = self._strip_protocol(path)
        resolver, cids = await self._fetch(path, "entity")
        block = resolver.block(cids[-1])
        if block.kind != "directory":
            raise NotADirectoryError(path)
        names = [f"{path}/{name}" for name, _, _ in resolver._dir_links(block)]
        if not detail:
            return names
        limit = asyncio.Semaphore(16)

        async def info(name: str) -> dict:
            async with limit:
                return await self._info(name)

        return list(await asyncio.gather(*(info(n) for n in names)))

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: object
    ) -> bytes:
        leaf = self._cached_leaf(path)
        if leaf is not None:  # one block: fetch it whole, slicing gives fsspec's semantics
            return (await self._leaf(leaf, self._strip_protocol(path)))[start:end]
        if start is None and end is None:
            resolver, cids = await self._fetch(path, "entity")
            return b"".join(resolver.read(cids[-1]))
        if (start or 0) < 0 or (end is not None and end < 0):
            size = (await self._info(path))["size"]
            start = max(0, size + start) if start and start < 0 else start
            end = size + end if end is not None and end < 0 else end
        start = start or 0
        if end is not None and end <= start:
            return b""
        last = "*" if end is None else str(end - 1)
        resolver, cids = await self._fetch(path, "entity", f"{start}:{last}")
        length = None if end is None else end - start
        return b"".join(resolver.read(cids[-1], start, length))

    cat_file = sync_wrapper(_cat_file)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs):
        if mode != "rb":
            raise NotImplementedError("ipfs:// is read-only")
        return IPFSFile(self, path, mode, block_size or "default", **kwargs)

    def ukey(self, path: str) -> str:
        """The CID: by definition an identifier that never changes."""
        return self.info(path)["CID"]


class IPFSFile(AbstractBufferedFile):
    """A read-only file whose ranges are fetched as verified CARs."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)


def _close_sessions(sessions: dict) -> None:
    for session in sessions.values():
        if not session.closed and session.connector is not None:
            session.connector._close()


def enable() -> None:
    """Route ``ipfs://`` in this process through ``VerifiedIPFSFileSystem``."""
    fsspec.register_implementation("ipfs", VerifiedIPFSFileSystem, clobber=True)


def filesystem(**options: object) -> VerifiedIPFSFileSystem:
    """A verified ``ipfs://`` file system (options: ``gateway_addr``, ``timeout``)."""
    return VerifiedIPFSFileSystem(**options)
