"""The gateway's aiohttp application: its routes, and which reply each request gets.

``/ipfs/{cid}[/{path}]`` is resolved here (through UnixFS folders and DAG-CBOR and
DAG-JSON links) and handed, by the format asked for and the codec of its target, to the
trustless gateway (``raw``, ``car``), the path gateway (files, directories, IPLD blocks,
``tar``) or a generated page; ``/ipns/`` goes to the IPNS replies.
"""

from __future__ import annotations

import asyncio
import functools

from aiohttp import web
from multiformats import CID

from ..blocks.chain import BlockSource, Chain
from ..errors import NotFoundError, PathNotSupportedError, UnavailableError
from ..formats.cids import CBOR, DAG_CBOR, DAG_JSON, DAG_PB, JSON, RAW, parse_cid
from ..names.ipns import RecordStore
from ..unixfs.resolver import BlockCache, Resolver
from .failures import failure_replies, mark_started
from .headers import IMMUTABLE, only_if_cached, reply_headers
from .ipns_gateway import IpnsGateway, records_for
from .negotiation import Wanted, negotiate, path_segments
from .pages import dag_preview
from .path_gateway import serve_ipld, serve_tar, serve_unixfs
from .trustless_gateway import RecordingResolver, TrustlessGateway

#: The codecs each IPLD format gives as stored: no conversion between codecs (IPIP-524).
_SERVES = {
    "dag-json": {DAG_JSON},
    "json": {DAG_JSON, JSON, RAW},
    "dag-cbor": {DAG_CBOR},
    "cbor": {DAG_CBOR, CBOR, RAW},
}
#: What a block of these codecs is served as when no format is asked for.
_NATIVE = {DAG_JSON: "dag-json", DAG_CBOR: "dag-cbor", JSON: "json", CBOR: "cbor"}


@functools.lru_cache(maxsize=1 << 15)
def _root(text: str) -> CID:
    """The CID at the head of a request path (cached: decoding a CID string is slow, and
    readers that know a directory ask for each of its blocks by CID)."""
    return parse_cid(text)[0]


class Gateway:
    """Request handlers over one block source (and the IPNS records of a repository)."""

    def __init__(self, source: BlockSource, records: RecordStore | None = None) -> None:
        self.source = source
        self.records = records if records is not None else records_for(source)
        self.cache = BlockCache()  # decoded directory and file nodes, shared by requests
        self.trustless = TrustlessGateway(source)
        self.ipns = IpnsGateway(self.records)

    def app(self) -> web.Application:
        """The aiohttp application: ``/ipfs/``, ``/ipns/`` and a one-line index."""
        app = web.Application(middlewares=[failure_replies])
        app.on_response_prepare.append(mark_started)
        app.router.add_route("GET", "/ipfs/{tail:.*}", self.handle)
        app.router.add_route("HEAD", "/ipfs/{tail:.*}", self.handle)
        app.router.add_route("GET", "/ipns/{tail:.*}", self.handle_ipns)
        app.router.add_route("HEAD", "/ipns/{tail:.*}", self.handle_ipns)
        app.router.add_get("/", self.index)
        return app

    async def index(self, request: web.Request) -> web.Response:
        """``GET /``: what this server answers."""
        return web.Response(
            text="howto gateway: GET /ipfs/{cid}[/{path}] (format=raw|car|tar|dag-json|…), "
            "/ipns/{name}[/{path}] (format=ipns-record)\n",
            content_type="text/plain",
        )

    def _parse(self, request: web.Request) -> tuple[CID, list[str]]:
        head, _, path = request.match_info["tail"].partition("/")
        try:
            root = _root(head)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"{exc}\n") from None
        return root, path_segments(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``/ipfs/CID/…``."""
        root, segments = self._parse(request)
        wanted = negotiate(request)
        if wanted.fmt == "ipns-record":
            raise web.HTTPBadRequest(text="format=ipns-record is for /ipns/ names only\n")
        return await self.serve(request, root, segments, wanted, request.rel_url.raw_path)

    async def handle_ipns(self, request: web.Request) -> web.StreamResponse:
        """``/ipns/NAME/…``: the content a verified record points at, or the record itself
        (``format=ipns-record``, the trustless IPNS reply)."""
        name, head, path = self.ipns.parse(request)
        wanted = negotiate(request)
        if wanted.fmt == "ipns-record":
            return await self.ipns.record(request, name, head)
        root, segments, cache = await self.ipns.resolve(name, head, path)
        return await self.serve(request, root, segments, wanted, request.rel_url.raw_path, cache)

    def _cached(self, root: CID, segments: list[str]) -> bool:
        """Whether the path and its target are held here, without asking a gateway."""
        source = self.source.local_only() if isinstance(self.source, Chain) else self.source
        try:
            cids = Resolver(source).resolve(root, "/".join(segments))
            return source.has(cids[-1])
        except (NotFoundError, UnavailableError):
            return False

    async def serve(
        self,
        request: web.Request,
        root: CID,
        segments: list[str],
        wanted: Wanted,
        shown_path: str,
        cache: str = IMMUTABLE,
    ) -> web.StreamResponse:
        """The reply for ``root/segments``; ``shown_path`` is the ``X-Ipfs-Path``, and
        ``cache`` the ``Cache-Control`` (an IPNS name changes: its record's TTL)."""
        if only_if_cached(request) and not await asyncio.to_thread(self._cached, root, segments):
            raise web.HTTPPreconditionFailed(text="not held by this gateway (only-if-cached)\n")
        fmt = wanted.fmt
        if fmt == "raw" and not segments:
            # One block named by its CID: the reader checks the hash.
            return await self.trustless.block(
                request, root, reply_headers(shown_path, [root], cache)
            )
        resolver = RecordingResolver(self.source, self.cache, trustless=fmt in ("raw", "car"))
        try:
            cids, target, path = await asyncio.to_thread(resolver.locate, root, segments)
        except NotFoundError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        except PathNotSupportedError as exc:
            raise web.HTTPNotImplemented(text=f"{exc}\n") from None
        headers = reply_headers(shown_path, cids, cache)
        codec = target.cid.codec.code
        if fmt == "raw":
            return await self.trustless.raw(request, target, headers)
        if fmt == "car":
            return await self.trustless.car(request, resolver, path, target, headers, wanted.params)
        if fmt == "tar":
            return await serve_tar(request, resolver, target, headers)
        if fmt in ("json", "cbor") and codec in (DAG_PB, RAW) and not wanted.explicit:
            fmt = None  # "Accept: application/json" for a file: the file, typed as it is
        if fmt is not None:
            if codec not in _SERVES[fmt]:
                raise web.HTTPNotAcceptable(
                    text=f"{target.cid.codec.name} data cannot be given as {fmt}: "
                    "ask for format=raw or car\n"
                )
            return await serve_ipld(request, target, fmt, headers)
        if codec in _NATIVE:
            if wanted.html and codec in (DAG_JSON, DAG_CBOR):
                return await dag_preview(request, target, headers)
            return await serve_ipld(request, target, _NATIVE[codec], headers)
        if codec not in (DAG_PB, RAW):
            raise web.HTTPNotAcceptable(
                text=f"no plain form for {target.cid.codec.name}: ask for format=raw or car\n"
            )
        return await serve_unixfs(request, resolver, target, segments, headers)


__all__ = ["Gateway"]
